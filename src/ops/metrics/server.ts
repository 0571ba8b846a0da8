/**
 * The HTTP side of `walts metrics`: `GET /metrics` renders the cached state (never waits for a
 * refresh), `GET /` points there, anything else is 404. Plain HTTP like every Prometheus exporter;
 * put it behind a proxy or firewall for TLS or authentication.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { UsageError } from '../../errors';
import { CONTENT_TYPE, renderMetrics, type RefreshState } from './exposition';
import type { ListenAddress } from './listen';

export async function startMetricsServer(options: {
  listen: ListenAddress;
  state: () => RefreshState;
  nowMs: () => number;
  database: string;
  onError?: (err: unknown) => void;
}): Promise<{ server: Server; address: AddressInfo; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      renderMetrics(options.state(), options.nowMs(), options.database).then(
        (text) => res.writeHead(200, { 'content-type': CONTENT_TYPE }).end(req.method === 'HEAD' ? undefined : text),
        (err: unknown) => {
          options.onError?.(err);
          res.writeHead(500, { 'content-type': 'text/plain' }).end('walts: rendering metrics failed\n');
        },
      );
      return;
    }
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html' }).end('<html><head><title>walts</title></head><body><h1>walts metrics</h1><p><a href="/metrics">/metrics</a></p></body></html>\n');
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' || err.code === 'EACCES' || err.code === 'EADDRNOTAVAIL' ? new UsageError(`cannot listen on ${options.listen.host ?? '*'}:${options.listen.port}: ${err.message}`) : err),
    );
    server.listen(options.listen.port, options.listen.host, () => resolve());
  });
  return {
    server,
    address: server.address() as AddressInfo,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
