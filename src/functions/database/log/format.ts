import { crc32 } from 'node:zlib';
import type { Mutation, OpCode } from '../store/mutations.ts';

/**
 * The on-volume format of the database log.
 *
 * Volume layout (all offsets in bytes, B = block size):
 *   [0, B)        superblock slot 0
 *   [B, 2B)       superblock slot 1
 *   [2B, 2B+R)    region 0
 *   [2B+R, 2B+2R) region 1
 * Exactly one region is active: it holds a snapshot of the data set followed
 * by appended records. Compaction writes a fresh snapshot into the other
 * region and then flips the superblock (ping-pong), so there is always one
 * complete copy on the volume. Superblocks alternate slots by generation, so
 * a torn superblock write leaves the previous one intact.
 *
 * Superblock (little-endian, checksummed):
 *   0  magic "SVDBLOG\0"   8
 *   8  u32 type = 1 (RESP database log)
 *   12 u32 version = 1
 *   16 u32 block size
 *   20 u32 active region (0 or 1)
 *   24 u64 device size at format time
 *   32 u64 generation (bumped by every compaction)
 *   40 u64 region 0 offset
 *   48 u64 region size
 *   56 u32 reserved (0)
 *   60 u32 crc32 of bytes [0, 60)
 *
 * Record (little-endian):
 *   0  u32 crc   crc32 of bytes [4, end), seeded with the previous record's crc
 *                (the first record of a region is seeded from the generation)
 *   4  u32 payload length P (>= 5)
 *   8  u8  op, u32 argc, then argc times (u32 length, bytes)
 * The chained crc makes replay stop at the first record that is torn, stale
 * (left from an older use of the region), or out of order.
 */
export const MAGIC = Buffer.from('SVDBLOG\0', 'latin1');
export const LOG_TYPE = 1;
export const LOG_VERSION = 1;
export const SUPERBLOCK_BYTES = 64;
export const RECORD_HEADER = 8;

export interface Superblock {
  blockSize: number;
  activeRegion: 0 | 1;
  deviceSize: number;
  generation: number;
  region0Offset: number;
  regionSize: number;
}

export function regionOffset(sb: Superblock, region: 0 | 1): number {
  return sb.region0Offset + region * sb.regionSize;
}

/** The layout for a fresh device: two superblock blocks, then two equal regions. */
export function initialSuperblock(deviceSize: number, blockSize: number): Superblock {
  const regionSize = Math.floor((deviceSize - 2 * blockSize) / 2 / blockSize) * blockSize;
  return { blockSize, activeRegion: 0, deviceSize, generation: 1, region0Offset: 2 * blockSize, regionSize };
}

export function encodeSuperblock(sb: Superblock): Buffer {
  const b = Buffer.alloc(sb.blockSize);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(LOG_TYPE, 8);
  b.writeUInt32LE(LOG_VERSION, 12);
  b.writeUInt32LE(sb.blockSize, 16);
  b.writeUInt32LE(sb.activeRegion, 20);
  b.writeBigUInt64LE(BigInt(sb.deviceSize), 24);
  b.writeBigUInt64LE(BigInt(sb.generation), 32);
  b.writeBigUInt64LE(BigInt(sb.region0Offset), 40);
  b.writeBigUInt64LE(BigInt(sb.regionSize), 48);
  b.writeUInt32LE(crc32(b.subarray(0, 60)), 60);
  return b;
}

export type SuperblockRead = { kind: 'valid'; sb: Superblock } | { kind: 'blank' } | { kind: 'corrupt'; why: string };

export function decodeSuperblock(b: Buffer): SuperblockRead {
  if (!b.subarray(0, 8).equals(MAGIC)) return { kind: 'blank' };
  if (crc32(b.subarray(0, 60)) !== b.readUInt32LE(60)) return { kind: 'corrupt', why: 'superblock checksum mismatch' };
  if (b.readUInt32LE(8) !== LOG_TYPE) return { kind: 'corrupt', why: `superblock type ${b.readUInt32LE(8)} is not 1` };
  if (b.readUInt32LE(12) !== LOG_VERSION) return { kind: 'corrupt', why: `unsupported version ${b.readUInt32LE(12)}` };
  const active = b.readUInt32LE(20);
  if (active > 1) return { kind: 'corrupt', why: `active region ${active}` };
  return {
    kind: 'valid',
    sb: {
      blockSize: b.readUInt32LE(16),
      activeRegion: active as 0 | 1,
      deviceSize: Number(b.readBigUInt64LE(24)),
      generation: Number(b.readBigUInt64LE(32)),
      region0Offset: Number(b.readBigUInt64LE(40)),
      regionSize: Number(b.readBigUInt64LE(48)),
    },
  };
}

/** The crc seed of a region's first record: ties records to the generation that wrote them. */
export function chainSeed(generation: number): number {
  const g = Buffer.alloc(8);
  g.writeBigUInt64LE(BigInt(generation));
  return crc32(g);
}

export function recordSize(m: Mutation): number {
  let n = RECORD_HEADER + 5;
  for (const a of m.args) n += 4 + a.length;
  return n;
}

/** Encode `m` into `out` at `pos`; returns the record's crc (the seed for the next one). */
export function encodeRecord(m: Mutation, out: Buffer, pos: number, prevCrc: number): number {
  const size = recordSize(m);
  out.writeUInt32LE(size - RECORD_HEADER, pos + 4);
  out[pos + 8] = m.op;
  out.writeUInt32LE(m.args.length, pos + 9);
  let p = pos + 13;
  for (const a of m.args) {
    out.writeUInt32LE(a.length, p);
    a.copy(out, p + 4);
    p += 4 + a.length;
  }
  const crc = crc32(out.subarray(pos + 4, pos + size), prevCrc);
  out.writeUInt32LE(crc, pos);
  return crc;
}

/**
 * Decode the record at `pos` of `buf` (which must hold the whole record), or
 * null if it is not a valid continuation of the chain.
 */
export function decodeRecord(buf: Buffer, pos: number, prevCrc: number): { m: Mutation; crc: number } | null {
  const size = RECORD_HEADER + buf.readUInt32LE(pos + 4);
  if (pos + size > buf.length) return null;
  const crc = crc32(buf.subarray(pos + 4, pos + size), prevCrc);
  if (crc !== buf.readUInt32LE(pos)) return null;
  const op = buf[pos + 8] as OpCode;
  const argc = buf.readUInt32LE(pos + 9);
  const args: Buffer[] = [];
  let p = pos + 13;
  for (let i = 0; i < argc; i++) {
    if (p + 4 > pos + size) return null;
    const len = buf.readUInt32LE(p);
    if (p + 4 + len > pos + size) return null;
    args.push(buf.subarray(p + 4, p + 4 + len));
    p += 4 + len;
  }
  return p === pos + size ? { m: { op, args }, crc } : null;
}
