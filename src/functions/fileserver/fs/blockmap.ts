import type { BlockAllocator } from './alloc.ts';
import { viewOf } from './checksum.ts';
import { DIRECT_BLOCKS, type Inode } from './inode.ts';
import type { Handle } from './journal.ts';
import { BLOCK_SIZE } from './superblock.ts';
import { internalError } from '../../../util/errors.ts';

/**
 * Logical-to-physical block map of a file: 12 direct pointers, then single,
 * double and triple indirect blocks of 1024 u32 pointers each (ext2's scheme:
 * cheap random access, holes are zero pointers, so sparse files cost nothing).
 */
export const PTRS_PER_BLOCK = BLOCK_SIZE / 4;
const SPANS = [PTRS_PER_BLOCK, PTRS_PER_BLOCK ** 2, PTRS_PER_BLOCK ** 3];
export const MAX_FILE_BLOCKS = DIRECT_BLOCKS + SPANS[0] + SPANS[1] + SPANS[2];

/** Reads a metadata block (through the cache, or fsck's overlay). */
export type BlockReader = (block: number) => Uint8Array | Promise<Uint8Array>;

/** Which tree (depth 1..3) holds logical block `fb`, and its index inside that tree. */
function locate(fb: number): { depth: number; rel: number } {
  let rel = fb - DIRECT_BLOCKS;
  for (let d = 1; d <= 3; d++) {
    if (rel < SPANS[d - 1]) return { depth: d, rel };
    rel -= SPANS[d - 1];
  }
  throw internalError(`logical block ${fb} beyond the largest file`);
}

/**
 * Physical block of logical block `fb`, or 0 for a hole. Synchronous (a plain
 * number) while the pointer blocks are cached, which is the common case on the
 * read and write paths; a promise only when one must be read.
 */
export function lookupBlock(read: BlockReader, ino: Inode, fb: number): number | Promise<number> {
  if (fb < DIRECT_BLOCKS) return ino.direct[fb];
  const { depth, rel } = locate(fb);
  return walkFrom(read, ino.indirect[depth - 1], depth, rel);
}

function walkFrom(read: BlockReader, ptr: number, depth: number, rel: number): number | Promise<number> {
  for (let d = depth; d >= 1 && ptr !== 0; d--) {
    const span = PTRS_PER_BLOCK ** (d - 1);
    const b = read(ptr);
    if (b instanceof Promise) return b.then((buf) => walkFrom(read, viewOf(buf).getUint32(Math.floor(rel / span) * 4, true), d - 1, rel % span));
    ptr = viewOf(b).getUint32(Math.floor(rel / span) * 4, true);
    rel %= span;
  }
  return ptr;
}

/** Upper bound of blocks (data + indirect) needed to map `n` more data blocks. */
export function worstCaseBlocks(n: number): number {
  if (n === 0) return 0;
  return n + Math.ceil(n / SPANS[0]) + Math.ceil(n / SPANS[1]) + 6;
}

/** The inode's indirect block of this depth, allocated (and undone on abort) if missing. */
async function indirectRoot(h: Handle, alloc: BlockAllocator, ino: Inode, depth: number): Promise<number> {
  if (!ino.indirect[depth - 1]) {
    const b = await alloc.allocate(h);
    h.create(b);
    ino.indirect[depth - 1] = b;
    ino.blocks++;
    h.onAbort(() => {
      ino.indirect[depth - 1] = 0;
      ino.blocks--;
    });
  }
  return ino.indirect[depth - 1];
}

/**
 * Map logical block `fb`, allocating it and any missing indirect blocks out of
 * the caller's reservation. Updates `ino` (caller writes it back). Returns the
 * physical block and whether it is newly allocated (its old content is garbage).
 * Every pointer and count it sets is registered with the handle, so an aborted
 * handle leaves the map as it found it (allocations undo themselves in alloc.ts).
 */
