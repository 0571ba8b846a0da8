/**
 * A one-line progress display (bytes, rate, ETA) for people at a terminal, redrawn at most five
 * times a second on stderr. Off the terminal it draws nothing: the command's summary log line says it.
 */
import { formatBytes, formatDuration } from './format';

export function terminalProgress(label: string, stream: NodeJS.WriteStream = process.stderr): { update: (done: number, total: number) => void; end: () => void } | undefined {
  if (!stream.isTTY) return undefined;
  const started = Date.now();
  let last = 0;
  let drawn = false;
  return {
    update(done, total) {
      const now = Date.now();
      if (now - last < 200) return;
      last = now;
      const seconds = (now - started) / 1000;
      const rate = done / Math.max(seconds, 0.001);
      const pct = total > 0 ? Math.min(99, Math.floor((done / total) * 100)) : 0;
      const eta = total > done && rate > 0 ? formatDuration((total - done) / rate) : '?';
      stream.write(`\r${label}: ${formatBytes(done)} of ~${formatBytes(total)} (${pct}%), ${formatBytes(rate)}/s, ETA ${eta}\x1b[K`);
      drawn = true;
    },
    end() {
      if (drawn) stream.write('\r\x1b[K');
    },
  };
}
