/** The lag row's figures: nearest-rank p95 of the `.ready` samples, and how the cell reads. */
import { lagCell, type LagResult } from '../../../scripts/bench/lag';
import { median, percentile } from '../../../scripts/bench/proc';

describe('bench lag figures', () => {
  it('takes the nearest-rank percentile and the median', () => {
    const samples = [0, 0, 1, 1, 1, 2, 2, 3, 0, 5];
    expect(percentile(samples, 95)).toBe(5);
    expect(percentile(samples, 50)).toBe(1);
    expect(percentile([...Array(20).fill(1), 9], 95)).toBe(1);
    expect(percentile([4], 95)).toBe(4);
    expect(() => percentile([], 95)).toThrow();
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
  });

  it('says when the archiver had not caught up by the drain limit', () => {
    const base: LagResult = { label: 'walts', samples: [0, 3, 2], max: 3, p95: 3, archived: 40, failed: 0, tps: 812.4, walMB: 700, drainSeconds: 1.25, waitingAtEnd: 0 };
    expect(lagCell(base)).toBe('max 3, p95 3 (40 archived, 812 tps, drained 1.3 s after)');
    expect(lagCell({ ...base, failed: 2, drainSeconds: undefined, waitingAtEnd: 7 })).toBe('max 3, p95 3 (40 archived, 2 failed, 812 tps, 7 still waiting after the drain limit)');
  });
});
