/**
 * LZ4 block format (https://github.com/lz4/lz4/blob/dev/doc/lz4_Block_format.md),
 * compressor and decompressor for small blocks (<= 64 KiB), in plain TypeScript so the
 * default codec needs no native package. Greedy single-probe matcher with the reference
 * implementation's acceleration: incompressible input is skipped over ever faster,
 * which is what keeps the cost of "try to compress, store raw" low.
 */

const HASH_LOG = 12;
const MIN_MATCH = 4;
/** The last match must start at least 12 bytes before the end (format rule). */
const MF_LIMIT = 12;
/** The last 5 bytes are always literals (format rule). */
const LAST_LITERALS = 5;
const SKIP_TRIGGER = 6;

// One table reused by every call: compression is synchronous, so calls never overlap.
const table = new Int32Array(1 << HASH_LOG);

const read32 = (b: Uint8Array, i: number): number => b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24);
const hash = (v: number): number => Math.imul(v, 2654435761) >>> (32 - HASH_LOG);

/**
 * Compress `src` into `dst`. Returns the compressed length, or 0 when the result would
 * not fit in `dst` (callers pass a `dst` sized to the largest output worth keeping, so
 * "does not compress well enough" costs no extra pass).
 */
export function lz4Compress(src: Uint8Array, dst: Uint8Array): number {
  const n = src.length;
  out.op = 0;
  out.anchor = 0;
  if (n > MF_LIMIT) {
    table.fill(-1);
    const limit = n - MF_LIMIT;
    const matchLimit = n - LAST_LITERALS;
    let ip = 0;
    let attempts = 1 << SKIP_TRIGGER;
    while (ip < limit) {
      const seq = read32(src, ip);
      const h = hash(seq);
      const ref = table[h]!;
      table[h] = ip;
      if (ref < 0 || ref >= ip || ip - ref > 0xffff || read32(src, ref) !== seq) {
        ip += attempts++ >> SKIP_TRIGGER;
        continue;
      }
      attempts = 1 << SKIP_TRIGGER;
      let s = ip;
      let r = ref;
      while (s > out.anchor && r > 0 && src[s - 1] === src[r - 1]) {
        s--;
        r--;
      }
      let len = MIN_MATCH;
      while (s + len < matchLimit && src[s + len] === src[r + len]) len++;
      if (!emitSequence(src, dst, s, s - r, len)) return 0;
      ip = s + len;
      out.anchor = ip;
      if (ip - 2 < limit) table[hash(read32(src, ip - 2))] = ip - 2;
    }
  }
  if (!emitSequence(src, dst, n, 0, 0)) return 0;
  return out.op;
}

// Output cursor of the running compression (module state, like `table`: calls never overlap).
const out = { op: 0, anchor: 0 };

/** Write literals [anchor, litEnd) and, unless offset is 0, a match; false when dst would overflow. */
function emitSequence(src: Uint8Array, dst: Uint8Array, litEnd: number, offset: number, matchLen: number): boolean {
  let op = out.op;
  const lit = litEnd - out.anchor;
  const worst = op + 1 + lit + Math.floor(lit / 255) + 1 + 2 + Math.floor(matchLen / 255) + 1;
  if (worst > dst.length) return false;
  const tokenAt = op++;
  let token: number;
  if (lit >= 15) {
    token = 15 << 4;
    let rest = lit - 15;
    for (; rest >= 255; rest -= 255) dst[op++] = 255;
    dst[op++] = rest;
  } else token = lit << 4;
  for (let i = out.anchor; i < litEnd; i++) dst[op++] = src[i]!;
  if (offset > 0) {
    dst[op++] = offset & 0xff;
    dst[op++] = offset >>> 8;
    const ml = matchLen - MIN_MATCH;
    if (ml >= 15) {
      token |= 15;
      let rest = ml - 15;
      for (; rest >= 255; rest -= 255) dst[op++] = 255;
      dst[op++] = rest;
    } else token |= ml;
  }
  dst[tokenAt] = token;
  out.op = op;
  return true;
}

/**
 * Decompress `src` into `dst`. Returns the number of bytes produced, or -1 when `src` is
 * malformed or would overflow `dst`: corrupt input never throws and never reads or
 * writes out of bounds.
 */
export function lz4Decompress(src: Uint8Array, dst: Uint8Array): number {
  let ip = 0;
  let op = 0;
  const end = src.length;
  while (ip < end) {
    const token = src[ip++]!;
    let lit = token >>> 4;
    if (lit === 15) {
      let b: number;
      do {
        if (ip >= end) return -1;
        b = src[ip++]!;
        lit += b;
      } while (b === 255);
    }
    if (ip + lit > end || op + lit > dst.length) return -1;
    for (let i = 0; i < lit; i++) dst[op++] = src[ip++]!;
    if (ip === end) return op; // the last sequence carries literals only
    if (ip + 2 > end) return -1;
    const offset = src[ip]! | (src[ip + 1]! << 8);
    ip += 2;
    if (offset === 0 || offset > op) return -1;
    let ml = (token & 15) + MIN_MATCH;
    if ((token & 15) === 15) {
      let b: number;
      do {
        if (ip >= end) return -1;
        b = src[ip++]!;
        ml += b;
      } while (b === 255);
    }
    if (op + ml > dst.length) return -1;
    // Byte by byte on purpose: a match may overlap its own output (offset < length).
    let m = op - offset;
    for (let i = 0; i < ml; i++) dst[op++] = dst[m++]!;
  }
  return -1; // empty input or a sequence that ended without its final literals
}
