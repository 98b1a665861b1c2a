/**
 * Block fingerprints for the index: 64 bits as two u32. The index is advisory and every
 * hit is byte-compared before a block is shared, so the hash needs to spread well, not
 * resist attack: a collision costs one compare and a missed duplicate, never data.
 * Measured here, CPU per 4 KiB block: SHA-256 (node:crypto) 5.6 us, xxhash-wasm h64 1.2 us,
 * @node-rs/xxhash xxh64 0.7 us, zlib.crc32 2.0 us. A worker round trip costs 35-100 us of
 * CPU per message, so the chosen hash (xxh64) runs inline: at any batch size the hop
 * costs more than the hash it would move.
 *
 * A write chunk is fingerprinted in one call (ChunkHasher): the zero test and xxh64 of
 * every block by the native addon (native/xxhash.c) in one N-API call, the digests
 * written into the chunk's Uint32Array (no BigInt, no object, no view per block; #12).
 * Without the addon, the same digests come from @node-rs/xxhash.
 */
import { createHash, hash as oneShotHash } from 'node:crypto';
import xxhash from '@node-rs/xxhash';
import { nativeFingerprint } from '../../native/addon.ts';
import { BLOCK, type FingerprintFn } from './format.ts';
import type { Fingerprint } from './metadata.ts';

export type Hasher = (data: Uint8Array) => Fingerprint;

const sha256Bytes = (data: Uint8Array): Buffer =>
  typeof oneShotHash === 'function' ? (oneShotHash('sha256', data, 'buffer') as Buffer) : createHash('sha256').update(data).digest();

const sha256: Hasher = (data) => {
  const h = sha256Bytes(data);
  return { hi: h.readUInt32LE(0), lo: h.readUInt32LE(4) };
};

// The 64-bit result split through a DataView: no intermediate BigInts (h & mask, h >> 32n) per block.
const split = new DataView(new ArrayBuffer(8));
const xxh64: Hasher = (data) => {
  split.setBigUint64(0, xxhash.xxh64(data), true);
  return { hi: split.getUint32(0, true), lo: split.getUint32(4, true) }; // hi: the low 32 bits, as before
};

/** One block's fingerprint (the reference the chunk hashers agree with). */
export const hasherFor = (f: FingerprintFn): Hasher => (f === 'sha256' ? sha256 : xxh64);

/**
 * Fingerprint the whole blocks of `data` (a multiple of 4 KiB, 4-byte aligned): zero[k] = 1
 * for an all-zero block, else 0 and, when `digests` is given, its fingerprint in
 * digests[2k] (hi) and digests[2k+1] (lo), as `hasherFor` computes it. Returns the number of
 * non-zero blocks.
 */
export type ChunkHasher = (data: Uint8Array, digests: Uint32Array | null, zero: Uint8Array) => number;

/** The zero test without the addon: one Uint32Array view over the chunk, no allocation per block. */
export function zeroTestJs(data: Uint8Array, zero: Uint8Array): number {
  const words = new Uint32Array(data.buffer, data.byteOffset, data.byteLength >>> 2);
  const per = BLOCK >>> 2;
  const n = data.byteLength / BLOCK;
  let nonzero = 0;
  for (let k = 0; k < n; k++) {
    let z = 1;
    for (let i = k * per, end = i + per; i < end; i++) {
      if (words[i] !== 0) {
        z = 0;
        break;
      }
    }
    zero[k] = z;
    nonzero += 1 - z;
  }
  return nonzero;
}

const zeroTest = (data: Uint8Array, zero: Uint8Array): number =>
  nativeFingerprint ? nativeFingerprint.fingerprintBlocks(data, BLOCK, null, zero) : zeroTestJs(data, zero);

/** Apply a per-block hasher to the non-zero blocks (SHA-256 volumes, and xxh64 without the addon). */
function perBlock(h: (block: Uint8Array, digests: Uint32Array, at: number) => void): ChunkHasher {
  return (data, digests, zero) => {
    const nonzero = zeroTest(data, zero);
    if (!digests) return nonzero;
    const n = data.byteLength / BLOCK;
    for (let k = 0; k < n; k++) {
      if (zero[k]) {
        digests[2 * k] = 0;
        digests[2 * k + 1] = 0;
      } else h(data.subarray(k * BLOCK, (k + 1) * BLOCK), digests, 2 * k);
    }
    return nonzero;
  };
}

const sha256Chunk = perBlock((block, d, at) => {
  const h = sha256Bytes(block);
  d[at] = h.readUInt32LE(0);
  d[at + 1] = h.readUInt32LE(4);
});

const xxh64ChunkJs = perBlock((block, d, at) => {
  split.setBigUint64(0, xxhash.xxh64(block), true);
  d[at] = split.getUint32(0, true);
  d[at + 1] = split.getUint32(4, true);
});

const xxh64ChunkNative: ChunkHasher | null = nativeFingerprint ? (data, digests, zero) => nativeFingerprint!.fingerprintBlocks(data, BLOCK, digests, zero) : null;

/** Which engine fingerprints xxh64 volumes: 'native' (the addon, when loaded) or 'js' (@node-rs/xxhash). */
export type HashEngine = 'native' | 'js';

export const chunkHasherFor = (f: FingerprintFn, engine: HashEngine = 'native'): ChunkHasher =>
  f === 'sha256' ? sha256Chunk : ((engine === 'native' && xxh64ChunkNative) || xxh64ChunkJs);

/** Which xxh64 runs, for stats and logs. */
export const hashEngine = (): string => (nativeFingerprint ? 'native xxh64 (addon)' : '@node-rs/xxhash');
