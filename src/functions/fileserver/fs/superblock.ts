import { blockSealOk, sealBlock, viewOf } from './checksum.ts';
import { fsCorrupt, invalidArgument, notSupported } from '../../../util/errors.ts';

/**
 * On-volume layout (all integers little-endian, 4 KiB blocks):
 *
 *   block 0                superblock (this module)
 *   journal                write-ahead redo log (journal.ts); its first block is the journal header
 *   block bitmap           one bit per volume block, 1 = in use
 *   inode bitmap           one bit per inode, 1 = in use (inode 0 is reserved)
 *   inode table            fixed 256-byte inode records (inode.ts)
 *   data                   file data, indirect blocks, directory B-tree nodes
 *
 * Every metadata block starts with a header (magic, type, version) and ends in a CRC-32.
 */
export const BLOCK_SIZE = 4096;
export const FORMAT_VERSION = 1;
/** ASCII "SVFS" read as a little-endian u32. */
export const MAGIC_SUPER = 0x53465653;

/** Block type tags, stored after the magic so a block found anywhere says what it is. */
export const BlockType = {
  super: 1,
  journalHeader: 2,
  journalDescriptor: 3,
  journalCommit: 4,
  dirNode: 5,
} as const;

export const INODE_SIZE = 256;
export const INODES_PER_BLOCK = BLOCK_SIZE / INODE_SIZE;
export const BITS_PER_BLOCK = BLOCK_SIZE * 8;
export const ROOT_INO = 1;
/** Block numbers are u32 on disk. */
export const MAX_BLOCKS = 0xffff_ffff;

export interface Geometry {
  totalBlocks: number;
  inodeCount: number;
  journalStart: number;
  journalBlocks: number;
  blockBitmapStart: number;
  blockBitmapBlocks: number;
  inodeBitmapStart: number;
  inodeBitmapBlocks: number;
  inodeTableStart: number;
  inodeTableBlocks: number;
  dataStart: number;
}

export interface Superblock extends Geometry {
  version: number;
  blockSize: number;
  rootIno: number;
  uuid: Uint8Array;
  createdMs: number;
  /**
   * 32 random bytes the NFS server keys its file handles with (nfs/handle.ts), or all
   * zeroes on volumes formatted without one (older volumes, golden fixtures). Written
   * once by mkfs, so it moves with the volume and never needs an in-place update.
   */
  handleKey?: Uint8Array;
}

export interface GeometryOptions {
  /** Inode count (default: one per 16 KiB of volume, at least 64). */
  inodes?: number;
  /** Journal size in blocks (default: 1/64 of the volume, between 64 and 8192). */
  journalBlocks?: number;
}

const ceilDiv = (a: number, b: number) => Math.ceil(a / b);

/** Lay out a volume of `totalBlocks`; throws a message naming the problem if it cannot hold a filesystem. */
export function computeGeometry(totalBlocks: number, opts: GeometryOptions = {}): Geometry {
  if (totalBlocks > MAX_BLOCKS) throw invalidArgument(`volume too large: ${totalBlocks} blocks (max ${MAX_BLOCKS})`);
  const journalBlocks = opts.journalBlocks ?? Math.min(8192, Math.max(64, Math.floor(totalBlocks / 64)));
  let inodeCount = opts.inodes ?? Math.max(64, Math.floor(totalBlocks / 4));
  inodeCount = ceilDiv(inodeCount, INODES_PER_BLOCK) * INODES_PER_BLOCK;
  if (journalBlocks < 32) throw invalidArgument(`journal too small: ${journalBlocks} blocks (min 32)`);
  const journalStart = 1;
  const blockBitmapStart = journalStart + journalBlocks;
  const blockBitmapBlocks = ceilDiv(totalBlocks, BITS_PER_BLOCK);
  const inodeBitmapStart = blockBitmapStart + blockBitmapBlocks;
  const inodeBitmapBlocks = ceilDiv(inodeCount, BITS_PER_BLOCK);
  const inodeTableStart = inodeBitmapStart + inodeBitmapBlocks;
  const inodeTableBlocks = inodeCount / INODES_PER_BLOCK;
  const dataStart = inodeTableStart + inodeTableBlocks;
  if (dataStart + 8 > totalBlocks) {
    throw invalidArgument(`volume too small: ${totalBlocks} blocks, metadata alone needs ${dataStart} + 8 data blocks`);
  }
  return {
    totalBlocks,
    inodeCount,
    journalStart,
    journalBlocks,
    blockBitmapStart,
    blockBitmapBlocks,
    inodeBitmapStart,
    inodeBitmapBlocks,
    inodeTableStart,
    inodeTableBlocks,
    dataStart,
  };
}

// Field offsets inside block 0.
const F = {
  magic: 0,
  type: 4,
  version: 6,
  blockSize: 8,
  totalBlocks: 12,
  inodeCount: 16,
  inodeSize: 20,
  journalStart: 24,
  journalBlocks: 28,
  blockBitmapStart: 32,
  blockBitmapBlocks: 36,
  inodeBitmapStart: 40,
  inodeBitmapBlocks: 44,
  inodeTableStart: 48,
  inodeTableBlocks: 52,
  dataStart: 56,
  rootIno: 60,
  uuid: 64,
  createdMs: 80,
  handleKey: 88,
} as const;
const HANDLE_KEY_BYTES = 32;

