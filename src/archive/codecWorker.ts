/**
 * The worker thread of `WorkerStage`: runs one object's codec chain on bytes sent by the main
 * thread and sends the result back, with the plain SHA-256 and sizes at the end. Encoding goes
 * through the one encode path (`encodeTo`); decoding runs the same decoders `decodeObject` would.
 */
import { Readable } from 'node:stream';
import { parentPort, workerData } from 'node:worker_threads';
import { makeCodecs } from '../codec/make';
import { DigestStream, pipeStages } from '../util/streams';
import { encodeTo } from './encode';
import { forTransfer, serializeError, WINDOW, type CodecJob, type FromWorker, type JobResult, type ToWorker } from './workerStage';

const port = parentPort!;
const job = workerData as CodecJob;
const post = (m: FromWorker, transfer?: ArrayBuffer[]): void => port.postMessage(m, transfer);

// Input: batches from the main thread, each acknowledged once the chain has taken its last chunk.
const inbox: Buffer[] = [];
const batchEnds: number[] = [];
let taken = 0;
let received = 0;
let ended = false;
let wakeInput: (() => void) | undefined;
// Output: at most WINDOW batches sent and not yet acknowledged.
let outstanding = 0;
let wakeOutput: (() => void) | undefined;

port.on('message', (m: ToWorker) => {
  if (m.t === 'data') {
    inbox.push(...m.bufs.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)));
    received += m.bufs.length;
    batchEnds.push(received);
  }
  else if (m.t === 'end') ended = true;
  else {
    outstanding--;
    wakeOutput?.();
    wakeOutput = undefined;
    return;
  }
  wakeInput?.();
  wakeInput = undefined;
});

async function* input(): AsyncGenerator<Buffer, void, undefined> {
  for (;;) {
    while (inbox.length === 0 && !ended) await new Promise<void>((resolve) => (wakeInput = resolve));
    const next = inbox.shift();
    if (!next) return;
    yield next;
    taken++;
    while (batchEnds.length > 0 && batchEnds[0]! <= taken) {
      batchEnds.shift();
      post({ t: 'ack' });
    }
  }
}

/** The input as a byte stream reading ahead by at most 1 MiB (not the 16 chunks of an object stream). */
function bounded(source: AsyncIterable<Buffer>): Readable {
  return Readable.from(source, { objectMode: false, highWaterMark: 1 << 20 });
}

async function output(source: AsyncIterable<Buffer>): Promise<void> {
  for await (const chunk of source) {
    while (outstanding >= WINDOW) await new Promise<void>((resolve) => (wakeOutput = resolve));
    const { bufs, transfer } = forTransfer([chunk]);
    outstanding++;
    post({ t: 'data', bufs }, transfer);
  }
}

async function run(): Promise<JobResult> {
  const codecs = makeCodecs(job.spec);
  if (job.kind === 'encode') {
    const { plain, storedBytes } = await encodeTo(codecs, bounded(input()), output);
    return { plainBytes: plain.size, sha256: plain.sha256, storedBytes };
  }
  const plain = new DigestStream();
  const decoders = codecs.decoders(job.codecs, { unauthenticatedStream: job.unauthenticatedStream, plainVerified: job.plainVerified });
  await pipeStages([bounded(input()), ...decoders, plain, output]);
  return { plainBytes: plain.bytes, sha256: plain.digest(), storedBytes: 0 };
}

run().then(
  (result) => post({ t: 'done', result }),
  (err: unknown) => post({ t: 'error', error: serializeError(err) }),
);
