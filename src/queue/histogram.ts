/**
 * Log2 latency histogram: bucket i counts samples < 2^i µs (bucket 0: < 1 µs),
 * the last bucket everything slower. Fixed size, O(1) record, no allocation.
 */
export const LATENCY_BUCKETS = 24; // up to ~8 s

export class LatencyHistogram {
  private readonly counts = new Array<number>(LATENCY_BUCKETS).fill(0);

  record(micros: number): void {
    const bucket = micros < 1 ? 0 : Math.min(LATENCY_BUCKETS - 1, Math.floor(Math.log2(micros)) + 1);
    this.counts[bucket]!++;
  }

  buckets(): number[] {
    return this.counts.slice();
  }
}
