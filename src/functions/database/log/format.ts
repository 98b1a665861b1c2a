import { crc32 } from 'node:zlib';
import { invalidArgument } from '../../../util/errors.ts';
import { native } from '../../../native/addon.ts';
import { decodeMutation, type Mutation, type OpCode } from '../store/mutations.ts';

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
 *   12 u32 version (2; 1 is still read)
 *   16 u32 block size
 *   20 u32 active region (0 or 1)
 *   24 u64 device size at format time
 *   32 u64 generation (bumped by every compaction)
 *   40 u64 region 0 offset
 *   48 u64 region size
 *   version 2:                         version 1:
 *   56 u64 sequence number of the       56 u32 reserved (0)
 *          active region's first record 60 u32 crc32 of bytes [0, 60)
 *   64 u32 crc32 of bytes [0, 64)
 *
 * Record, version 2 (little-endian):
 *   0  u32 crc   crc32 of bytes [4, end), seeded with the previous record's crc
 *                (the first record of a region is seeded from the generation)
 *   4  u32 payload length P (>= 5): the bytes after the 16-byte header
 *   8  u64 sequence number: one more than the previous record's; the first
 *          record of a region carries the superblock's first sequence
 *   16 u8  op, u32 argc, then argc times (u32 length, bytes)
 * Record, version 1: the same without the sequence number (8-byte header).
 *
 * Sequence numbers count records over the log's whole life: compaction numbers
 * the snapshot on from the last appended record, so a region's numbers are
 * always above any left in it by an earlier pass. Replay stops at the first
 * record that is torn, out of chain, or not the expected next sequence number:
 * a stale record whose crc happens to chain on (or that is byte-identical to a
 * record rewritten at the same place) still carries an old number.
 */
export const MAGIC = Buffer.from('SVDBLOG\0', 'latin1');
export const LOG_TYPE = 1;
/** The version this code writes. */
export const LOG_VERSION = 2;
/** Versions this code reads. */
export type LogVersion = 1 | 2;
export const SUPERBLOCK_BYTES = 68;
export const RECORD_HEADER = 16;
export const RECORD_HEADER_V1 = 8;

export interface Superblock {
  /** Format of the active region's records (new superblocks are always version 2). */
  version: LogVersion;
  blockSize: number;
  activeRegion: 0 | 1;
  deviceSize: number;
  generation: number;
  region0Offset: number;
  regionSize: number;
  /** Sequence number of the active region's first record (version 2; 0 for version 1). */
  firstSeq: number;
}

export function recordHeaderBytes(version: LogVersion): number {
  return version === 1 ? RECORD_HEADER_V1 : RECORD_HEADER;
}

export function regionOffset(sb: Superblock, region: 0 | 1): number {
  return sb.region0Offset + region * sb.regionSize;
}

/** The layout for a fresh device: two superblock blocks, then two equal regions. */
export function initialSuperblock(deviceSize: number, blockSize: number): Superblock {
  const regionSize = Math.floor((deviceSize - 2 * blockSize) / 2 / blockSize) * blockSize;
  return { version: LOG_VERSION, blockSize, activeRegion: 0, deviceSize, generation: 1, region0Offset: 2 * blockSize, regionSize, firstSeq: 1 };
}

/** Always version 2: a version 1 log is compacted into version 2 before anything is written to it. */
export function encodeSuperblock(sb: Superblock): Buffer {
  if (sb.version !== LOG_VERSION) throw invalidArgument(`database log: cannot write a version ${sb.version} superblock`);
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
  b.writeBigUInt64LE(BigInt(sb.firstSeq), 56);
  b.writeUInt32LE(crc32(b.subarray(0, 64)), 64);
  return b;
}

export type SuperblockRead = { kind: 'valid'; sb: Superblock } | { kind: 'blank' } | { kind: 'corrupt'; why: string };

