/**
 * Background refreshes for `walts metrics`: gathers the status every `intervalMs` (measured from the
 * end of one refresh to the start of the next, so refreshes never overlap) and keeps the latest result.
 * Scrapes read `state()` and never wait: a slow or hanging store delays only the refresh, which is
 * abandoned after `timeoutMs` (its signal is aborted and the store counts as down). A refresh that
 * ignores the abort still has to end before the next one starts: refreshes never pile up.
 */
import type { StatusReport } from '../status/report';
import type { RefreshState } from './exposition';

export interface RefresherOptions {
  readonly gather: (signal: AbortSignal) => Promise<StatusReport>;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly nowMs: () => number;
  /** Whether PostgreSQL is asked (a timed-out refresh then reports it unknown, not absent). */
  readonly withPostgres: boolean;
  readonly storeDescription: string;
  readonly version: string;
  /** Told of each refresh's result as soon as it is known (for the log). */
  readonly onRefresh?: (report: StatusReport) => void;
}

export class Refresher {
  private current: RefreshState = { inProgress: false, refreshes: 0, failures: 0 };
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private running?: Promise<unknown>;
  private readonly stop$ = new AbortController();

  constructor(private readonly options: RefresherOptions) {}

  state(): RefreshState {
    return this.current;
  }

  /** Starts the first refresh now; the next ones follow every interval. */
  start(): void {
    this.running = this.refreshOnce().finally(() => this.schedule());
  }

  /** One refresh, for `--textfile`: resolves with the state once it ended (or timed out). */
  async refreshOnce(): Promise<RefreshState> {
    const o = this.options;
    const started = o.nowMs();
    const abort = new AbortController();
    const onStop = () => abort.abort(this.stop$.signal.reason);
    this.stop$.signal.addEventListener('abort', onStop, { once: true });
    this.current = { ...this.current, inProgress: true };
    const gathering = o.gather(abort.signal);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), o.timeoutMs);
    });
    const outcome = await Promise.race([gathering.then((r) => ({ report: r }), (err: unknown) => ({ error: err })), timedOut]);
    clearTimeout(timer);
    let report: StatusReport;
    if (outcome === 'timeout') {
      abort.abort(new Error('refresh timed out'));
      report = this.timeoutReport(started);
    } else if ('report' in outcome) report = outcome.report;
    else report = this.timeoutReport(started, String((outcome.error as Error)?.message ?? outcome.error));
    o.onRefresh?.(report);
    const ended = o.nowMs();
    this.current = {
      report,
      endedAtMs: ended,
      durationSeconds: (ended - started) / 1000,
      inProgress: true,
      refreshes: this.current.refreshes + 1,
      failures: this.current.failures + (report.store.reachable ? 0 : 1),
    };
    // An abandoned gather must still end before the next refresh starts (no pile-up).
    await gathering.catch(() => undefined);
    this.stop$.signal.removeEventListener('abort', onStop);
    this.current = { ...this.current, inProgress: false };
    return this.current;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.stop$.abort(new Error('stopping'));
    await this.running?.catch(() => undefined);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.refreshOnce().finally(() => this.schedule());
    }, this.options.intervalMs);
  }

  private timeoutReport(startedMs: number, error?: string): StatusReport {
    const o = this.options;
    const why = error ?? `the refresh did not end within ${o.timeoutMs / 1000} s (--refresh-timeout)`;
    return {
      generated_at: new Date(startedMs).toISOString(),
      walts_version: o.version,
      store: { description: o.storeDescription, reachable: false, error: why },
      ...(o.withPostgres ? { postgres: { reachable: false, error: why } } : {}),
      duration_seconds: (o.nowMs() - startedMs) / 1000,
    };
  }
}
