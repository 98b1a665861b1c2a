/** Deterministic test data: seeded PRNG blocks of known compressibility, and a simulated workload. */
import { createHash } from 'node:crypto';
import { rng } from '../helpers/tmp.ts';

export const BLOCK = 4096;

/** mulberry32, shared with the other tests. */
export const prng = rng;

export function randomBytes(seed: number, n: number): Uint8Array {
  const r = prng(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 4) {
    const v = (r() * 4294967296) >>> 0;
    out[i] = v & 0xff;
    if (i + 1 < n) out[i + 1] = (v >>> 8) & 0xff;
    if (i + 2 < n) out[i + 2] = (v >>> 16) & 0xff;
    if (i + 3 < n) out[i + 3] = v >>> 24;
  }
  return out;
}

/** An incompressible 4 KiB block, unique per seed. */
export const randomBlock = (seed: number): Uint8Array => randomBytes(seed, BLOCK);

/** A block that compresses to well under 1/16 of a block (128 random bytes, then zeroes). */
export function compressibleBlock(seed: number): Uint8Array {
  const b = new Uint8Array(BLOCK);
  b.set(randomBytes(seed, 128));
  return b;
}

/** Content for a workload seed: 0 is the zero block, odd seeds compress, even ones do not. */
export function contentFor(seed: number): Uint8Array {
  if (seed === 0) return new Uint8Array(BLOCK);
  return seed % 2 === 1 ? compressibleBlock(seed) : randomBlock(seed);
}

/** Seed of sub-block `m` of a workload block scaled to `scale` blocks: the same seed gives the same contents (duplicates stay duplicates). */
export const scaledSeed = (seed: number, m: number, scale: number): number => (scale === 1 || seed === 0 ? seed : seed * scale + m);

export const digest = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex').slice(0, 16);

export interface Op {
  kind: 'write' | 'zero' | 'flush';
  lbn: number;
  count: number;
  fua: boolean;
  /** Content seed per block (write only). */
  seeds: number[];
}

/**
 * A mixed load over `blocks` logical blocks: writes of 1-8 blocks (40% duplicates from a
 * pool of 32 contents, a few zero blocks, some with FUA), WRITE_ZEROES and flushes.
 */
export function workload(seed: number, n: number, blocks: number): Op[] {
  const r = prng(seed);
  const ops: Op[] = [];
  for (let i = 0; i < n; i++) {
    const x = r();
    const count = 1 + Math.floor(r() * 8);
    const lbn = Math.floor(r() * (blocks - count));
    if (x < 0.08) ops.push({ kind: 'flush', lbn: 0, count: 0, fua: false, seeds: [] });
    else if (x < 0.14) ops.push({ kind: 'zero', lbn, count, fua: false, seeds: [] });
    else {
      const seeds = Array.from({ length: count }, (_, k) => {
        const y = r();
        if (y < 0.05) return 0;
        if (y < 0.45) return 2 + Math.floor(r() * 32); // shared pool: duplicates
        return 1000 + seed * 1_000_000 + i * 16 + k; // unique
      });
      ops.push({ kind: 'write', lbn, count, fua: r() < 0.1, seeds });
    }
  }
  return ops;
}