export function decodeSuperblock(b: Buffer): SuperblockRead {
  if (!b.subarray(0, 8).equals(MAGIC)) return { kind: 'blank' };
  const version = b.readUInt32LE(12);
  // The checksum's place depends on the version; an unknown version is checked as the newest.
  const crcAt = version === 1 ? 60 : 64;
  if (crc32(b.subarray(0, crcAt)) !== b.readUInt32LE(crcAt)) return { kind: 'corrupt', why: 'superblock checksum mismatch' };
  if (b.readUInt32LE(8) !== LOG_TYPE) return { kind: 'corrupt', why: `superblock type ${b.readUInt32LE(8)} is not 1` };
  if (version !== 1 && version !== 2) return { kind: 'corrupt', why: `unsupported version ${version}` };
  const active = b.readUInt32LE(20);
  if (active > 1) return { kind: 'corrupt', why: `active region ${active}` };
  const firstSeq = version === 1 ? 0 : Number(b.readBigUInt64LE(56));
  if (version === 2 && (firstSeq < 1 || !Number.isSafeInteger(firstSeq))) return { kind: 'corrupt', why: `first sequence number ${firstSeq}` };
  return {
    kind: 'valid',
    sb: {
      version,
      firstSeq,
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

const nativeCrc = native?.crc32Range?.bind(native) ?? null;

/**
 * zlib's crc32 of buf[from, to) continuing from `seed`: native/crc32.c where
 * the addon is loaded (no view object per call, and PCLMULQDQ folding: about
 * 3x zlib on a 4 KiB record), else zlib.crc32 over a view. The same values.
 */
export const crc32Range: (buf: Buffer, from: number, to: number, seed: number) => number =
  nativeCrc !== null ? (buf, from, to, seed) => nativeCrc(buf, from, to - from, seed) : (buf, from, to, seed) => crc32(buf.subarray(from, to), seed);

/** Size of `m` as a version 2 record (what the writer appends). */
export function recordSize(m: Mutation): number {
  let n = RECORD_HEADER + 5;
  for (const a of m.args) n += 4 + a.length;
  return n;
}

/** Encode `m` as a version 2 record with sequence number `seq` into `out` at `pos`; returns its crc (the next record's seed). */
export function encodeRecord(m: Mutation, out: Buffer, pos: number, prevCrc: number, seq: number, size = recordSize(m)): number {
  encodeRecordBody(m, out, pos, seq, size);
  const crc = crc32Range(out, pos + 4, pos + size, prevCrc);
  u32(out, pos, crc);
  return crc;
}

/**
 * encodeRecord() without its crc: the record is complete but for its first
 * four bytes, which sealRecords() fills (for a whole batch in one call).
 */
export function encodeRecordBody(m: Mutation, out: Buffer, pos: number, seq: number, size = recordSize(m)): void {
  u32(out, pos + 4, size - RECORD_HEADER);
  // u64 as two u32 halves: no BigInt per record (seq is a safe integer).
  u32(out, pos + 8, seq % 0x1_0000_0000);
  u32(out, pos + 12, Math.floor(seq / 0x1_0000_0000));
  let p = pos + RECORD_HEADER;
  const args = m.args;
  out[p] = m.op;
  u32(out, p + 1, args.length);
  p += 5;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const n = a.length;
    u32(out, p, n);
    p += 4;
    // Short arguments (keys, numbers) byte by byte: cheaper than a TypedArray set call.
    if (n <= SHORT_COPY) for (let j = 0; j < n; j++) out[p + j] = a[j];
    else out.set(a, p);
    p += n;
  }
}

const nativeSeal = native?.crc32Records?.bind(native) ?? null;

/**
 * Write the crc of every record encoded by encodeRecordBody back to back in
 * buf[from, to), chained from `seed`; returns the last (the next seed). The
 * same bytes as encodeRecord per record, in one native call per batch.
 */
export const sealRecords: (buf: Buffer, from: number, to: number, seed: number) => number =
  nativeSeal !== null
    ? nativeSeal
    : (buf, from, to, seed) => {
        let crc = seed;
        for (let p = from; p < to; ) {
          const size = encodedRecordSize(buf, p);
          crc = crc32Range(buf, p + 4, p + size, crc);
          u32(buf, p, crc);
          p += size;
        }
        return crc;
      };

/** Arguments up to this many bytes are copied in a loop, longer ones with TypedArray set. */
const SHORT_COPY = 32;

/** A little-endian u32 at p (stores into a Uint8Array keep the low 8 bits). */
function u32(b: Buffer, p: number, v: number): void {
  b[p] = v;
  b[p + 1] = v >>> 8;
  b[p + 2] = v >>> 16;
  b[p + 3] = v >>> 24;
}

/**
 * Decode the record at `pos` of `buf` (which must hold the whole record), or
 * null if it is not a valid continuation of the chain. `seq` is the record's
 * sequence number (version 2; 0 for version 1): the caller checks it is the
 * expected next one.
 */
export function decodeRecord(
  buf: Buffer,
  pos: number,
  prevCrc: number,
  version: LogVersion = LOG_VERSION,
): { m: Mutation; crc: number; seq: number } | null {
  const header = recordHeaderBytes(version);
  if (pos + header > buf.length) return null;
  const size = header + buf.readUInt32LE(pos + 4);
  if (size < header + 5 || pos + size > buf.length) return null;
  const crc = crc32Range(buf, pos + 4, pos + size, prevCrc);
  if (crc !== buf.readUInt32LE(pos)) return null;
  const seq = version === 1 ? 0 : Number(buf.readBigUInt64LE(pos + 8));
  const op = buf[pos + header] as OpCode;
  const argc = buf.readUInt32LE(pos + header + 1);
  const args: Buffer[] = [];
  let p = pos + header + 5;
  for (let i = 0; i < argc; i++) {
    if (p + 4 > pos + size) return null;
    const len = buf.readUInt32LE(p);
    if (p + 4 + len > pos + size) return null;
    args.push(buf.subarray(p + 4, p + 4 + len));
    p += 4 + len;
  }
  return p === pos + size ? { m: { op, args }, crc, seq } : null;
}

/** Size of the version 2 record at `pos` of bytes this process encoded (its header is trusted, not checked). */
export function encodedRecordSize(buf: Buffer, pos: number): number {
  return RECORD_HEADER + buf.readUInt32LE(pos + 4);
}

/** The mutation of the version 2 record at `pos` of bytes this process encoded (arguments are views of `buf`). */
export function encodedRecordMutation(buf: Buffer, pos: number): Mutation {
  return decodeMutation(buf.subarray(pos + RECORD_HEADER, pos + encodedRecordSize(buf, pos)));
}
