/**
 * The evaluation's statistics: every figure is the median of its repeats,
 * reported with its spread (min–max) and the number of samples.
 */
export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function summarize(samples: readonly number[]): Summary {
  const s = samples.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  const m = s.length >> 1;
  const median = s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]!, n: s.length };
}

/** A ratio of two summaries' medians, with the spread of the ratio's extremes. */
export function ratioOf(a: Summary, b: Summary): Summary {
  if (!(a.n && b.n) || b.median === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  return { median: a.median / b.median, min: b.max ? a.min / b.max : NaN, max: b.min ? a.max / b.min : NaN, n: Math.min(a.n, b.n) };
}

/** A figure for a table: 3 significant digits, thousands as K. */
export function formatValue(v: number): string {
  if (!Number.isFinite(v)) return '—';
  const a = Math.abs(v);
  if (a >= 10_000) return `${(v / 1000).toFixed(a >= 100_000 ? 0 : 1)}K`;
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(2);
}
