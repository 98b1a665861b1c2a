import type { BlockDevice } from '../../../block/types.ts';
import { invalidArgument, ioError } from '../../../util/errors.ts';
import type { Mutation } from '../store/mutations.ts';
import {
  chainSeed,
  recordHeaderBytes,
  decodeRecord,
  decodeSuperblock,
  encodeSuperblock,
  initialSuperblock,
  regionOffset,
  type Superblock,
} from './format.ts';

/** Where appending resumes: what recovery found (or a fresh format). */
export interface LogPosition {
  sb: Superblock;
  /** Bytes of valid records in the active region. */
  tail: number;
  /** Crc of the last valid record (the chain seed of the next). */
  lastCrc: number;
  /** The active region's bytes of the block that holds `tail`, [blockStart, tail). */
  tailBlock: Buffer;
  /** Sequence number of the next record. */
  nextSeq: number;
  /**
   * Compact before the first append: set for every log that was recovered
   * rather than formatted. Bytes past the recovered tail may be a torn,
   * unacknowledged batch; appending in place could rewrite its first record
   * byte for byte (same command, same sequence number, same chain) and so
   * revive the stale records behind it. A fresh region under a new generation
   * cannot. It also moves a version 1 log to version 2.
   */
  compactFirst: boolean;
}

/** The smallest region worth having: room for a few records and the reserve. */
const MIN_REGION_BLOCKS = 4;
const READ_WINDOW = 1 << 20;

/**
 * Open the log on a device: pick the newest valid superblock (formatting a
 * blank device), then replay the active region record by record into `apply`,
 * stopping cleanly at the first torn, stale or corrupt record.
 *
 * Nothing is written to a log that existed: the writer compacts it into the
 * other region before its first append (see LogPosition.compactFirst).
 */
export async function openLog(
  device: BlockDevice,
  apply: (m: Mutation) => void,
): Promise<{ pos: LogPosition; formatted: boolean; replayed: number }> {
  const bs = device.blockSize;
  if (device.size < (2 + 2 * MIN_REGION_BLOCKS) * bs) {
    throw invalidArgument(`device of ${device.size} bytes is too small for the database (needs ${(2 + 2 * MIN_REGION_BLOCKS) * bs})`);
  }
  const slots = await Promise.all([0, 1].map(async (i) => {
    const b = Buffer.alloc(bs);
    await device.pread(b, i * bs);
    return decodeSuperblock(b);
  }));
  let sb: Superblock | null = null;
  for (const s of slots) if (s.kind === 'valid' && (sb === null || s.sb.generation > sb.generation)) sb = s.sb;
  if (sb === null) {
    const corrupt = slots.find((s) => s.kind === 'corrupt');
    // Never format over something that looks like ours: that would destroy data.
    if (corrupt && corrupt.kind === 'corrupt') throw ioError(`database superblock is corrupt: ${corrupt.why}`);
    sb = initialSuperblock(device.size, bs);
    await device.pwrite(encodeSuperblock(sb), (sb.generation % 2) * bs, { fua: true });
    if (!device.writeThrough) await device.flush();
    const pos = { sb, tail: 0, lastCrc: chainSeed(sb.generation), tailBlock: Buffer.alloc(0), nextSeq: sb.firstSeq, compactFirst: false };
    return { pos, formatted: true, replayed: 0 };
  }
  if (sb.blockSize !== bs) throw ioError(`database was formatted with block size ${sb.blockSize}, device has ${bs}`);
  if (sb.region0Offset + 2 * sb.regionSize > device.size) {
    throw ioError(`database needs ${sb.region0Offset + 2 * sb.regionSize} bytes, device has ${device.size}`);
  }
  const { tail, lastCrc, nextSeq, replayed } = await replayRegion(device, sb, apply);
  const tailBlock = await readTailBlock(device, sb, tail);
  return { pos: { sb, tail, lastCrc, tailBlock, nextSeq, compactFirst: true }, formatted: false, replayed };
}

async function replayRegion(
  device: BlockDevice,
  sb: Superblock,
  apply: (m: Mutation) => void,
): Promise<{ tail: number; lastCrc: number; nextSeq: number; replayed: number }> {
  const base = regionOffset(sb, sb.activeRegion);
  const end = sb.regionSize;
  let window = Buffer.alloc(0);
  let windowStart = 0;
  /** Bytes [pos, pos+len) of the region, reading a new window when needed. */
  const view = async (pos: number, len: number): Promise<Buffer> => {
    if (pos < windowStart || pos + len > windowStart + window.length) {
      const size = Math.min(Math.max(len, READ_WINDOW), end - pos);
      window = Buffer.alloc(size);
      await device.pread(window, base + pos);
      windowStart = pos;
    }
    return window.subarray(pos - windowStart, pos - windowStart + len);
  };
  const headerBytes = recordHeaderBytes(sb.version);
  let pos = 0;
  let crc = chainSeed(sb.generation);
  let seq = sb.firstSeq;
  let replayed = 0;
  while (pos + headerBytes <= end) {
    const header = await view(pos, headerBytes);
    const size = headerBytes + header.readUInt32LE(4);
    if (size < headerBytes + 5 || pos + size > end) break;
    const rec = decodeRecord(await view(pos, size), 0, crc, sb.version);
    if (rec === null) break;
    // Version 2: a record that chains but is not the next number is stale (an earlier pass).
    if (sb.version !== 1 && rec.seq !== seq) break;
    apply(rec.m);
    crc = rec.crc;
    pos += size;
    seq++;
    replayed++;
  }
  // A version 1 log numbers nothing: its compaction into version 2 starts counting after its records.
  return { tail: pos, lastCrc: crc, nextSeq: sb.version === 1 ? replayed + 1 : seq, replayed };
}

/** The active region's bytes from the start of the block holding `tail` up to `tail`. */
export async function readTailBlock(device: BlockDevice, sb: Superblock, tail: number): Promise<Buffer> {
  const blockStart = Math.floor(tail / sb.blockSize) * sb.blockSize;
  const b = Buffer.alloc(tail - blockStart);
  if (b.length > 0) await device.pread(b, regionOffset(sb, sb.activeRegion) + blockStart);
  return b;
}