export async function ensureBlock(
  h: Handle,
  alloc: BlockAllocator,
  ino: Inode,
  fb: number,
  /** Where a new data block comes from (an extent the caller allocated); default: one block. */
  takeData?: () => Promise<number>,
): Promise<{ block: number; fresh: boolean }> {
  if (fb < DIRECT_BLOCKS) {
    if (ino.direct[fb]) return { block: ino.direct[fb], fresh: false };
    ino.direct[fb] = takeData ? await takeData() : await alloc.allocate(h);
    ino.blocks++;
    h.onAbort(() => {
      ino.direct[fb] = 0;
      ino.blocks--;
    });
    return { block: ino.direct[fb], fresh: true };
  }
  const { depth, rel: r0 } = locate(fb);
  let rel = r0;
  let ptr = await indirectRoot(h, alloc, ino, depth);
  for (let d = depth; d >= 1; d--) {
    const span = PTRS_PER_BLOCK ** (d - 1);
    const slot = Math.floor(rel / span) * 4;
    rel %= span;
    const v = viewOf(await h.get(ptr));
    let child = v.getUint32(slot, true);
    if (!child) {
      child = d === 1 && takeData ? await takeData() : await alloc.allocate(h);
      if (d > 1) h.create(child);
      v.setUint32(slot, child, true);
      h.dirty(ptr);
      ino.blocks++;
      h.onAbort(() => {
        v.setUint32(slot, 0, true);
        ino.blocks--;
      });
      if (d === 1) return { block: child, fresh: true };
    }
    ptr = child;
  }
  return { block: ptr, fresh: false };
}

/**
 * Map logical blocks fb .. fb+count-1, all holes now, to physical blocks
 * phys .. phys+count-1 (an extent the caller owns): missing indirect blocks are
 * allocated out of the caller's reservation, and each pointer block is visited
 * once per run of slots it holds (one undo step each), not once per block as
 * `ensureBlock` would. Updates `ino` (caller writes it back).
 */
export async function mapRun(h: Handle, alloc: BlockAllocator, ino: Inode, fb: number, phys: number, count: number): Promise<void> {
  let i = 0;
  while (i < count && fb + i < DIRECT_BLOCKS) {
    const f = fb + i;
    if (ino.direct[f]) throw internalError(`mapRun: logical block ${f} is already mapped`);
    ino.direct[f] = phys + i;
    ino.blocks++;
    h.onAbort(() => {
      ino.direct[f] = 0;
      ino.blocks--;
    });
    i++;
  }
  while (i < count) {
    const { depth, rel: r0 } = locate(fb + i);
    let rel = r0;
    let ptr = await indirectRoot(h, alloc, ino, depth);
    for (let d = depth; d > 1; d--) {
      const span = PTRS_PER_BLOCK ** (d - 1);
      const slot = Math.floor(rel / span) * 4;
      rel %= span;
      const v = viewOf(await h.get(ptr));
      let child = v.getUint32(slot, true);
      if (!child) {
        child = await alloc.allocate(h);
        h.create(child);
        v.setUint32(slot, child, true);
        h.dirty(ptr);
        ino.blocks++;
        h.onAbort(() => {
          v.setUint32(slot, 0, true);
          ino.blocks--;
        });
      }
      ptr = child;
    }
    // ptr is the pointer block holding slot `rel` of logical block fb+i: fill it as far as the run goes.
    const v = viewOf(await h.get(ptr));
    const n = Math.min(count - i, PTRS_PER_BLOCK - rel);
    for (let k = 0; k < n; k++) {
      if (v.getUint32((rel + k) * 4, true)) throw internalError(`mapRun: logical block ${fb + i + k} is already mapped`);
    }
    for (let k = 0; k < n; k++) v.setUint32((rel + k) * 4, phys + i + k, true);
    h.dirty(ptr);
    ino.blocks += n;
    const at = rel;
    h.onAbort(() => {
      for (let k = 0; k < n; k++) v.setUint32((at + k) * 4, 0, true);
      ino.blocks -= n;
    });
    i += n;
  }
}

