/**
 * The prefetcher's decoding order (src/ops/decodeTurns.ts): the lowest name first, a name PostgreSQL
 * asked for before all, a retried download back in line, and never a wait without end.
 */
import { DecodeTurns } from '../../../src/ops/decodeTurns';

const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

describe('DecodeTurns', () => {
  it('lets the lowest name decode first, whatever order the bodies arrive in', async () => {
    const turns = new DecodeTurns(600_000);
    const [a, b, c] = ['000000010000000000000003', '000000010000000000000004', '000000010000000000000005'].map((n) => turns.ticket(n));
    const order: string[] = [];
    const run = (t: typeof a) => t!.wait().then(() => order.push(t!.rank));
    const waits = [run(c), run(b)];
    await settle();
    expect(order).toEqual([]); // 3 is still downloading: 4 and 5 wait with their bodies unread
    await run(a);
    expect(order).toEqual(['000000010000000000000003']);
    a!.done();
    await settle();
    expect(order).toEqual(['000000010000000000000003', '000000010000000000000004']);
    b!.done();
    await Promise.all(waits);
    expect(order).toEqual(['000000010000000000000003', '000000010000000000000004', '000000010000000000000005']);
  });

  it('puts a name PostgreSQL asked for (promoted, or ranked empty) before the window', async () => {
    const turns = new DecodeTurns(600_000);
    const low = turns.ticket('000000010000000000000003');
    const asked = turns.ticket('000000010000000000000009');
    let went = false;
    const w = asked.wait().then(() => (went = true));
    await settle();
    expect(went).toBe(false);
    asked.promote();
    low.done(); // any change wakes the waiters, who look at the ranks again
    await w;
    asked.done();
    const again = turns.ticket('000000010000000000000004');
    const history = turns.ticket('');
    let first = '';
    await Promise.race([again.wait().then(() => (first ||= 'window')), history.wait().then(() => (first ||= 'asked'))]);
    expect(first).toBe('asked');
    history.done();
    await again.wait();
  });

  it('takes a retried download back in line, and never waits longer than its bound', async () => {
    const turns = new DecodeTurns(600_000);
    const a = turns.ticket('000000010000000000000003');
    const b = turns.ticket('000000010000000000000004');
    await a.wait();
    a.done();
    await b.wait();
    b.done();
    // a's decode failed and is tried again: b's retry waits for it once more.
    await a.wait();
    let bWent = false;
    const bw = b.wait().then(() => (bWent = true));
    await settle();
    expect(bWent).toBe(false);
    a.done();
    await bw;
    // A stalled download ahead holds the others only for the bound (their connections idle meanwhile).
    const bounded = new DecodeTurns(5);
    bounded.ticket('000000010000000000000001'); // never done
    await bounded.ticket('000000010000000000000002').wait();
  });

  it('stops waiting when the prefetcher is aborted', async () => {
    const turns = new DecodeTurns(600_000);
    turns.ticket('000000010000000000000001');
    const ac = new AbortController();
    const w = turns.ticket('000000010000000000000002').wait(ac.signal);
    ac.abort();
    await w;
  });
});
