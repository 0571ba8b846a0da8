/**
 * Where `walts metrics` listens. Kept apart from the server so the command table can show the
 * default without loading prom-client.
 *
 * 127.0.0.1: the metrics name backups and timings and the endpoint has no authentication, so it is
 * private unless the operator opens it (`--listen :10432`). 10432: the Prometheus default port
 * allocation list has no free port left in 9100-9999; this is outside it and outside the ephemeral range.
 */
import { UsageError } from '../../errors';

export const DEFAULT_LISTEN = '127.0.0.1:10432';

export interface ListenAddress {
  /** undefined: every interface. */
  readonly host?: string;
  readonly port: number;
}

/** `HOST:PORT`, `[IPv6]:PORT` or `:PORT` (every interface). */
export function parseListen(text: string): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) throw new UsageError(`--listen ${JSON.stringify(text)} is not HOST:PORT, [IPv6]:PORT or :PORT`);
  const host = m[1] ?? m[2];
  return { host: host === '' ? undefined : host, port };
}
