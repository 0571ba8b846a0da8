/**
 * A fault-injecting HTTP proxy in front of s3rver (listens on 127.0.0.1 only). Requests pass through
 * unchanged (the Host header too: SigV4 signs it) unless a queued fault matches, which lets tests
 * produce what real S3 and networks do: 5xx/403 answers, resets, hung sockets, truncated bodies.
 */
import { createServer, request as httpRequest, Agent, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

interface Match {
  /** How many matching requests the fault applies to (default 1). */
  times?: number;
  /** How many matching requests pass through untouched before the fault applies (default 0). */
  skip?: number;
  method?: string;
  pathIncludes?: string;
}

export type Fault =
  | (Match & { kind: 'status'; status: number; code?: string })
  | (Match & { kind: 'reset' })
  | (Match & { kind: 'hang' })
  | (Match & { kind: 'truncate-response'; bytes: number })
  /** Forwards the answer's head and first `bytes` of body, then sends nothing more and keeps the connection open. */
  | (Match & { kind: 'stall-response'; bytes: number })
  /** Forwards only the first `bytes` of the request body, then cuts both connections (a client dying mid-upload). */
  | (Match & { kind: 'truncate-request'; bytes: number });

export interface FaultProxy {
  port: number;
  endpoint: string;
  inject(fault: Fault): void;
  /** Drops faults still queued (e.g. left over by `times` larger than the requests made). */
  clear(): void;
  /** Every request seen, faulted or not, in arrival order (headers for checks like If-None-Match). */
  requests: Array<{ method: string; url: string; headers: IncomingHttpHeaders }>;
  stop(): Promise<void>;
}

const DEFAULT_CODES: Record<number, string> = {
  400: 'BadRequest',
  403: 'AccessDenied',
  404: 'NoSuchKey',
  408: 'RequestTimeout',
  409: 'ConditionalRequestConflict',
  412: 'PreconditionFailed',
  429: 'TooManyRequests',
  500: 'InternalError',
  501: 'NotImplemented',
  503: 'SlowDown',
};

export async function startFaultProxy(target: { host: string; port: number }): Promise<FaultProxy> {
  const queue: Array<Fault & { left: number; skipLeft: number }> = [];
  const requests: FaultProxy['requests'] = [];
  const sockets = new Set<Socket>();
  const agent = new Agent({ keepAlive: true });

  const take = (req: IncomingMessage): Fault | undefined => {
    const i = queue.findIndex(
      (f) => (!f.method || f.method === req.method) && (!f.pathIncludes || (req.url ?? '').includes(f.pathIncludes)),
    );
    const fault = queue[i];
    if (!fault) return undefined;
    if (fault.skipLeft > 0) {
      fault.skipLeft--;
      return undefined;
    }
    if (--fault.left <= 0) queue.splice(i, 1);
    return fault;
  };

  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const fault = take(req);
    switch (fault?.kind) {
      case 'status':
        // Read the request body first: answering mid-upload would show the client a reset, not the status.
        req.resume();
        req.on('end', () => answerError(req, res, fault.status, fault.code ?? DEFAULT_CODES[fault.status] ?? 'Error'));
        return;
      case 'reset':
        req.socket.destroy();
        return;
      case 'hang':
        req.resume(); // swallow the body and never answer
        return;
      default:
        forward(
          req,
          res,
          fault?.kind === 'truncate-response' || fault?.kind === 'stall-response' ? fault.bytes : undefined,
          fault?.kind === 'truncate-request' ? fault.bytes : undefined,
          fault?.kind === 'stall-response',
        );
    }
  });

  const forward = (req: IncomingMessage, res: ServerResponse, truncateAt?: number, truncateRequestAt?: number, stall = false): void => {
    const headers = { ...req.headers };
    // This server already answered "100 Continue" to the client; the upstream need not do it again.
    delete headers['expect'];
    const up = httpRequest({ host: target.host, port: target.port, method: req.method, path: req.url, headers, agent }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      if (truncateAt === undefined) {
        upRes.pipe(res);
        return;
      }
      let sent = 0;
      upRes.on('data', (chunk: Buffer) => {
        if (sent >= truncateAt) return;
        const part = chunk.subarray(0, truncateAt - sent);
        sent += part.length;
        if (sent < truncateAt) {
          res.write(part);
          return;
        }
        upRes.destroy();
        // Destroy only once the bytes so far have left, so the client really sees a short body.
        res.write(part, () => (stall ? undefined : res.socket?.destroy()));
      });
      upRes.on('end', () => (stall ? undefined : res.socket?.destroy())); // body shorter than the cut: still end abruptly
    });
    up.on('error', () => res.socket?.destroy());
    if (truncateRequestAt === undefined) {
      req.pipe(up);
      return;
    }
    let forwarded = 0;
    req.on('data', (chunk: Buffer) => {
      if (forwarded >= truncateRequestAt) return;
      const part = chunk.subarray(0, truncateRequestAt - forwarded);
      forwarded += part.length;
      up.write(part);
      if (forwarded >= truncateRequestAt) {
        // Give the server a moment to take the bytes in, then drop both sides as a dying client would.
        setTimeout(() => {
          up.destroy();
          req.socket.destroy();
        }, 200);
      }
    });
  };

  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    port,
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    inject(fault) {
      queue.push({ ...fault, left: fault.times ?? 1, skipLeft: fault.skip ?? 0 });
    },
    clear() {
      queue.length = 0;
    },
    async stop() {
      for (const s of sockets) s.destroy();
      agent.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function answerError(req: IncomingMessage, res: ServerResponse, status: number, code: string): void {
  const body =
    req.method === 'HEAD'
      ? ''
      : `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>injected by faultProxy</Message>` +
        `<RequestId>FAULT${Date.now()}</RequestId></Error>`;
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
