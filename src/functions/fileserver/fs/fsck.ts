import type { BlockDevice } from '../../../block/types.ts';
import { walkBlocks } from './blockmap.ts';
import { dirCheck } from './directory.ts';
import { decodeInode, InodeType, type Inode } from './inode.ts';
import { scanJournal } from './journal.ts';
import { BITS_PER_BLOCK, BLOCK_SIZE, decodeSuperblock, INODE_SIZE, INODES_PER_BLOCK, type Superblock } from './superblock.ts';

export interface FsckStats {
  totalBlocks: number;
  usedBlocks: number;
  freeBlocks: number;
  inodes: number;
  files: number;
  dirs: number;
  symlinks: number;
  dirEntries: number;
  /** Committed journal records that a mount would replay (fsck reads through them). */
  journalRecords: number;
  /** Files on the orphan list: an interrupted large truncate or remove the next mount finishes. */
  orphans: number;
}

export interface FsckResult {
  ok: boolean;
  problems: string[];
  stats: FsckStats;
}

const MAX_PER_KIND = 20;

/**
 * Check a filesystem without changing it: superblock, journal, bitmaps against
 * the blocks and inodes actually reachable, block ownership (double allocation),
 * link counts and the structure of every directory. Committed journal records
 * are overlaid in memory, exactly as a mount would replay them.
 */
