import { keyString } from '../store/keyspace.ts';
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
export const keyOf = keyString;
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

/**
 * Format an INCRBYFLOAT result as Redis does ("%.17Lf" of a long double with
 * trailing zeros cut). Doubles carry less precision than Redis's long double,
 * so the value is rounded to 15 significant digits first: that hides binary
 * noise (0.1 + 0.2 prints as 0.3, as in Redis) for everyday values.
 */
export function formatLongDouble(x: number): string {
  const rounded = Number(x.toPrecision(15));
  if (Object.is(rounded, -0) || rounded === 0) return '0';
  const abs = Math.abs(rounded);
  let text: string;
  if (abs >= 1e21 || abs < 1e-6) {
    // String() switches to exponents out here; expand them to plain digits, as %Lf prints.
    const [m, e] = rounded.toExponential().split('e');
    const exp = Number(e);
    const digits = m.replace('-', '').replace('.', '');
    const sign = rounded < 0 ? '-' : '';
    if (exp >= 0) text = sign + digits.padEnd(exp + 1, '0');
    else text = `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  } else {
    text = String(rounded);
  }
  return text.includes('.') ? text.replace(/\.?0+$/, '') : text;
}
