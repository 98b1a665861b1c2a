import { crc32, viewOf } from './checksum.ts';
import { INODE_SIZE } from './superblock.ts';
import type { FileType } from './types.ts';
import { fsCorrupt } from '../../../util/errors.ts';

/** Pointers in the inode: 12 direct, then single, double and triple indirect (ext2's map). */
export const DIRECT_BLOCKS = 12;

export const InodeType = { free: 0, file: 1, dir: 2, symlink: 3 } as const;
export type InodeTypeCode = (typeof InodeType)[keyof typeof InodeType];

export interface Inode {
  type: InodeTypeCode;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  /** Bumped each time the record is (re)allocated: file handles carry it. */
  generation: number;
  /** Directories: the parent directory ('..'). */
  parent: number;
  size: number;
  /** Blocks owned: data + indirect (files, symlinks) or B-tree nodes (directories). */
  blocks: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
  direct: number[];
  indirect: [number, number, number];
  /** Directories: the B-tree root block (fixed for the directory's life). */
  dirRoot: number;
  /** Directories: number of entries, excluding '.' and '..'. */
  entries: number;
}

// Record layout (256 bytes).
const R = {
  type: 0,
  mode: 2,
  nlink: 4,
  uid: 8,
  gid: 12,
  generation: 16,
  parent: 20,
  size: 24, // f64: exact for every size below 2^53
  blocks: 32,
  atime: 40,
  mtime: 48,
  ctime: 56,
  direct: 64, // 12 x u32
  indirect: 112, // 3 x u32
  dirRoot: 124,
  entries: 128,
  crc: INODE_SIZE - 4,
} as const;

export function emptyInode(generation: number): Inode {
  return {
    type: InodeType.free,
    mode: 0,
    nlink: 0,
    uid: 0,
    gid: 0,
    generation,
    parent: 0,
    size: 0,
    blocks: 0,
    atimeMs: 0,
    mtimeMs: 0,
    ctimeMs: 0,
    direct: new Array(DIRECT_BLOCKS).fill(0),
    indirect: [0, 0, 0],
    dirRoot: 0,
    entries: 0,
  };
}

/** A never-written record (all zeroes) is a free inode with generation 0: valid without a CRC. */
function isBlank(block: Uint8Array, off: number): boolean {
  for (let i = off; i < off + INODE_SIZE; i++) if (block[i] !== 0) return false;
  return true;
}

/**
 * Decode the record at byte `off` of an inode table block; throws on a checksum
 * mismatch unless `verified` (the caller already checked this buffer).
 */
export function decodeInode(block: Uint8Array, off: number, verified = false): Inode {
  if (isBlank(block, off)) return emptyInode(0);
  const v = viewOf(block);
  if (!verified && v.getUint32(off + R.crc, true) !== crc32(block, off, off + R.crc)) {
    throw fsCorrupt('inode record checksum mismatch');
  }
  const direct: number[] = [];
  for (let i = 0; i < DIRECT_BLOCKS; i++) direct.push(v.getUint32(off + R.direct + 4 * i, true));
  return {
    type: v.getUint16(off + R.type, true) as InodeTypeCode,
    mode: v.getUint16(off + R.mode, true),
    nlink: v.getUint32(off + R.nlink, true),
    uid: v.getUint32(off + R.uid, true),
    gid: v.getUint32(off + R.gid, true),
    generation: v.getUint32(off + R.generation, true),
    parent: v.getUint32(off + R.parent, true),
    size: v.getFloat64(off + R.size, true),
    blocks: v.getUint32(off + R.blocks, true),
    atimeMs: v.getFloat64(off + R.atime, true),
    mtimeMs: v.getFloat64(off + R.mtime, true),
    ctimeMs: v.getFloat64(off + R.ctime, true),
    direct,
    indirect: [
      v.getUint32(off + R.indirect, true),
      v.getUint32(off + R.indirect + 4, true),
      v.getUint32(off + R.indirect + 8, true),
    ],
    dirRoot: v.getUint32(off + R.dirRoot, true),
    entries: v.getUint32(off + R.entries, true),
  };
}

export function encodeInode(ino: Inode, block: Uint8Array, off: number): void {
  block.fill(0, off, off + INODE_SIZE);
  const v = viewOf(block);
  v.setUint16(off + R.type, ino.type, true);
  v.setUint16(off + R.mode, ino.mode, true);
  v.setUint32(off + R.nlink, ino.nlink, true);
  v.setUint32(off + R.uid, ino.uid >>> 0, true);
  v.setUint32(off + R.gid, ino.gid >>> 0, true);
  v.setUint32(off + R.generation, ino.generation >>> 0, true);
  v.setUint32(off + R.parent, ino.parent, true);
  v.setFloat64(off + R.size, ino.size, true);
  v.setUint32(off + R.blocks, ino.blocks, true);
  v.setFloat64(off + R.atime, ino.atimeMs, true);
  v.setFloat64(off + R.mtime, ino.mtimeMs, true);
  v.setFloat64(off + R.ctime, ino.ctimeMs, true);
  for (let i = 0; i < DIRECT_BLOCKS; i++) v.setUint32(off + R.direct + 4 * i, ino.direct[i], true);
  for (let i = 0; i < 3; i++) v.setUint32(off + R.indirect + 4 * i, ino.indirect[i], true);
  v.setUint32(off + R.dirRoot, ino.dirRoot, true);
  v.setUint32(off + R.entries, ino.entries, true);
  v.setUint32(off + R.crc, crc32(block, off, off + R.crc), true);
}

export function fileTypeOf(t: InodeTypeCode): FileType {
  return t === InodeType.dir ? 'dir' : t === InodeType.symlink ? 'symlink' : 'file';
}

/** Check every record of an inode table block; returns the first bad record's index or -1. */
export function verifyInodeBlock(block: Uint8Array): number {
  const v = viewOf(block);
  for (let off = 0; off < block.byteLength; off += INODE_SIZE) {
    if (isBlank(block, off)) continue;
    if (v.getUint32(off + R.crc, true) !== crc32(block, off, off + R.crc)) return off / INODE_SIZE;
  }
  return -1;
}
