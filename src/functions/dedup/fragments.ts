/**
 * Compression of 4 KiB blocks into fragments, and the packed block that holds several
 * fragments (after dm-vdo's compressed blocks). A packed block is immutable once
 * written; the slot table grows from the front and fragment bytes from the back:
 *
 *   magic u32 "SVPK" | count u16 | reserved u16 | count x (offset u16, length u16, crc32 u32) | ... | fragments
 */
import { crc32, deflateRawSync, inflateRawSync, constants as zc } from 'node:zlib';
import { BLOCK, MAX_SLOTS, viewOf, type Compression } from './format.ts';
import { lz4Compress, lz4Decompress } from './lz4.ts';
import { native, nativeLz4 } from '../../native/addon.ts';

const PACK_MAGIC = 0x4b505653; // "SVPK"
const PACK_HEADER = 8;
const SLOT = 8;
/** A fragment is worth packing only if at least two fit in one block. */
export const MAX_FRAGMENT = Math.floor((BLOCK - PACK_HEADER - 2 * SLOT) / 2);

export interface Codec {
  /** The compressed form if it is at most MAX_FRAGMENT bytes, else null (store raw). */
  compress(block: Uint8Array): Uint8Array | null;
  /** Decompress exactly one 4 KiB block into `out`; false when the fragment is malformed. */
  decompress(fragment: Uint8Array, out: Uint8Array): boolean;
  /**
   * Whether fragment `slot` of the packed block `block` is readable (fragmentOf's checks) and
   * decompresses to exactly `data`: a duplicate's verify. liblz4 does it in one native call,
   * with no Buffer between (native/lz4.c, lz4VerifyFragment).
   */
  fragmentEquals(block: Uint8Array, slot: number, data: Uint8Array): boolean;
  /**
   * Cheaper inline than a worker hop (35-100 us of CPU per message): the planner then
   * compresses on the request thread, without the pool and without a Promise.
   */
  readonly inline: boolean;
  /** What does the work, for stats and logs ("liblz4 1.9.4", "typescript", "zlib"). */
  readonly engine: string;
  /**
   * Compress blocks which[0..count) of `data` (whole 4 KiB blocks) in one call where the codec
   * can (liblz4: one native call per chunk instead of one per block, #12): out[which[k]] is the
   * fragment, or null (store raw). Absent: the caller compresses block by block.
   */
  compressBlocks?(data: Uint8Array, which: Int32Array, count: number, out: Array<Uint8Array | null | undefined>): void;
}

const scratch = new Uint8Array(MAX_FRAGMENT);
/** compressBlocks' output: BATCH slots of MAX_FRAGMENT bytes (each block's LZ4 output is capped there), and their lengths. */
const BATCH = 64;
const batchOut = new Uint8Array(BATCH * MAX_FRAGMENT);
const batchLengths = new Int32Array(BATCH);

/** fragmentEquals by the parts: fragmentOf, decompress into a scratch block, compare (synchronous: the scratch is shared). */
const verifyScratch = new Uint8Array(BLOCK);
const bufferEquals = Buffer.prototype.equals as (this: Uint8Array, other: Uint8Array) => boolean;
function fragmentEqualsBy(decompress: Codec['decompress']): Codec['fragmentEquals'] {
  return (block, slot, data) => {
    const frag = fragmentOf(block, slot);
    return typeof frag !== 'string' && data.length === BLOCK && decompress(frag, verifyScratch) && bufferEquals.call(verifyScratch, data);
  };
}

/**
 * Fragments live from compression until phase 1 packs them (a request's lifetime), so they
 * are cut from a shared arena instead of each getting its own ArrayBuffer: one allocation
 * per ARENA bytes instead of one per block (ArrayBuffers cost an allocation, a GC sweep on
 * V8's helper threads and external-memory pressure each; profiled at 0% duplicates).
 * An arena is freed by the GC once no fragment in it is referenced.
 */
const ARENA = 256 << 10;
let arena = new Uint8Array(ARENA);
let arenaAt = 0;

