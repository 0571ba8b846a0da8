/**
 * Parses Prometheus text exposition with an independent parser (parse-prometheus-text-format), so
 * tests check what a Prometheus server would read, not what a regex happens to match.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const parsePrometheusTextFormat = require('parse-prometheus-text-format') as (text: string) => MetricFamily[];

export interface MetricFamily {
  name: string;
  help: string;
  type: 'GAUGE' | 'COUNTER' | 'SUMMARY' | 'HISTOGRAM' | 'UNTYPED';
  metrics: Array<{ value: string; labels?: Record<string, string> }>;
}

export interface ParsedMetrics {
  families: Map<string, MetricFamily>;
  /** The single sample of `name` (every walts series has exactly one), as a number; undefined when absent. */
  value(name: string): number | undefined;
}

export function parseMetrics(text: string): ParsedMetrics {
  const families = new Map(parsePrometheusTextFormat(text).map((f) => [f.name, f]));
  return {
    families,
    value(name) {
      const f = families.get(name);
      if (!f) return undefined;
      if (f.metrics.length !== 1) throw new Error(`${name} has ${f.metrics.length} samples`);
      return Number(f.metrics[0]!.value);
    },
  };
}