export async function fsck(device: BlockDevice): Promise<FsckResult> {
  const problems: string[] = [];
  const counts = new Map<string, number>();
  const report = (kind: string, msg: string) => {
    const n = (counts.get(kind) ?? 0) + 1;
    counts.set(kind, n);
    if (n <= MAX_PER_KIND) problems.push(msg);
  };
  const stats: FsckStats = { totalBlocks: 0, usedBlocks: 0, freeBlocks: 0, inodes: 0, files: 0, dirs: 0, symlinks: 0, dirEntries: 0, journalRecords: 0, orphans: 0 };

  const b0 = new Uint8Array(BLOCK_SIZE);
  await device.pread(b0, 0);
  let sb: Superblock;
  try {
    sb = decodeSuperblock(b0, device.size);
  } catch (e) {
    return { ok: false, problems: [(e as Error).message], stats };
  }
  stats.totalBlocks = sb.totalBlocks;

  let overlay = new Map<number, Uint8Array>();
  try {
    const j = await scanJournal(device, sb);
    overlay = j.blocks;
    stats.journalRecords = j.records;
  } catch (e) {
    report('journal', (e as Error).message);
  }
  const blocks = new Map<number, Uint8Array>();
  const read = async (b: number): Promise<Uint8Array> => {
    const o = overlay.get(b);
    if (o) return o;
    let buf = blocks.get(b);
    if (!buf) {
      buf = new Uint8Array(BLOCK_SIZE);
      await device.pread(buf, b * BLOCK_SIZE);
      blocks.set(b, buf);
    }
    return buf;
  };
  const bit = async (start: number, i: number) => {
    const buf = await read(start + Math.floor(i / BITS_PER_BLOCK));
    const k = i % BITS_PER_BLOCK;
    return (buf[k >> 3] & (1 << (k & 7))) !== 0;
  };
  const inDataArea = (b: number) => b >= sb.dataStart && b < sb.totalBlocks;

  // Inodes: bitmap against records.
  const inodes = new Map<number, Inode>();
  for (let ino = 1; ino < sb.inodeCount; ino++) {
    const tb = await read(sb.inodeTableStart + Math.floor(ino / INODES_PER_BLOCK));
    let inode: Inode;
    try {
      inode = decodeInode(tb, (ino % INODES_PER_BLOCK) * INODE_SIZE);
    } catch (e) {
      report('inode', `inode ${ino}: ${(e as Error).message}`);
      continue;
    }
    const used = await bit(sb.inodeBitmapStart, ino);
    if (used && inode.type === InodeType.free) report('ibitmap', `inode ${ino} is marked in use but its record is free`);
    if (!used && inode.type !== InodeType.free) report('ibitmap', `inode ${ino} is in use but marked free in the inode bitmap`);
    if (inode.type !== InodeType.free) inodes.set(ino, inode);
  }
  stats.inodes = inodes.size;

  // The orphan list (filesystem.ts): inode record 0 holds its head, each orphan the next.
  // Its files are a truncate or remove a crash interrupted; mount finishes them.
  const orphans = new Set<number>();
  {
    const tb = await read(sb.inodeTableStart);
    let next = 0;
    try {
      next = decodeInode(tb, 0).parent;
    } catch (e) {
      report('orphan', `orphan list head (inode record 0): ${(e as Error).message}`);
    }
    while (next !== 0) {
      const o = inodes.get(next);
      if (!o || o.type === InodeType.dir || orphans.has(next)) {
        report('orphan', `orphan list reaches inode ${next}, which is ${!o ? 'free' : orphans.has(next) ? 'already on it (a loop)' : 'a directory'}`);
        break;
      }
      orphans.add(next);
      next = o.parent;
    }
  }
  stats.orphans = orphans.size;

  // Blocks: who owns what.
  const owner = new Map<number, number>();
  const claim = (b: number, ino: number) => {
    if (!inDataArea(b)) {
      report('range', `inode ${ino} points at block ${b}, outside the data area`);
      return;
    }
    const prev = owner.get(b);
    if (prev !== undefined) report('double', `block ${b} is used by inode ${prev} and by inode ${ino}`);
    else owner.set(b, ino);
  };

  // Directory structure and link counts, from the root.
  const refs = new Map<number, number>();
  const subdirs = new Map<number, number>();
  const root = inodes.get(sb.rootIno);
  if (!root || root.type !== InodeType.dir) report('root', 'root inode is missing or not a directory');
  const reached = new Set<number>();
  const queue: number[] = root ? [sb.rootIno] : [];
  reached.add(sb.rootIno);
  while (queue.length > 0) {
    const dirIno = queue.shift()!;
    const d = inodes.get(dirIno)!;
    const r = await dirCheck(read, d.dirRoot, dirIno, inDataArea);
    for (const p of r.problems) report('dir', p);
    for (const b of r.blocks) claim(b, dirIno);
    if (r.blocks.length !== d.blocks) report('count', `directory ${dirIno} owns ${r.blocks.length} blocks but records ${d.blocks}`);
    if (r.entries.length !== d.entries) report('count', `directory ${dirIno} has ${r.entries.length} entries but records ${d.entries}`);
    const names = new Set<string>();
    for (const e of r.entries) {
      stats.dirEntries++;
      if (names.has(e.name)) report('dir', `directory ${dirIno} lists '${e.name}' twice`);
      names.add(e.name);
      const child = inodes.get(e.ino);
      if (!child) {
        report('dangling', `directory ${dirIno} entry '${e.name}' points at free inode ${e.ino}`);
        continue;
      }
      if (child.type !== e.type) report('dir', `directory ${dirIno} entry '${e.name}' has type ${e.type}, inode ${e.ino} is ${child.type}`);
      refs.set(e.ino, (refs.get(e.ino) ?? 0) + 1);
      if (child.type === InodeType.dir) {
        subdirs.set(dirIno, (subdirs.get(dirIno) ?? 0) + 1);
        if (child.parent !== dirIno) report('dir', `directory ${e.ino} ('${e.name}') says its parent is ${child.parent}, but it is in ${dirIno}`);
        if (reached.has(e.ino)) report('dir', `directory ${e.ino} is reachable twice (a loop or a hard-linked directory)`);
        else {
          reached.add(e.ino);
          queue.push(e.ino);
        }
      } else reached.add(e.ino);
    }
  }

  for (const [ino, inode] of inodes) {
    if (!reached.has(ino) && !(orphans.has(ino) && inode.nlink === 0)) report('orphan', `inode ${ino} is in use but no directory reaches it`);
    if (inode.type === InodeType.dir) {
      stats.dirs++;
      const want = 2 + (subdirs.get(ino) ?? 0);
      if (reached.has(ino) && inode.nlink !== want) report('nlink', `directory ${ino} has link count ${inode.nlink}, expected ${want}`);
      continue;
    }
    if (inode.type === InodeType.file) stats.files++;
    else stats.symlinks++;
    const want = refs.get(ino) ?? 0;
    if (reached.has(ino) && inode.nlink !== want) report('nlink', `inode ${ino} has link count ${inode.nlink}, but ${want} names`);
    let owned = 0;
    await walkBlocks(read, inode, (b) => {
      owned++;
      claim(b, ino);
    }, inDataArea);
    if (owned !== inode.blocks) report('count', `inode ${ino} owns ${owned} blocks but records ${inode.blocks}`);
    if (inode.type === InodeType.symlink && (inode.size < 1 || inode.size > BLOCK_SIZE || !inode.direct[0])) {
      report('symlink', `symlink ${ino} has no valid target block`);
    }
  }

  // Block bitmap against ownership.
  for (let b = 0; b < sb.totalBlocks; b++) {
    const used = await bit(sb.blockBitmapStart, b);
    if (used) stats.usedBlocks++;
    const wanted = b < sb.dataStart || owner.has(b);
    if (used && !wanted) report('leak', `block ${b} is marked in use but nothing owns it`);
    if (!used && wanted) report('bitmap', `block ${b} is in use${owner.has(b) ? ` by inode ${owner.get(b)}` : ' by metadata'} but marked free`);
  }
  stats.freeBlocks = sb.totalBlocks - stats.usedBlocks;
  for (const [kind, n] of counts) if (n > MAX_PER_KIND) problems.push(`... and ${n - MAX_PER_KIND} more problems of kind '${kind}'`);
  return { ok: problems.length === 0, problems, stats };
}
