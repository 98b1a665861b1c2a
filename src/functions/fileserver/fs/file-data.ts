import { FUA_WRITE, type BlockDevice } from '../../../block/types.ts';
import type { BlockAllocator } from './alloc.ts';
import { ensureBlock, lookupBlock, worstCaseBlocks, type BlockReader } from './blockmap.ts';
import type { Inode } from './inode.ts';
import type { Handle } from './journal.ts';
import { BLOCK_SIZE } from './superblock.ts';
import { fsError, type StorvisorError } from '../../../util/errors.ts';
import { fsCodeOf } from './types.ts';

/** A file-data write failed: NOSPC if the device ran out of space, IO otherwise. */
export function writebackError(ino: number, cause: unknown): StorvisorError {
  if (fsCodeOf(cause) !== undefined) return cause as StorvisorError;
  const errno = (cause as { errno?: unknown } | null)?.errno;
  const msg = cause instanceof Error ? cause.message : String(cause);
  return fsError(errno === 'ENOSPC' ? 'NOSPC' : 'IO', `writing back data of inode ${ino} failed: ${msg}`);
}

/** Blocks one device write of file data carries at most (1 MiB). */
const MAX_RUN_BLOCKS = 256;
const MAX_RUN_BYTES = MAX_RUN_BLOCKS * BLOCK_SIZE;
/** Blocks one extent allocation hands out at most. */
const MAX_EXTENT = 8192;

/** Pages fbs[i..j) as one buffer: a view of their slab when they sit together in it, else a copy. */
function runView(pages: Map<number, Uint8Array>, fbs: number[], i: number, j: number): Uint8Array {
  const head = pages.get(fbs[i])!;
  if (j - i === 1) return head;
  let together = true;
  for (let k = i + 1; k < j && together; k++) {
    const p = pages.get(fbs[k])!;
    together = p.buffer === head.buffer && p.byteOffset === head.byteOffset + (k - i) * BLOCK_SIZE;
  }
  if (together) return new Uint8Array(head.buffer, head.byteOffset, (j - i) * BLOCK_SIZE);
  const out = new Uint8Array((j - i) * BLOCK_SIZE);
  for (let k = i; k < j; k++) out.set(pages.get(fbs[k])!, (k - i) * BLOCK_SIZE);
  return out;
}

/** Data of unstable writes to one file, held until commit (delayed allocation). */
export interface DirtyFile {
  pages: Map<number, Uint8Array>;
  size: number;
  mtimeMs: number;
  /** Dirty pages with no block yet. */
  unmapped: number;
  /** Blocks reserved for them (worst case, indirect blocks included). */
  reserved: number;
}

/**
 * The file data path: reads through the block map (holes read as zeroes),
 * writes buffered as dirty pages, and writeback that maps and writes them.
 * File data never goes through the journal: it is written in place before the
 * transaction that maps it (or makes it visible by a larger size) commits.
 * The caller holds the inode's lock (shared for read, exclusive otherwise).
 */
export class FileData {
  private readonly files = new Map<number, DirtyFile>();
  /** Failed writebacks not yet reported by a commit: at most one per inode. */
  private readonly errors = new Map<number, StorvisorError>();
  dirtyBytes = 0;
  /** Device writes of file data (a run of blocks counts once). */
  readonly counters = { dataWrites: 0 };

  constructor(
    private readonly device: BlockDevice,
    private readonly readMeta: BlockReader,
    private readonly alloc: BlockAllocator,
    /** Reserve blocks or throw NOSPC (may checkpoint first). */
    private readonly reserve: (n: number) => Promise<void>,
    private readonly now: () => number,
    readonly maxDirtyBytes: number,
  ) {}

  pending(ino: number): DirtyFile | undefined {
    return this.files.get(ino);
  }

  dirtyInodes(): number[] {
    return [...this.files.keys()];
  }

  get overLimit(): boolean {
    return this.dirtyBytes > this.maxDirtyBytes;
  }

