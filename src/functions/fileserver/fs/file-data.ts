import type { BlockDevice } from '../../../block/types.ts';
import type { BlockAllocator } from './alloc.ts';
import { ensureBlock, lookupBlock, worstCaseBlocks, type BlockReader } from './blockmap.ts';
import type { Inode } from './inode.ts';
import type { Handle } from './journal.ts';
import { BLOCK_SIZE } from './superblock.ts';
import { FsError } from './types.ts';

/** A file-data write failed: NOSPC if the device ran out of space, IO otherwise. */
export function writebackError(ino: number, cause: unknown): FsError {
  if (cause instanceof FsError) return cause;
  const errno = (cause as { errno?: unknown } | null)?.errno;
  const msg = cause instanceof Error ? cause.message : String(cause);
  return new FsError(errno === 'ENOSPC' ? 'NOSPC' : 'IO', `writing back data of inode ${ino} failed: ${msg}`);
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
  private readonly errors = new Map<number, FsError>();
  dirtyBytes = 0;

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

  /** Bytes [offset, offset+length) of a regular file, clipped at its end. */
  async read(ino: number, inode: Inode, offset: number, length: number): Promise<{ data: Uint8Array; eof: boolean }> {
    const dirty = this.files.get(ino);
    const size = dirty ? dirty.size : inode.size;
    if (offset >= size) return { data: new Uint8Array(0), eof: true };
    const end = Math.min(size, offset + length);
    const out = new Uint8Array(end - offset);
    const io: Promise<void>[] = [];
    for (let fb = Math.floor(offset / BLOCK_SIZE); fb * BLOCK_SIZE < end; fb++) {
      const bStart = fb * BLOCK_SIZE;
      const from = Math.max(offset, bStart);
      const to = Math.min(end, bStart + BLOCK_SIZE);
      const page = dirty?.pages.get(fb);
      if (page) {
        out.set(page.subarray(from - bStart, to - bStart), from - offset);
        continue;
      }
      const phys = await lookupBlock(this.readMeta, inode, fb);
      if (!phys) continue; // a hole reads as zeroes
      io.push(this.device.pread(out.subarray(from - offset, to - offset), phys * BLOCK_SIZE + (from - bStart)));
    }
    await Promise.all(io);
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
    for (let fb = first; fb <= last; fb++) {
      if (d0?.pages.has(fb)) continue;
      fresh.push({ fb, phys: await lookupBlock(this.readMeta, inode, fb) });
    }
    // Extending past a partial last block that this write does not touch: that block's
    // bytes past the old end must become zeroes, so it joins the dirty pages.
    const oldLast = Math.floor(size / BLOCK_SIZE);
    if (end > size && size % BLOCK_SIZE !== 0 && oldLast < first && !d0?.pages.has(oldLast)) {
      const phys = await lookupBlock(this.readMeta, inode, oldLast);
      if (phys) fresh.push({ fb: oldLast, phys });
    }
    const unmapped = (d0?.unmapped ?? 0) + fresh.filter((p) => p.phys === 0).length;
    const need = worstCaseBlocks(unmapped) - (d0?.reserved ?? 0);
    if (need > 0) await this.reserve(need);
    // Pass 2: read the partial pages that have old data, then apply.
    const pages = new Map<number, Uint8Array>();
    await Promise.all(
      fresh.map(async ({ fb, phys }) => {
        const page = new Uint8Array(BLOCK_SIZE);
        const covered = fb * BLOCK_SIZE >= offset && (fb + 1) * BLOCK_SIZE <= end;
        if (phys && !covered && fb * BLOCK_SIZE < size) {
          await this.device.pread(page, phys * BLOCK_SIZE);
          if (size < (fb + 1) * BLOCK_SIZE) page.fill(0, size - fb * BLOCK_SIZE); // stale bytes past EOF
        }
        pages.set(fb, page);
      }),
    );
    let d = this.files.get(ino);
    if (!d) {
      d = { pages: new Map(), size: inode.size, mtimeMs: inode.mtimeMs, unmapped: 0, reserved: 0 };
      this.files.set(ino, d);
    }
    for (const [fb, page] of pages) d.pages.set(fb, page);
    this.dirtyBytes += pages.size * BLOCK_SIZE;
    d.unmapped = unmapped;
    if (need > 0) d.reserved += need;
    for (let fb = first; fb <= last; fb++) {
      const page = d.pages.get(fb)!;
      const bStart = fb * BLOCK_SIZE;
      const from = Math.max(offset, bStart);
      const to = Math.min(end, bStart + BLOCK_SIZE);
      page.set(data.subarray(from - offset, to - offset), from - bStart);
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
    const writes: Promise<void>[] = [];
    let mapError: unknown = null;
    try {
      for (const fb of [...d.pages.keys()].sort((a, b) => a - b)) {
        const { block } = await ensureBlock(h, this.alloc, inode, fb);
        writes.push(this.device.pwrite(d.pages.get(fb)!, block * BLOCK_SIZE));
      }
    } catch (e) {
      mapError = e;
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
   * A writeback of `ino` failed and was rolled back: its dirty pages are gone
   * (the file keeps its last committed content, as Linux marks such pages clean),
   * and the error is kept for the next COMMIT of the file, which must not
   * report success for unstable writes that were acknowledged and then lost.
   */
  failed(ino: number, err: FsError): void {
    this.drop(ino);
    this.errors.set(ino, err);
  }

  /** The error of a failed writeback not yet reported by a commit (and forget it). */
  takeError(ino: number): FsError | undefined {
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
