import { randomBytes } from 'node:crypto';
import type { BlockDevice } from '../../../block/types.ts';
import { encodeEmptyLeaf } from './directory.ts';
import { emptyInode, encodeInode, InodeType } from './inode.ts';
import { encodeJournalHeader } from './journal.ts';
import {
  BLOCK_SIZE,
  computeGeometry,
  encodeSuperblock,
  FORMAT_VERSION,
  INODE_SIZE,
  INODES_PER_BLOCK,
  MAX_BLOCKS,
  ROOT_INO,
  type GeometryOptions,
  type Superblock,
} from './superblock.ts';
import { invalidArgument, readOnly } from '../../../util/errors.ts';

export interface MkfsOptions extends GeometryOptions {
  /** 16 bytes; random by default (fixed only for golden fixtures). */
  uuid?: Uint8Array;
  /** Creation time stamp of the root directory (default now). */
  nowMs?: number;
  /** 32 bytes stored in the superblock for the NFS server's handle MAC (default: none, all zeroes). */
  handleKey?: Uint8Array;
  /** Owner and permission bits of the root directory (default 0:0, 0o755). */
  root?: { uid: number; gid: number; mode: number };
}

function setBits(bitmap: Uint8Array, from: number, to: number): void {
  for (let i = from; i < to; i++) bitmap[i >> 3] |= 1 << (i & 7);
}

/**
 * Write an empty filesystem: zeroed journal, bitmaps and inode table, the root
 * directory, and the superblock last (a crash before it leaves an all-zero
 * superblock, so the next start simply runs mkfs again).
 */
export async function mkfs(device: BlockDevice, opts: MkfsOptions = {}): Promise<Superblock> {
  if (device.readOnly) throw readOnly('mkfs: device');
  const totalBlocks = Math.min(MAX_BLOCKS, Math.floor(device.size / BLOCK_SIZE));
  const g = computeGeometry(totalBlocks, opts);
  const uuid = opts.uuid ?? new Uint8Array(randomBytes(16));
  if (uuid.byteLength !== 16) throw invalidArgument('mkfs: uuid must be 16 bytes');
  const now = opts.nowMs ?? Date.now();
  if (opts.handleKey && opts.handleKey.byteLength !== 32) throw invalidArgument('mkfs: handleKey must be 32 bytes');
  const sb: Superblock = { ...g, version: FORMAT_VERSION, blockSize: BLOCK_SIZE, rootIno: ROOT_INO, uuid, createdMs: now, handleKey: opts.handleKey };

  await device.pwrite(new Uint8Array(BLOCK_SIZE), 0);
  // Zero every metadata region: a reused device must not show old records.
  await device.zero(g.journalStart * BLOCK_SIZE, (g.dataStart - g.journalStart) * BLOCK_SIZE);
  await device.pwrite(encodeJournalHeader(g, { tailPos: 1, tailSeq: 1 }), g.journalStart * BLOCK_SIZE);

  const rootBlock = g.dataStart;
  const bbits = new Uint8Array(g.blockBitmapBlocks * BLOCK_SIZE);
  setBits(bbits, 0, rootBlock + 1);
  await device.pwrite(bbits.subarray(0, Math.ceil((rootBlock + 1) / 8 / BLOCK_SIZE) * BLOCK_SIZE), g.blockBitmapStart * BLOCK_SIZE);
  const ibits = new Uint8Array(BLOCK_SIZE);
  setBits(ibits, 0, ROOT_INO + 1);
  await device.pwrite(ibits, g.inodeBitmapStart * BLOCK_SIZE);

  const itBlock = new Uint8Array(BLOCK_SIZE);
  const root = emptyInode(1);
  Object.assign(root, {
    type: InodeType.dir,
    mode: (opts.root?.mode ?? 0o755) & 0o7777,
    uid: opts.root?.uid ?? 0,
    gid: opts.root?.gid ?? 0,
    nlink: 2,
    parent: ROOT_INO,
    size: BLOCK_SIZE,
    blocks: 1,
    atimeMs: now,
    mtimeMs: now,
    ctimeMs: now,
    dirRoot: rootBlock,
  });
  encodeInode(root, itBlock, (ROOT_INO % INODES_PER_BLOCK) * INODE_SIZE);
  await device.pwrite(itBlock, (g.inodeTableStart + Math.floor(ROOT_INO / INODES_PER_BLOCK)) * BLOCK_SIZE);
  await device.pwrite(encodeEmptyLeaf(ROOT_INO), rootBlock * BLOCK_SIZE);
  await device.flush();
  await device.pwrite(encodeSuperblock(sb), 0, { fua: true });
  await device.flush();
  return sb;
}
