/**
 * A latency histogram with power-of-two microsecond buckets: constant memory,
 * O(1) record, good enough for p50/p99 at the resolution storage people read
 * (bucket i holds values in [2^(i-1), 2^i) µs; bucket 0 holds < 1 µs).
 */
export const HISTOGRAM_BUCKETS = 32;

export class Histogram {
  readonly buckets = new Float64Array(HISTOGRAM_BUCKETS);
  count = 0;
  sumUs = 0;
  maxUs = 0;

  record(us: number): void {
    const i = us < 1 ? 0 : Math.min(HISTOGRAM_BUCKETS - 1, 32 - Math.clz32(us | 0));
    this.buckets[i]++;
    this.count++;
    this.sumUs += us;
    if (us > this.maxUs) this.maxUs = us;
  }

  /** Upper bound (µs) of the bucket holding quantile q (0..1). */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const target = q * this.count;
    let seen = 0;
    for (let i = 0; i < HISTOGRAM_BUCKETS; i++) {
      seen += this.buckets[i]!;
      if (seen >= target) return Math.min(2 ** i, this.maxUs);
    }
    return this.maxUs;
  }

  summary(): { count: number; meanUs: number; p50Us: number; p99Us: number; maxUs: number } {
    return {
      count: this.count,
      meanUs: this.count ? this.sumUs / this.count : 0,
      p50Us: this.quantile(0.5),
      p99Us: this.quantile(0.99),
      maxUs: this.maxUs,
    };
  }
}