  /**
   * Bytes [offset, offset+length) of a regular file, clipped at its end. Runs of
   * consecutive blocks are one device read each (straight into the result), holes
   * read as zeroes, dirty pages come from memory.
   */
  async read(ino: number, inode: Inode, offset: number, length: number): Promise<{ data: Uint8Array; eof: boolean }> {
    const dirty = this.files.get(ino);
    const size = dirty ? dirty.size : inode.size;
    if (offset >= size) return { data: new Uint8Array(0), eof: true };
    const end = Math.min(size, offset + length);
    const out = new Uint8Array(end - offset);
    const fb0 = Math.floor(offset / BLOCK_SIZE);
    if (!dirty && Math.floor((end - 1) / BLOCK_SIZE) === fb0) {
      // One block (every 4 KiB READ): one lookup, one device read, no run bookkeeping.
      const l = lookupBlock(this.readMeta, inode, fb0);
      const phys = typeof l === 'number' ? l : await l;
      if (phys) await this.device.pread(out, phys * BLOCK_SIZE + (offset - fb0 * BLOCK_SIZE));
      return { data: out, eof: end >= size };
    }
    let io: Promise<void>[] | null = null;
    let one: Promise<void> | null = null;
    // The pending run: bytes [runFrom, runTo) of the file at device byte runDev.
    let runFrom = -1;
    let runTo = 0;
    let runDev = 0;
    const flush = (): void => {
      if (runFrom < 0) return;
      const p = this.device.pread(out.subarray(runFrom - offset, runTo - offset), runDev);
      if (one === null && io === null) one = p;
      else (io ??= [one!]).push(p);
      runFrom = -1;
    };
    for (let fb = Math.floor(offset / BLOCK_SIZE); fb * BLOCK_SIZE < end; fb++) {
      const bStart = fb * BLOCK_SIZE;
      const from = Math.max(offset, bStart);
      const to = Math.min(end, bStart + BLOCK_SIZE);
      const page = dirty?.pages.get(fb);
      if (page) {
        flush();
        out.set(page.subarray(from - bStart, to - bStart), from - offset);
        continue;
      }
      const l = lookupBlock(this.readMeta, inode, fb);
      const phys = typeof l === 'number' ? l : await l;
      if (!phys) {
        flush(); // a hole reads as zeroes
        continue;
      }
      const dev = phys * BLOCK_SIZE + (from - bStart);
      if (runFrom >= 0 && dev === runDev + (runTo - runFrom) && runTo - runFrom < MAX_RUN_BYTES) {
        runTo = to;
      } else {
        flush();
        runFrom = from;
        runTo = to;
        runDev = dev;
      }
    }
    flush();
    if (io) await Promise.all(io);
    else if (one) await one;
    return { data: out, eof: end >= size };
  }