/** A copy of `src` that shares an ArrayBuffer with other recent fragments. */
export function keepFragment(src: Uint8Array): Uint8Array {
  const n = src.length;
  if (arenaAt + n > ARENA) {
    arena = new Uint8Array(ARENA);
    arenaAt = 0;
  }
  const out = arena.subarray(arenaAt, arenaAt + n);
  out.set(src);
  arenaAt += (n + 7) & ~7;
  return out;
}

/**
 * LZ4: liblz4 through the native addon where it was built (native/lz4.c), else the
 * TypeScript one (lz4.ts); both read and write the LZ4 block format, so a volume moves
 * between them freely. Measured per 4 KiB block (CPU, this VM): compress 1.2-1.7 us
 * native vs 9-13 us in TypeScript (42 us on incompressible data), decompress 0.3-3.6 us
 * vs 8-9 us. Native compression is far cheaper than a worker hop, so it runs inline.
 * STORVISOR_DEDUP_LZ4=js picks the TypeScript one (comparisons, tests).
 */
const lz4Js: Codec = {
  compress(block) {
    const n = lz4Compress(block, scratch);
    return n === 0 ? null : keepFragment(scratch.subarray(0, n));
  },
  decompress: (fragment, out) => lz4Decompress(fragment, out) === out.length,
  fragmentEquals: fragmentEqualsBy((fragment, out) => lz4Decompress(fragment, out) === out.length),
  inline: false,
  engine: 'typescript',
};
const lz4Native: Codec | null = nativeLz4
  ? {
      compress(block) {
        const n = nativeLz4!.lz4Compress(block, scratch);
        return n === 0 ? null : keepFragment(scratch.subarray(0, n));
      },
      decompress: (fragment, out) => nativeLz4!.lz4Decompress(fragment, out) === out.length,
      // One native call: the slot's checks, its CRC, LZ4 into a stack block, memcmp (#12: the
      // verify was fragmentOf's crc32 call, a decompress call into a scratch block and a compare call).
      fragmentEquals: native?.lz4VerifyFragment
        ? (block, slot, data) => native!.lz4VerifyFragment!(block, data, slot, MAX_SLOTS) === 1
        : fragmentEqualsBy((fragment, out) => nativeLz4!.lz4Decompress(fragment, out) === out.length),
      compressBlocks(data, which, count, out) {
        for (let at = 0; at < count; at += BATCH) {
          const c = Math.min(BATCH, count - at);
          const w = at === 0 ? which : which.subarray(at, at + c);
          nativeLz4!.lz4CompressBlocks(data, BLOCK, w, c, batchOut, MAX_FRAGMENT, batchLengths);
          for (let k = 0; k < c; k++) {
            const n = batchLengths[k]!;
            out[w[k]!] = n === 0 ? null : keepFragment(batchOut.subarray(k * MAX_FRAGMENT, k * MAX_FRAGMENT + n));
          }
        }
      },
      inline: true,
      engine: `liblz4 ${nativeLz4.lz4Version}`,
    }
  : null;

/** Which LZ4 runs: 'native' (liblz4, when built; else the TypeScript one) or 'js'. */
export type Lz4Engine = 'native' | 'js';
export const defaultLz4Engine = (): Lz4Engine => (process.env.STORVISOR_DEDUP_LZ4 === 'js' ? 'js' : 'native');

function inflateInto(fragment: Uint8Array, out: Uint8Array): boolean {
  try {
    const d = inflateRawSync(fragment, { maxOutputLength: out.length });
    if (d.length !== out.length) return false;
    out.set(d);
    return true;
  } catch {
    return false; // corrupt stream or longer than one block
  }
}

const deflate: Codec = {
  compress(block) {
    const c = deflateRawSync(block, { level: 1, strategy: zc.Z_DEFAULT_STRATEGY });
    return c.length <= MAX_FRAGMENT ? new Uint8Array(c.buffer, c.byteOffset, c.length) : null;
  },
  decompress: inflateInto,
  fragmentEquals: fragmentEqualsBy(inflateInto),
  inline: false,
  engine: 'zlib',
};