export function encodeSuperblock(sb: Superblock): Uint8Array {
  const b = new Uint8Array(BLOCK_SIZE);
  const v = viewOf(b);
  v.setUint32(F.magic, MAGIC_SUPER, true);
  v.setUint16(F.type, BlockType.super, true);
  v.setUint16(F.version, sb.version, true);
  v.setUint32(F.blockSize, sb.blockSize, true);
  v.setUint32(F.totalBlocks, sb.totalBlocks, true);
  v.setUint32(F.inodeCount, sb.inodeCount, true);
  v.setUint32(F.inodeSize, INODE_SIZE, true);
  v.setUint32(F.journalStart, sb.journalStart, true);
  v.setUint32(F.journalBlocks, sb.journalBlocks, true);
  v.setUint32(F.blockBitmapStart, sb.blockBitmapStart, true);
  v.setUint32(F.blockBitmapBlocks, sb.blockBitmapBlocks, true);
  v.setUint32(F.inodeBitmapStart, sb.inodeBitmapStart, true);
  v.setUint32(F.inodeBitmapBlocks, sb.inodeBitmapBlocks, true);
  v.setUint32(F.inodeTableStart, sb.inodeTableStart, true);
  v.setUint32(F.inodeTableBlocks, sb.inodeTableBlocks, true);
  v.setUint32(F.dataStart, sb.dataStart, true);
  v.setUint32(F.rootIno, sb.rootIno, true);
  b.set(sb.uuid.subarray(0, 16), F.uuid);
  v.setFloat64(F.createdMs, sb.createdMs, true);
  if (sb.handleKey) b.set(sb.handleKey.subarray(0, HANDLE_KEY_BYTES), F.handleKey);
  sealBlock(b);
  return b;
}

export function isAllZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.byteLength; i++) if (b[i] !== 0) return false;
  return true;
}

/**
 * Decode and validate block 0 against the device size. Throws an Error whose
 * message says what is wrong (mount and fsck report it as is).
 */
export function decodeSuperblock(b: Uint8Array, deviceSize: number): Superblock {
  const v = viewOf(b);
  if (v.getUint32(F.magic, true) !== MAGIC_SUPER) throw fsCorrupt('superblock: bad magic (not a storvisor filesystem)');
  if (v.getUint16(F.type, true) !== BlockType.super) throw fsCorrupt('superblock: wrong block type');
  if (!blockSealOk(b)) throw fsCorrupt('superblock: checksum mismatch');
  const version = v.getUint16(F.version, true);
  if (version !== FORMAT_VERSION) throw notSupported(`superblock: unsupported version ${version}`);
  const blockSize = v.getUint32(F.blockSize, true);
  if (blockSize !== BLOCK_SIZE) throw notSupported(`superblock: unsupported block size ${blockSize}`);
  if (v.getUint32(F.inodeSize, true) !== INODE_SIZE) throw notSupported('superblock: unsupported inode size');
  const totalBlocks = v.getUint32(F.totalBlocks, true);
  if (totalBlocks * BLOCK_SIZE > deviceSize) {
    throw fsCorrupt(`superblock: filesystem has ${totalBlocks} blocks but the device holds only ${Math.floor(deviceSize / BLOCK_SIZE)}`);
  }
  const sb: Superblock = {
    version,
    blockSize,
    totalBlocks,
    inodeCount: v.getUint32(F.inodeCount, true),
    journalStart: v.getUint32(F.journalStart, true),
    journalBlocks: v.getUint32(F.journalBlocks, true),
    blockBitmapStart: v.getUint32(F.blockBitmapStart, true),
    blockBitmapBlocks: v.getUint32(F.blockBitmapBlocks, true),
    inodeBitmapStart: v.getUint32(F.inodeBitmapStart, true),
    inodeBitmapBlocks: v.getUint32(F.inodeBitmapBlocks, true),
    inodeTableStart: v.getUint32(F.inodeTableStart, true),
    inodeTableBlocks: v.getUint32(F.inodeTableBlocks, true),
    dataStart: v.getUint32(F.dataStart, true),
    rootIno: v.getUint32(F.rootIno, true),
    uuid: b.slice(F.uuid, F.uuid + 16),
    createdMs: v.getFloat64(F.createdMs, true),
    handleKey: b.slice(F.handleKey, F.handleKey + HANDLE_KEY_BYTES),
  };
  // The layout must be exactly what computeGeometry would produce: no overlapping regions.
  const expect = computeGeometry(totalBlocks, { inodes: sb.inodeCount, journalBlocks: sb.journalBlocks });
  for (const k of Object.keys(expect) as (keyof Geometry)[]) {
    if (expect[k] !== sb[k]) throw fsCorrupt(`superblock: inconsistent layout field ${k} (${sb[k]}, expected ${expect[k]})`);
  }
  if (sb.rootIno !== ROOT_INO) throw fsCorrupt(`superblock: root inode ${sb.rootIno} is not ${ROOT_INO}`);
  return sb;
}