  /** Put written bytes into the file's dirty pages, reserving blocks for pages not yet mapped. */
  async buffer(ino: number, inode: Inode, offset: number, data: Uint8Array): Promise<void> {
    const d0 = this.files.get(ino);
    const size = d0 ? d0.size : inode.size;
    const end = offset + data.byteLength;
    const first = Math.floor(offset / BLOCK_SIZE);
    const last = Math.floor((end - 1) / BLOCK_SIZE);
    // Pass 1: find which pages are new and whether they are mapped (no state changes yet).
    const fresh: Array<{ fb: number; phys: number }> = [];
    let unmappedFresh = 0;
    for (let fb = first; fb <= last; fb++) {
      if (d0?.pages.has(fb)) continue;
      const l = lookupBlock(this.readMeta, inode, fb);
      const phys = typeof l === 'number' ? l : await l;
      if (phys === 0) unmappedFresh++;
      fresh.push({ fb, phys });
    }
    // Extending past a partial last block that this write does not touch: that block's
    // bytes past the old end must become zeroes, so it joins the dirty pages.
    const oldLast = Math.floor(size / BLOCK_SIZE);
    if (end > size && size % BLOCK_SIZE !== 0 && oldLast < first && !d0?.pages.has(oldLast)) {
      const phys = await lookupBlock(this.readMeta, inode, oldLast);
      if (phys) fresh.push({ fb: oldLast, phys });
    }
    const unmapped = (d0?.unmapped ?? 0) + unmappedFresh;
    const need = worstCaseBlocks(unmapped) - (d0?.reserved ?? 0);
    if (need > 0) await this.reserve(need);
    // Pass 2: read the partial pages that have old data, then apply. Pages of one
    // write share one allocation (a slab), in file order: consecutive pages that
    // land in consecutive blocks then go to the device as one view, without a copy.
    const pages = new Map<number, Uint8Array>();
    const slab = fresh.length > 1 ? new Uint8Array(fresh.length * BLOCK_SIZE) : null;
    let reads: Promise<void>[] | null = null;
    for (let i = 0; i < fresh.length; i++) {
      const { fb, phys } = fresh[i];
      const page = slab ? slab.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE) : new Uint8Array(BLOCK_SIZE);
      const covered = fb * BLOCK_SIZE >= offset && (fb + 1) * BLOCK_SIZE <= end;
      if (phys && !covered && fb * BLOCK_SIZE < size) {
        // Only the partial head and tail pages (and an old partial last block) have old bytes to keep.
        const tail = size < (fb + 1) * BLOCK_SIZE ? size - fb * BLOCK_SIZE : -1;
        (reads ??= []).push(
          this.device.pread(page, phys * BLOCK_SIZE).then(() => {
            if (tail >= 0) page.fill(0, tail); // stale bytes past EOF
          }),
        );
      }
      pages.set(fb, page);
    }
    if (reads) await Promise.all(reads);
    let d = this.files.get(ino);
    if (!d) {
      d = { pages: new Map(), size: inode.size, mtimeMs: inode.mtimeMs, unmapped: 0, reserved: 0 };
      this.files.set(ino, d);
    }
    for (const [fb, page] of pages) d.pages.set(fb, page);
    this.dirtyBytes += pages.size * BLOCK_SIZE;
    d.unmapped = unmapped;
    if (need > 0) d.reserved += need;
    if (slab && fresh.length >= last - first + 1 && fresh[0].fb === first && fresh[last - first].fb === last) {
      // Every page of the write is new and sits in order in the slab: one copy.
      slab.set(data, offset - first * BLOCK_SIZE);
    } else {
      for (let fb = first; fb <= last; fb++) {
        const page = d.pages.get(fb)!;
        const bStart = fb * BLOCK_SIZE;
        const from = Math.max(offset, bStart);
        const to = Math.min(end, bStart + BLOCK_SIZE);
        page.set(data.subarray(from - offset, to - offset), from - bStart);
      }
    }
    d.size = Math.max(d.size, end);
    d.mtimeMs = this.now();
  }

  /**
   * Inside a journal handle: map the file's dirty pages (allocating out of their
   * reservation), write them, and set size and mtime on `inode` (the caller
   * persists it). Then `drop` the pages once the handle has ended.
   */
  async writePages(h: Handle, ino: number, inode: Inode): Promise<void> {
    const d = this.files.get(ino);
    if (!d) return;
    const fbs = [...d.pages.keys()].sort((a, b) => a - b);
    const phys = new Array<number>(fbs.length);
    // New data blocks come from extents: one bitmap scan hands out up to all the
    // blocks the file still needs, in one run where the volume has room.
    let want = d.unmapped;
    let run: { start: number; count: number; giveBack: (n: number) => void } | null = null;
    let used = 0;
    const takeData = async (): Promise<number> => {
      if (!run || used === run.count) {
        run = await this.alloc.allocateRun(h, Math.max(1, Math.min(want, MAX_EXTENT)));
        used = 0;
      }
      want--;
      return run.start + used++;
    };
    let mapError: unknown = null;
    let mapped = 0;
    try {
      for (; mapped < fbs.length; mapped++) phys[mapped] = (await ensureBlock(h, this.alloc, inode, fbs[mapped], takeData)).block;
    } catch (e) {
      mapError = e;
    }
    const r = run as { count: number; giveBack: (n: number) => void } | null;
    if (!mapError && r && used < r.count) r.giveBack(r.count - used); // d.unmapped overcounted: return the rest
    // Consecutive pages in consecutive blocks go out as one device write (at most
    // MAX_RUN_BYTES): one view when they share a slab, else one copy into a run buffer.
    const writes: Promise<void>[] = [];
    for (let i = 0; i < mapped; ) {
      let j = i + 1;
      while (j < mapped && j - i < MAX_RUN_BLOCKS && fbs[j] === fbs[j - 1] + 1 && phys[j] === phys[j - 1] + 1) j++;
      writes.push(this.device.pwrite(runView(d.pages, fbs, i, j), phys[i] * BLOCK_SIZE));
      this.counters.dataWrites++;
      i = j;
    }
    // Data reaches the device before the transaction mapping it can commit. Wait
    // for every write, failed or not: the caller may undo the allocations, and no
    // write may still be in flight to a block that is free again.
    const results = await Promise.allSettled(writes);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw writebackError(ino, failed.reason);
    if (mapError) throw mapError;
    inode.size = d.size;
    inode.mtimeMs = d.mtimeMs;
  }

  /**
   * A stable write over blocks the file already has, inside its size: written in
   * place, straight from the caller's buffer (one device write per run of
   * consecutive blocks), durable when this resolves (FUA on a write-back device).
   * No metadata changes, so no journal commit is needed for the data. Returns
   * false, having done nothing, when some block is a hole or the write reaches
   * past the end of file (the caller takes the allocating path). The caller holds
   * the inode shared, the written blocks exclusively, and no page of the file is dirty.
   */
  async overwrite(inode: Inode, offset: number, data: Uint8Array): Promise<boolean> {
    const end = offset + data.byteLength;
    if (end > inode.size || data.byteLength === 0) return false;
    const first = Math.floor(offset / BLOCK_SIZE);
    const last = Math.floor((end - 1) / BLOCK_SIZE);
    let runs: Array<[number, number, number]> | null = null; // [byte offset in data, device offset, length]
    let runFrom = offset;
    let runPhys = 0;
    let prevPhys = 0;
    for (let fb = first; fb <= last; fb++) {
      const l = lookupBlock(this.readMeta, inode, fb);
      const p = typeof l === 'number' ? l : await l;
      if (!p) return false;
      if (fb === first) {
        runPhys = p * BLOCK_SIZE + (offset - fb * BLOCK_SIZE);
      } else if (p !== prevPhys + 1 || fb * BLOCK_SIZE - runFrom >= MAX_RUN_BYTES) {
        (runs ??= []).push([runFrom - offset, runPhys, fb * BLOCK_SIZE - runFrom]);
        runFrom = fb * BLOCK_SIZE;
        runPhys = p * BLOCK_SIZE;
      }
      prevPhys = p;
    }
    const flags = this.device.writeThrough ? undefined : FUA_WRITE;
    if (!runs) {
      await this.device.pwrite(data, runPhys, flags);
      this.counters.dataWrites++;
      return true;
    }
    runs.push([runFrom - offset, runPhys, end - runFrom]);
    const results = await Promise.allSettled(runs.map(([at, dev, len]) => this.device.pwrite(data.subarray(at, at + len), dev, flags)));
    this.counters.dataWrites += runs.length;
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return true;
  }

  /** Physical block of each of blocks first..last of the file (0: a hole, or past the end). */
  async blocksOf(inode: Inode, first: number, last: number): Promise<number[]> {
    const out = new Array<number>(last - first + 1);
    for (let fb = first; fb <= last; fb++) {
      const l = lookupBlock(this.readMeta, inode, fb);
      out[fb - first] = typeof l === 'number' ? l : await l;
    }
    return out;
  }

  /**
   * Write-before-map: write `data` at file `offset` into `phys` (the block of
   * each file block from the write's first on). Blocks with `fresh[i]` were just
   * claimed and are not mapped yet: the bytes of them the write does not cover
   * become zeroes (they were a hole or past the end). The others are the file's
   * own blocks, written in place. One device write per run of consecutive blocks
   * (up to 1 MiB), straight from `data`, except a partial new block at either
   * end (one zero-padded page each). Not durable on return: the caller's
   * transaction that maps the blocks flushes before its commit block.
   */
  async writeBlocks(ino: number, offset: number, data: Uint8Array, phys: number[], fresh: boolean[]): Promise<void> {
    const end = offset + data.byteLength;
    const first = Math.floor(offset / BLOCK_SIZE);
    let writes: Promise<void>[] | null = null;
    let one: Promise<void> | null = null;
    // The pending run: data bytes [runAt, runAt + runLen) at device byte runDev.
    let runAt = -1;
    let runLen = 0;
    let runDev = 0;
    const issue = (buf: Uint8Array, dev: number): void => {
      const p = this.device.pwrite(buf, dev);
      this.counters.dataWrites++;
      if (one === null && writes === null) one = p;
      else (writes ??= [one!]).push(p);
    };
    const flush = (): void => {
      if (runAt < 0) return;
      issue(runAt === 0 && runLen === data.byteLength ? data : data.subarray(runAt, runAt + runLen), runDev);
      runAt = -1;
    };
    for (let i = 0; i < phys.length; i++) {
      const bStart = (first + i) * BLOCK_SIZE;
      const from = Math.max(offset, bStart);
      const to = Math.min(end, bStart + BLOCK_SIZE);
      if (fresh[i] && (from > bStart || to < bStart + BLOCK_SIZE)) {
        flush();
        const page = new Uint8Array(BLOCK_SIZE);
        page.set(data.subarray(from - offset, to - offset), from - bStart);
        issue(page, phys[i] * BLOCK_SIZE);
        continue;
      }
      const dev = phys[i] * BLOCK_SIZE + (from - bStart);
      if (runAt >= 0 && dev === runDev + runLen && runLen < MAX_RUN_BYTES) runLen += to - from;
      else {
        flush();
        runAt = from - offset;
        runLen = to - from;
        runDev = dev;
      }
    }
    flush();
    if (one && !writes) {
      try {
        await one;
      } catch (err) {
        throw writebackError(ino, err);
      }
      return;
    }
    // Wait for every write, failed or not: the caller frees the claimed blocks on failure.
    const results = await Promise.allSettled(writes!);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw writebackError(ino, failed.reason);
  }

  /**
   * A writeback of `ino` failed and was rolled back: its dirty pages are gone
   * (the file keeps its last committed content, as Linux marks such pages clean),
   * and the error is kept for the next COMMIT of the file, which must not
   * report success for unstable writes that were acknowledged and then lost.
   */
  failed(ino: number, err: StorvisorError): void {
    this.drop(ino);
    this.errors.set(ino, err);
  }

  /** The error of a failed writeback not yet reported by a commit (and forget it). */
  takeError(ino: number): StorvisorError | undefined {
    const e = this.errors.get(ino);
    if (e) this.errors.delete(ino);
    return e;
  }

  /** The file is gone: nothing is left to report. */
  forget(ino: number): void {
    this.drop(ino);
    this.errors.delete(ino);
  }

  /** Forget a file's pages and return what is left of their reservation. */
  drop(ino: number): void {
    const d = this.files.get(ino);
    if (!d) return;
    this.alloc.unreserve(d.reserved);
    this.dirtyBytes -= d.pages.size * BLOCK_SIZE;
    this.files.delete(ino);
  }

  /**
   * Bytes past the end of file in its last block may hold old data (truncate
   * leaves them: zeroing them there would destroy acknowledged data if the
   * truncate then did not commit). Before the end moves past them, zero them in
   * place: they are beyond EOF, so this is safe whatever happens next.
   */
  async zeroTailPastEof(inode: Inode): Promise<void> {
    if (inode.size % BLOCK_SIZE === 0) return;
    const last = await lookupBlock(this.readMeta, inode, Math.floor(inode.size / BLOCK_SIZE));
    if (!last) return;
    const buf = new Uint8Array(BLOCK_SIZE);
    await this.device.pread(buf, last * BLOCK_SIZE);
    buf.fill(0, inode.size % BLOCK_SIZE);
    await this.device.pwrite(buf, last * BLOCK_SIZE);
  }
}