export function codecFor(c: Compression, engine: Lz4Engine = defaultLz4Engine()): Codec | null {
  if (c === 'lz4') return (engine === 'native' && lz4Native) || lz4Js;
  return c === 'deflate' ? deflate : null;
}

/** Packed blocks are cut from shared 256 KiB slabs too (one ArrayBuffer per 64 packers: profiled at 4 KiB writes). */
let packSlab = new Uint8Array(0);
let packAt = 0;
function packBuffer(): Uint8Array {
  if (packAt + BLOCK > packSlab.length) {
    packSlab = new Uint8Array(ARENA);
    packAt = 0;
  }
  packAt += BLOCK;
  return packSlab.subarray(packAt - BLOCK, packAt);
}

/** An open packed block being filled in memory; sealed (written) when full or at commit. */
export class Packer {
  readonly buf = packBuffer();
  private readonly view = viewOf(this.buf);
  count = 0;
  private low = PACK_HEADER;
  private high = BLOCK;

  constructor(readonly pba: number) {
    this.view.setUint32(0, PACK_MAGIC, true);
  }

  /** Slots used and bytes left, for space planning before a write commits to anything. */
  space(): { count: number; free: number } {
    return { count: this.count, free: this.high - this.low };
  }

  fits(len: number): boolean {
    return this.count < MAX_SLOTS && this.low + SLOT + len <= this.high;
  }

  /** Add a fragment; returns its slot. The caller checked `fits`. */
  add(fragment: Uint8Array): number {
    const slot = this.count++;
    this.high -= fragment.length;
    this.buf.set(fragment, this.high);
    const v = this.view;
    v.setUint16(4, this.count, true);
    v.setUint16(this.low, this.high, true);
    v.setUint16(this.low + 2, fragment.length, true);
    v.setUint32(this.low + 4, crc32(fragment), true);
    this.low += SLOT;
    return slot;
  }
}

/** How many fragments a sequence of fragment lengths adds up to in packed blocks, given an open packer. */
export function packedBlocksNeeded(lengths: number[], open: { count: number; free: number } | null): number {
  let blocks = 0;
  let count = open?.count ?? MAX_SLOTS;
  let free = open?.free ?? 0;
  for (const len of lengths) {
    if (count >= MAX_SLOTS || free < SLOT + len) {
      blocks++;
      count = 0;
      free = BLOCK - PACK_HEADER;
    }
    count++;
    free -= SLOT + len;
  }
  return blocks;
}


/** The fragment in `slot` of a packed block, or a reason it cannot be read. */
export function fragmentOf(block: Uint8Array, slot: number): Uint8Array | string {
  // Read through the bytes, not a DataView: this runs for every read and every verify of a
  // packed fragment, and a DataView is an allocation each time (#12).
  if (u32le(block, 0) !== PACK_MAGIC) return 'packed block has a bad magic';
  const count = u16le(block, 4);
  if (count > MAX_SLOTS || slot >= count) return `slot ${slot} is not in the packed block (${count} slots)`;
  const at = PACK_HEADER + slot * SLOT;
  const off = u16le(block, at);
  const len = u16le(block, at + 2);
  if (off < PACK_HEADER + count * SLOT || off + len > BLOCK) return `slot ${slot} points outside the block`;
  const frag = block.subarray(off, off + len);
  if (crc32(frag) !== u32le(block, at + 4)) return `slot ${slot} fragment checksum mismatch`;
  return frag;
}

const u16le = (b: Uint8Array, at: number): number => b[at]! | (b[at + 1]! << 8);
const u32le = (b: Uint8Array, at: number): number => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;

/** Slots in a packed block (for the checker), or -1 when it is not a packed block. */
export function packedCount(block: Uint8Array): number {
  const v = viewOf(block);
  return v.getUint32(0, true) === PACK_MAGIC ? v.getUint16(4, true) : -1;
}

