/**
 * The prefetcher's downloads decode one after another in the order PostgreSQL will ask for them.
 *
 * Why: every download's decoding (LZ4, SHA-256, the writes) runs on the prefetcher's one thread,
 * so running four at once adds no decoding speed, it only makes all four finish late together: a
 * replay measured with four interleaved downloads got the first segment of a window after about
 * four segments' time (docs/performance.md, "Prefetcher throughput"). With turns, the requests
 * are still all issued at once (their time to first byte overlaps, and the bodies wait in the
 * socket buffers), but the lowest name decodes first, and its write and fsync overlap the next
 * one's decoding. A request PostgreSQL is waiting for (an ask) ranks before every window name.
 *
 * A turn is never waited for longer than `maxWaitMs`: a stalled download ahead (a retry, a slow
 * store) must not leave the others' connections idle until the store's I/O timeout cuts them.
 * Turns only order work; they never change what is fetched or how it is checked.
 */
export class DecodeTurns {
  readonly #tickets = new Set<Ticket>();
  #wake: Array<() => void> = [];

  constructor(private readonly maxWaitMs: number) {}

  /** A ticket for one download ranked `rank` (lower goes first; '' before every WAL name). */
  ticket(rank: string): Ticket {
    const t = new Ticket(this, rank);
    this.#tickets.add(t);
    return t;
  }

  /** Whether a ticket ranked before `t` has not decoded yet. */
  behind(t: Ticket): boolean {
    for (const other of this.#tickets) if (other !== t && other.rank < t.rank) return true;
    return false;
  }

  /** Resolves after the next change of tickets, after `ms`, or on abort. */
  changed(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const end = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', end);
        resolve();
      };
      const timer = setTimeout(end, ms);
      signal?.addEventListener('abort', end, { once: true });
      this.#wake.push(end);
    });
  }

  add(t: Ticket): void {
    this.#tickets.add(t);
  }

  remove(t: Ticket): void {
    if (!this.#tickets.delete(t)) return;
    const wake = this.#wake;
    this.#wake = [];
    for (const w of wake) w();
  }

  get maxWait(): number {
    return this.maxWaitMs;
  }
}

/** One download's place in the order. */
export class Ticket {
  constructor(
    private readonly turns: DecodeTurns,
    public rank: string,
  ) {}

  /** PostgreSQL now waits for this download (an ask joined it): before every window name. */
  promote(): void {
    this.rank = '';
  }

  /** Waits until no lower-ranked download is still to decode (at most `maxWaitMs`). */
  async wait(signal?: AbortSignal): Promise<void> {
    this.turns.add(this); // again, for a retried download that finished a decode before
    const until = Date.now() + this.turns.maxWait;
    while (this.turns.behind(this) && !signal?.aborted) {
      const left = until - Date.now();
      if (left <= 0) return;
      await this.turns.changed(left, signal);
    }
  }

  /** This download's decoding is over (done, failed, or it never got that far). */
  done(): void {
    this.turns.remove(this);
  }
}
