/**
 * Argument parsing with Redis's exact rules: integers as string2ll (no
 * spaces, no '+', no leading zeros, 64-bit range), floats as strtod without
 * leading spaces or NaN.
 */
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

export function parseInt64(b: Buffer): bigint | null {
  const s = b.toString('latin1');
  if (!/^(0|-?[1-9][0-9]{0,19})$/.test(s)) return null;
  const v = BigInt(s);
  return v < INT64_MIN || v > INT64_MAX ? null : v;
}

export const inInt64 = (v: bigint) => v >= INT64_MIN && v <= INT64_MAX;

/** An int64 that is also a safe JS number (indexes, counts, times). */
export function parseSafeInt(b: Buffer): number | null {
  const v = parseInt64(b);
  if (v === null) return null;
  // Clamp far-out values: they behave the same as any huge index or count.
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) return Number.MAX_SAFE_INTEGER;
  if (v < BigInt(Number.MIN_SAFE_INTEGER)) return Number.MIN_SAFE_INTEGER;
  return Number(v);
}

export function parseFloatArg(b: Buffer): number | null {
  const s = b.toString('latin1');
  if (s.length === 0 || /^\s/.test(s)) return null;
  const lower = s.toLowerCase();
  if (lower === 'inf' || lower === '+inf' || lower === 'infinity' || lower === '+infinity') return Infinity;
  if (lower === '-inf' || lower === '-infinity') return -Infinity;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(s)) return null;
  const v = Number(s);
  return Number.isNaN(v) ? null : v;
}

/** Format a double as Redis 7.0 does in replies (printf "%.17g"). */
export function formatDouble(x: number): string {
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0' : '0';
  let [mant, e] = x.toExponential(16).split('e');
  const exponent = Number(e);
  if (exponent < -4 || exponent >= 17) {
    mant = mant.includes('.') ? mant.replace(/\.?0+$/, '') : mant;
    const sign = exponent < 0 ? '-' : '+';
    const digits = String(Math.abs(exponent)).padStart(2, '0');
    return `${mant}e${sign}${digits}`;
  }
  const fixed = x.toFixed(Math.max(0, 16 - exponent));
  return fixed.includes('.') ? fixed.replace(/\.?0+$/, '') : fixed;
}

export const lower = (b: Buffer) => b.toString('latin1').toLowerCase();
export const keyOf = (b: Buffer) => b.toString('latin1');
export const bufOf = (k: string) => Buffer.from(k, 'latin1');

/** Redis's list/zset index normalisation; returns [start, end) or null when empty. */
export function normaliseRange(start: number, stop: number, length: number): [number, number] | null {
  if (start < 0) start += length;
  if (stop < 0) stop += length;
  if (start < 0) start = 0;
  if (start > stop || start >= length) return null;
  if (stop >= length) stop = length - 1;
  return [start, stop + 1];
}