/** Free every block of the subtree at `ptr` (depth levels of pointers) from index `from` on. */
async function truncateTree(
  h: Handle,
  alloc: BlockAllocator,
  ino: Inode,
  ptr: number,
  depth: number,
  from: number,
): Promise<boolean> {
  const v = viewOf(await h.get(ptr));
  const span = PTRS_PER_BLOCK ** (depth - 1);
  const firstChild = Math.floor(from / span);
  let changed = false;
  for (let i = firstChild; i < PTRS_PER_BLOCK; i++) {
    const child = v.getUint32(i * 4, true);
    if (!child) continue;
    let childFreed = true;
    if (depth === 1) {
      await alloc.free(h, child);
      ino.blocks--;
    } else {
      childFreed = await truncateTree(h, alloc, ino, child, depth - 1, i === firstChild ? from % span : 0);
    }
    // A block freed entirely needs no pointer updates: nobody will read it again.
    if (childFreed && from !== 0) {
      v.setUint32(i * 4, 0, true);
      changed = true;
    }
  }
  if (from === 0) {
    await alloc.free(h, ptr);
    ino.blocks--;
    return true;
  }
  if (changed) h.dirty(ptr);
  return false;
}

/** Free every block at logical index >= `keep` (truncate). Updates `ino`. */
export async function truncateBlocks(h: Handle, alloc: BlockAllocator, ino: Inode, keep: number): Promise<void> {
  for (let i = keep; i < DIRECT_BLOCKS; i++) {
    if (ino.direct[i]) {
      await alloc.free(h, ino.direct[i]);
      ino.direct[i] = 0;
      ino.blocks--;
    }
  }
  let base = DIRECT_BLOCKS;
  for (let d = 1; d <= 3; d++) {
    const from = Math.max(0, keep - base);
    if (from < SPANS[d - 1] && ino.indirect[d - 1]) {
      if (await truncateTree(h, alloc, ino, ino.indirect[d - 1], d, from)) ino.indirect[d - 1] = 0;
    }
    base += SPANS[d - 1];
  }
}

/**
 * Visit every block a file owns: `onBlock(physical, logicalOrMinusOne)`, where
 * indirect blocks get -1. For fsck.
 */
export async function walkBlocks(
  read: BlockReader,
  ino: Inode,
  onBlock: (block: number, logical: number) => void,
  isValid: (block: number) => boolean,
): Promise<void> {
  ino.direct.forEach((b, i) => b && onBlock(b, i));
  let base = DIRECT_BLOCKS;
  const visit = async (ptr: number, depth: number, start: number): Promise<void> => {
    onBlock(ptr, -1);
    if (!isValid(ptr)) return;
    const v = viewOf(await read(ptr));
    const span = PTRS_PER_BLOCK ** (depth - 1);
    for (let i = 0; i < PTRS_PER_BLOCK; i++) {
      const c = v.getUint32(i * 4, true);
      if (!c) continue;
      if (depth === 1) onBlock(c, start + i);
      else await visit(c, depth - 1, start + i * span);
    }
  };
  for (let d = 1; d <= 3; d++) {
    if (ino.indirect[d - 1]) await visit(ino.indirect[d - 1], d, base);
    base += SPANS[d - 1];
  }
}

/**
 * One past the highest logical block the file maps (0 when it maps none): where
 * a truncate done in steps from the end resumes, also after a crash, when the
 * size no longer says how far the blocks reach.
 */
export async function mappedEnd(read: BlockReader, ino: Inode): Promise<number> {
  const starts = [DIRECT_BLOCKS, DIRECT_BLOCKS + SPANS[0], DIRECT_BLOCKS + SPANS[0] + SPANS[1]];
  for (let d = 3; d >= 1; d--) {
    const top = ino.indirect[d - 1];
    if (!top) continue;
    const last = await lastInTree(read, top, d, starts[d - 1]);
    if (last >= 0) return last + 1;
  }
  for (let i = DIRECT_BLOCKS - 1; i >= 0; i--) if (ino.direct[i]) return i + 1;
  return 0;
}

/** Highest logical block mapped under the tree at `ptr` (depth levels, first logical block `start`), or -1. */
async function lastInTree(read: BlockReader, ptr: number, depth: number, start: number): Promise<number> {
  const v = viewOf(await read(ptr));
  const span = PTRS_PER_BLOCK ** (depth - 1);
  for (let i = PTRS_PER_BLOCK - 1; i >= 0; i--) {
    const c = v.getUint32(i * 4, true);
    if (!c) continue;
    if (depth === 1) return start + i;
    const last = await lastInTree(read, c, depth - 1, start + i * span);
    if (last >= 0) return last;
  }
  return -1;
}
