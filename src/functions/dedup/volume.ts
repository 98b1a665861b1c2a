/**
 * DedupVolume: a BlockDevice that stores its data on a backing BlockDevice with inline
 * deduplication (4 KiB, fingerprint + byte compare) and inline compression (fragments
 * packed several to a block), dedup first, then compression of the unique blocks.
 *
 * Durability follows the BlockDevice contract with writeThrough = false: a write is
 * durable after flush() or when written with fua. A commit makes new data durable
 * first, then journals every changed map/refcount page in one atomic transaction; only
 * after that may freed blocks be reused. After a crash, journal replay restores the last
 * committed state exactly (refcounts included) and check() verifies it.
 *
 * Every public operation runs under one lock: metadata updates are never interleaved,
 * which keeps the two-phase write (plan without side effects, then apply) simple.
 */
import { rootLogger } from '../../util/log.ts';
import { createHash, hash as oneShotHash } from 'node:crypto';
import type { BlockDevice, WriteFlags } from '../../block/types.ts';
import { outOfRange, readOnly, invalidArgument, noSpace, ioError, shutDown, errnoOf, StorvisorError } from '../../util/errors.ts';
import {
  BLOCK,
  PAGE_HEADER,
  MAP_ENTRIES,
  REF_ENTRIES,
  INDEX_ENTRIES,
  MAX_SLOTS,
  REF_MAX,
  PageType,
  LocKind,
  computeLayout,
  decodeSuperblock,
  encodeLoc,
  locKind,
  locPba,
  locSlot,
  getU64,
  setU64,
  refCount,
  refEntry,
  refFragments,
  sealPage,
  type Compression,
  type Layout,
} from './format.ts';
import { PageCache, type Page } from './page-cache.ts';
import { Journal, MAX_TX_PAGES, type Counters } from './journal.ts';
import { codecFor, fragmentOf, packedBlocksNeeded, packedCount, Packer, type Codec } from './fragments.ts';
import { BlockLru } from './block-lru.ts';
import { formatVolume } from './mkfs.ts';
import { corruptData, volumeBroken } from './errors.ts';

export interface DedupVolumeOptions {
  /** Size of the virtual volume in bytes (a multiple of 4096). */
  logicalSize: number;
  compression: Compression;
  dedup: boolean;
  /** Bound on the metadata page cache (default 16 MiB, at least 1 MiB). */
  cacheBytes?: number;
  log?: (msg: string) => void;
}

export interface CheckResult {
  ok: boolean;
  problems: string[];
}

/** A planned block of a write, decided before anything is changed. */
type Plan =
  | { kind: 'zero' }
  | { kind: 'dup'; loc: number }
  | { kind: 'sameAs'; index: number }
  | { kind: 'new'; tag: Fingerprint | null; fragment: Uint8Array | null };

interface Fingerprint {
  hi: number;
  lo: number;
}

const DEFAULT_CACHE = 16 << 20;
const MIN_CACHE = 1 << 20;
const MAX_CHUNK = 64;
/** Leave head room under REF_MAX for a chunk's increments. */
const REF_LIMIT = REF_MAX - 2 * MAX_CHUNK;

const sha256 = (data: Uint8Array): Buffer =>
  typeof oneShotHash === 'function' ? (oneShotHash('sha256', data, 'buffer') as Buffer) : createHash('sha256').update(data).digest();

const isZero = (b: Uint8Array): boolean => {
  const w = new Uint32Array(b.buffer, b.byteOffset, b.byteLength >>> 2); // callers pass 4 KiB-aligned views
  for (let i = 0; i < w.length; i++) if (w[i] !== 0) return false;
  return true;
};

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

export class DedupVolume implements BlockDevice {
  readonly size: number;
  readonly blockSize = BLOCK;
  readonly readOnly: boolean;
  readonly writeThrough = false;

  private readonly codec: Codec | null;
  private readonly log: (msg: string) => void;
  /** Completes when every mutation queued so far has finished. */
  private tail: Promise<unknown> = Promise.resolve();
  /** Reads queued since the last mutation: the next mutation waits for them. */
  private readsSinceTail: Promise<unknown>[] = [];
  private packer: Packer | null = null;
  private readonly dataBlocks: BlockLru;
  /**
   * Sealed packed blocks whose pwrite is still in flight: reads are served from here (a
   * concurrent pread could see the old bytes), and commit waits for them before flushing.
   */
  private readonly sealing = new Map<number, Promise<void>>();
  private readonly sealingBlocks = new Map<number, Uint8Array>();
  private sealFailure: unknown = null;
  /** Blocks whose refcount reached zero since the last commit: not reusable until it is durable. */
  private readonly pendingFree = new Set<number>();
  private allocCursor = 0;
  private broken: unknown = null;
  private closed = false;
  /** Pages one journal commit may carry, and blocks per write chunk so a chunk always fits. */
  private readonly dirtyLimit: number;
  private readonly chunkBlocks: number;
  /** Verification buffer: used only by writes, which run alone. */
  private readonly scratch = new Uint8Array(BLOCK);

  private readonly session = {
    logicalBytesWritten: 0,
    logicalBytesRead: 0,
    zeroBlocksWritten: 0,
    dedupHits: 0,
    rawBlocksStored: 0,
    fragmentsStored: 0,
    hashMicros: 0,
    compressMicros: 0,
    hashedBlocks: 0,
    compressedAttempts: 0,
  };

  private constructor(
    private readonly backing: BlockDevice,
    private readonly layout: Layout,
    private readonly cache: PageCache,
    private readonly journal: Journal,
    private readonly counters: Counters,
    log: (msg: string) => void,
    dataCacheBlocks: number,
  ) {
    this.size = layout.logicalSize;
    this.readOnly = backing.readOnly;
    this.codec = codecFor(layout.compression);
    this.log = log;
    this.dataBlocks = new BlockLru(dataCacheBlocks);
    this.dirtyLimit = Math.min(Math.floor(layout.journalBlocks / 4) - 1, Math.floor(cache.capacity / 2), MAX_TX_PAGES);
    // Worst case per chunk: two map pages, a refcount page per new and per old block, the packer's.
    // Chunks use at most half the limit, so commits carry several chunks' changes.
    this.chunkBlocks = Math.max(1, Math.min(MAX_CHUNK, Math.floor((this.dirtyLimit - 4) / 4)));
  }

  /** Open the dedup volume on `backing`, formatting it first if it is blank (all zeroes at block 0). */
  static async open(backing: BlockDevice, opts: DedupVolumeOptions): Promise<DedupVolume> {
    const log = opts.log ?? rootLogger().sink();
    const cacheBytes = opts.cacheBytes ?? DEFAULT_CACHE;
    if (!Number.isSafeInteger(cacheBytes) || cacheBytes < MIN_CACHE) {
      throw invalidArgument(`cacheBytes must be an integer of at least ${MIN_CACHE}, got ${cacheBytes}`);
    }
    if (typeof opts.dedup !== 'boolean') throw invalidArgument(`dedup must be a boolean, got ${String(opts.dedup)}`);
    const wanted = computeLayout(backing.size, opts.logicalSize, opts.compression, opts.dedup);
    const sb = new Uint8Array(BLOCK);
    await backing.pread(sb, 0);
    const found = decodeSuperblock(sb);
    let layout: Layout;
    if (found.kind === 'blank') {
      if (backing.readOnly) throw readOnly('blank backing volume (cannot format)');
      await formatVolume(backing, wanted);
      layout = wanted;
    } else if (found.kind === 'foreign') {
      throw invalidArgument(`backing volume is not a dedup volume (${found.why}); refusing to overwrite it`);
    } else if (found.kind === 'corrupt') {
      const err = ioError(`dedup: superblock at backing block 0 is corrupt (${found.why})`);
      log(err.message);
      throw err;
    } else {
      layout = found.layout;
      const mismatch = (['logicalSize', 'compression', 'dedup'] as const).filter((k) => layout[k] !== wanted[k]);
      if (mismatch.length > 0) {
        throw invalidArgument(
          `dedup volume was formatted with ${mismatch.map((k) => `${k}=${layout[k]}`).join(', ')}; ` +
            `opened with ${mismatch.map((k) => `${k}=${wanted[k]}`).join(', ')}`,
        );
      }
      if (layout.backingBlocks * BLOCK > backing.size) {
        throw invalidArgument(`backing volume shrank: formatted for ${layout.backingBlocks * BLOCK} bytes, now ${backing.size}`);
      }
    }
    const { journal, counters } = await Journal.recover(backing, layout, log);
    // Three quarters of the budget for metadata pages, a quarter for recent data blocks.
    const cache = new PageCache(backing, Math.floor((cacheBytes * 3) / 4 / BLOCK), log);
    return new DedupVolume(backing, layout, cache, journal, counters, log, Math.floor(cacheBytes / 4 / BLOCK));
  }

  // ------------------------------------------------------------------ BlockDevice

  async pread(buf: Uint8Array, offset: number): Promise<void> {
    this.checkRange(offset, buf.byteLength);
    return this.locked(async () => {
      this.session.logicalBytesRead += buf.byteLength;
      const end = offset + buf.byteLength;
      const firstFull = Math.ceil(offset / BLOCK);
      const lastFull = Math.max(firstFull, Math.floor(end / BLOCK));
      // Partial blocks at the edges go through a bounce block; whole blocks are read in place.
      const partial = async (lbn: number) => {
        const bounce = new Uint8Array(BLOCK); // per call: reads run concurrently
        await this.readBlock(lbn, bounce);
        const from = Math.max(lbn * BLOCK, offset);
        const to = Math.min((lbn + 1) * BLOCK, end);
        buf.set(bounce.subarray(from - lbn * BLOCK, to - lbn * BLOCK), from - offset);
      };
      if (offset < firstFull * BLOCK) await partial(firstFull - 1);
      if (lastFull > firstFull) await this.readBlocks(firstFull, buf.subarray(firstFull * BLOCK - offset, lastFull * BLOCK - offset));
      if (lastFull * BLOCK < end) await partial(lastFull); // never the head block: see lastFull's max()
    }, 'shared');
  }

  async pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags): Promise<void> {
    if (this.readOnly) throw readOnly('dedup volume');
    this.checkRange(offset, buf.byteLength);
    return this.locked(async () => {
      this.session.logicalBytesWritten += buf.byteLength;
      await this.writeRange(buf, offset);
      if (flags?.fua) await this.commit();
    });
  }

  async flush(): Promise<void> {
    return this.locked(() => this.commit());
  }

  /** Discard: whole blocks are unmapped (they read as zeroes); partial blocks are left as they are. */
  async trim(offset: number, length: number): Promise<void> {
    if (this.readOnly) throw readOnly('dedup volume');
    this.checkRange(offset, length);
    return this.locked(() => this.unmap(Math.ceil(offset / BLOCK), Math.floor((offset + length) / BLOCK)));
  }

  async zero(offset: number, length: number): Promise<void> {
    if (this.readOnly) throw readOnly('dedup volume');
    this.checkRange(offset, length);
    return this.locked(async () => {
      const first = Math.ceil(offset / BLOCK);
      const last = Math.floor((offset + length) / BLOCK);
      if (first >= last) return this.writeRange(new Uint8Array(length), offset);
      if (offset < first * BLOCK) await this.writeRange(new Uint8Array(first * BLOCK - offset), offset);
      await this.unmap(first, last);
      if (last * BLOCK < offset + length) await this.writeRange(new Uint8Array(offset + length - last * BLOCK), last * BLOCK);
    });
  }

  // ------------------------------------------------------------------ lifecycle, stats, check

  /** Make everything durable, write the metadata home and stop. Does not close the backing volume. */
  async close(): Promise<void> {
    return this.locked(async () => {
      if (!this.readOnly) {
        await this.commit();
        await this.checkpoint();
      }
      this.closed = true;
    });
  }

  stats(): Record<string, number> {
    const c = this.counters;
    const s = this.session;
    return {
      logicalSize: this.size,
      logicalBytesWritten: s.logicalBytesWritten,
      logicalBytesRead: s.logicalBytesRead,
      logicalBytesUsed: c.mappedBlocks * BLOCK,
      mappedBlocks: c.mappedBlocks,
      physicalBlocksUsed: c.usedBlocks,
      physicalBytesUsed: c.usedBlocks * BLOCK,
      physicalBytesFree: (this.layout.dataBlocks - c.usedBlocks) * BLOCK,
      metadataBytes: this.layout.dataStart * BLOCK,
      storedFragments: c.storedFragments,
      dedupRatio: c.storedFragments === 0 ? 1 : c.mappedBlocks / c.storedFragments,
      compressionRatio: c.usedBlocks === 0 ? 1 : c.storedFragments / c.usedBlocks,
      dataReductionRatio: c.usedBlocks === 0 ? 1 : c.mappedBlocks / c.usedBlocks,
      zeroBlocksWritten: s.zeroBlocksWritten,
      dedupHits: s.dedupHits,
      rawBlocksStored: s.rawBlocksStored,
      fragmentsStored: s.fragmentsStored,
      hashMicrosPerBlock: s.hashedBlocks === 0 ? 0 : s.hashMicros / s.hashedBlocks,
      compressMicrosPerBlock: s.compressedAttempts === 0 ? 0 : s.compressMicros / s.compressedAttempts,
      commits: this.journal.commits,
      checkpoints: this.journal.checkpoints,
      cachePages: this.cache.size,
      cacheHits: this.cache.hits,
      cacheMisses: this.cache.misses,
      pendingFreeBlocks: this.pendingFree.size,
    };
  }

  /**
   * Verify the metadata: every page's checksum, every map entry's target, every
   * refcount against the references the map actually holds, fragment counts against
   * the packed blocks, and the volume counters. Commits first, so it checks what a
   * crash right now would leave.
   */
  async check(): Promise<CheckResult> {
    return this.locked(async () => {
      if (!this.readOnly) await this.commit();
      const problems: string[] = [];
      const refs = new Map<number, number>();
      const kinds = new Map<number, { kind: LocKind; slots: Set<number>; lbn: number }>();
      const logicalBlocks = this.size / BLOCK;
      let mapped = 0;
      for (let p = 0; p < this.layout.mapPages; p++) {
        const page = await this.tryPage(this.layout.mapStart + p, PageType.Map, problems);
        if (!page) continue;
        for (let i = 0; i < MAP_ENTRIES && p * MAP_ENTRIES + i < logicalBlocks; i++) {
          const lbn = p * MAP_ENTRIES + i;
          const loc = getU64(page.view, PAGE_HEADER + 8 * i);
          if (loc === 0) continue;
          mapped++;
          const bad = this.locProblem(loc);
          if (bad) {
            problems.push(`logical block ${lbn}: ${bad}`);
            continue;
          }
          const pba = locPba(loc);
          refs.set(pba, (refs.get(pba) ?? 0) + 1);
          const k = kinds.get(pba);
          if (k && k.kind !== locKind(loc)) problems.push(`block ${pba} is mapped both raw and packed (logical ${k.lbn} and ${lbn})`);
          if (k) k.slots.add(locSlot(loc));
          else kinds.set(pba, { kind: locKind(loc), slots: new Set([locSlot(loc)]), lbn });
        }
      }
      let used = 0;
      let fragments = 0;
      for (let idx = 0; idx < this.layout.dataBlocks; idx++) {
        if (idx % REF_ENTRIES === 0) {
          const page = await this.tryPage(this.layout.refStart + idx / REF_ENTRIES, PageType.Refcount, problems);
          if (!page) {
            idx += REF_ENTRIES - 1;
            continue;
          }
        }
        const pba = this.layout.dataStart + idx;
        const e = await this.getRef(pba);
        const want = refs.get(pba) ?? 0;
        if (refCount(e) !== want) problems.push(`block ${pba}: refcount ${refCount(e)}, but the map references it ${want} time(s)`);
        if (e === 0) continue;
        used++;
        fragments += refFragments(e);
        const k = kinds.get(pba);
        if (!k) continue;
        if (k.kind === LocKind.Raw && refFragments(e) !== 1) problems.push(`raw block ${pba} records ${refFragments(e)} fragments`);
        if (k.kind === LocKind.Packed) {
          const block = new Uint8Array(BLOCK);
          await this.backing.pread(block, pba * BLOCK);
          const n = packedCount(block);
          if (n !== refFragments(e)) problems.push(`packed block ${pba} holds ${n} fragments, refcount entry says ${refFragments(e)}`);
          for (const slot of k.slots) {
            const f = fragmentOf(block, slot);
            if (typeof f === 'string') problems.push(`packed block ${pba}: ${f}`);
          }
        }
      }
      const c = this.counters;
      if (mapped !== c.mappedBlocks) problems.push(`counter mappedBlocks is ${c.mappedBlocks}, the map holds ${mapped}`);
      if (used !== c.usedBlocks) problems.push(`counter usedBlocks is ${c.usedBlocks}, refcounts show ${used}`);
      if (fragments !== c.storedFragments) problems.push(`counter storedFragments is ${c.storedFragments}, refcounts show ${fragments}`);
      await this.cache.trim();
      return { ok: problems.length === 0, problems };
    });
  }

  // ------------------------------------------------------------------ plumbing

  private checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw outOfRange(offset, length, this.size);
    }
  }

  /**
   * Order operations: mutations run alone, in arrival order; reads run together between
   * them. A failure while metadata was half-updated stops the volume (sticky).
   */
  private locked<T>(fn: () => Promise<T>, mode: 'exclusive' | 'shared' = 'exclusive'): Promise<T> {
    const run = async (): Promise<T> => {
      if (this.closed) throw shutDown('dedup volume');
      if (this.broken) throw volumeBroken(this.broken);
      try {
        const result = await fn();
        await this.cache.trim();
        return result;
      } catch (err) {
        if (err instanceof StorvisorError && err.code === 'SV_ERR_DEDUP_UNSAFE') {
          this.fail(err.cause);
          throw volumeBroken(err.cause);
        }
        if (err instanceof StorvisorError) throw err;
        // A backing-device failure that left metadata untouched: report it with its errno.
        throw new StorvisorError('SV_ERR_IO', errnoOf(err), `dedup: backing volume: ${(err as Error)?.message ?? String(err)}`, { cause: err });
      }
    };
    if (mode === 'shared') {
      // Reads run concurrently with each other (their backing I/O overlaps), never with a mutation.
      const p = this.tail.then(run);
      this.readsSinceTail.push(p.catch(() => undefined));
      return p;
    }
    const before = Promise.all([this.tail, ...this.readsSinceTail]);
    this.readsSinceTail = [];
    const p = before.then(run);
    this.tail = p.catch(() => undefined);
    return p;
  }

  private fail(err: unknown): void {
    if (this.broken) return;
    this.broken = err;
    this.cache.drop(); // nothing uncommitted may reach the disk now
    this.log(`dedup: volume stopped: ${(err as Error)?.message ?? String(err)}`);
  }

  /** Run a step that must not fail halfway; if it does, the volume stops until it is reopened. */
  private async unsafe<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw new StorvisorError('SV_ERR_DEDUP_UNSAFE', 'EIO', 'metadata update failed', { cause: err });
    }
  }

  private async tryPage(no: number, type: PageType, problems: string[]): Promise<Page | null> {
    try {
      return await this.cache.get(no, type);
    } catch (err) {
      problems.push((err as Error).message);
      return null;
    }
  }

  // ------------------------------------------------------------------ map, refcounts, index

  private async mapSlot(lbn: number): Promise<{ page: Page; at: number }> {
    const page = await this.cache.get(this.layout.mapStart + Math.floor(lbn / MAP_ENTRIES), PageType.Map);
    return { page, at: PAGE_HEADER + 8 * (lbn % MAP_ENTRIES) };
  }

  private async getLoc(lbn: number): Promise<number> {
    const { page, at } = await this.mapSlot(lbn);
    return getU64(page.view, at);
  }

  private async setLoc(lbn: number, loc: number): Promise<void> {
    const { page, at } = await this.mapSlot(lbn);
    setU64(page.view, at, loc);
    this.cache.markDirty(page);
  }

  private async refSlot(pba: number): Promise<{ page: Page; at: number }> {
    const idx = pba - this.layout.dataStart;
    const page = await this.cache.get(this.layout.refStart + Math.floor(idx / REF_ENTRIES), PageType.Refcount);
    return { page, at: PAGE_HEADER + 4 * (idx % REF_ENTRIES) };
  }

  private async getRef(pba: number): Promise<number> {
    const { page, at } = await this.refSlot(pba);
    return page.view.getUint32(at, true);
  }

  private async setRef(pba: number, entry: number): Promise<void> {
    const { page, at } = await this.refSlot(pba);
    page.view.setUint32(at, entry, true);
    this.cache.markDirty(page);
  }

  private async incRef(pba: number): Promise<void> {
    const e = await this.getRef(pba);
    await this.setRef(pba, refEntry(refCount(e) + 1, refFragments(e)));
  }

  private async decRef(pba: number): Promise<void> {
    const e = await this.getRef(pba);
    const refs = refCount(e) - 1;
    if (refs < 0) throw new Error(`refcount underflow on block ${pba}`);
    if (refs > 0) return this.setRef(pba, refEntry(refs, refFragments(e)));
    await this.setRef(pba, 0);
    this.counters.usedBlocks--;
    this.counters.storedFragments -= refFragments(e);
    this.pendingFree.add(pba);
  }

  /** Take a free data block (refcount entry 0, freeing durable) and mark it used. */
  private async allocate(fragments: number, refs: number): Promise<number> {
    const n = this.layout.dataBlocks;
    for (let scanned = 0; scanned < n; ) {
      const pageIdx = Math.floor(this.allocCursor / REF_ENTRIES);
      const page = await this.cache.get(this.layout.refStart + pageIdx, PageType.Refcount);
      const end = Math.min((pageIdx + 1) * REF_ENTRIES, n);
      for (; this.allocCursor < end; this.allocCursor++, scanned++) {
        const pba = this.layout.dataStart + this.allocCursor;
        if (page.view.getUint32(PAGE_HEADER + 4 * (this.allocCursor % REF_ENTRIES), true) !== 0 || this.pendingFree.has(pba)) continue;
        page.view.setUint32(PAGE_HEADER + 4 * (this.allocCursor % REF_ENTRIES), refEntry(refs, fragments), true);
        this.cache.markDirty(page);
        this.dataBlocks.delete(pba); // the block gets new contents
        this.counters.usedBlocks++;
        this.counters.storedFragments += fragments;
        this.allocCursor = (this.allocCursor + 1) % n;
        return pba;
      }
      if (this.allocCursor >= n) this.allocCursor = 0;
    }
    throw noSpace('dedup volume has no free data block');
  }

  private freeBlocks(): number {
    return this.layout.dataBlocks - this.counters.usedBlocks - this.pendingFree.size;
  }

  private async indexPage(tag: Fingerprint): Promise<Page> {
    return this.cache.get(this.layout.indexStart + (tag.hi % this.layout.indexPages), PageType.Index);
  }

  /** Linear probing inside one page; entries are never deleted, so an empty slot ends a search. */
  private async indexLookup(tag: Fingerprint): Promise<number> {
    const page = await this.indexPage(tag);
    const v = page.view;
    for (let n = 0, i = tag.lo % INDEX_ENTRIES; n < INDEX_ENTRIES; n++, i = (i + 1) % INDEX_ENTRIES) {
      const at = PAGE_HEADER + 16 * i;
      const loc = getU64(v, at + 8);
      if (loc === 0) return 0;
      if (v.getUint32(at, true) === tag.hi && v.getUint32(at + 4, true) === tag.lo) return loc;
    }
    return 0;
  }

  /** Insert or replace; a full page evicts the entry at the home slot (the index is advisory). */
  private async indexInsert(tag: Fingerprint, loc: number): Promise<void> {
    const page = await this.indexPage(tag);
    const v = page.view;
    const home = tag.lo % INDEX_ENTRIES;
    let target = home;
    for (let n = 0, i = home; n < INDEX_ENTRIES; n++, i = (i + 1) % INDEX_ENTRIES) {
      const at = PAGE_HEADER + 16 * i;
      const empty = getU64(v, at + 8) === 0;
      if (empty || (v.getUint32(at, true) === tag.hi && v.getUint32(at + 4, true) === tag.lo)) {
        target = i;
        break;
      }
    }
    const at = PAGE_HEADER + 16 * target;
    v.setUint32(at, tag.hi, true);
    v.setUint32(at + 4, tag.lo, true);
    setU64(v, at + 8, loc);
    this.cache.markDirty(page);
  }

  // ------------------------------------------------------------------ data blocks

  private locProblem(loc: number): string | null {
    const kind = locKind(loc);
    const pba = locPba(loc);
    if (kind !== LocKind.Raw && kind !== LocKind.Packed) return `map entry ${loc} has kind ${kind}`;
    if (pba < this.layout.dataStart || pba >= this.layout.dataStart + this.layout.dataBlocks) return `map entry points at block ${pba}, outside the data area`;
    if (kind === LocKind.Packed && !this.codec) return `map entry is a compressed fragment on an uncompressed volume`;
    return null;
  }

  /** Read the 4 KiB the location holds into `out`. */
  private async readLoc(loc: number, out: Uint8Array, lbn: number): Promise<void> {
    if (loc === 0) {
      out.fill(0);
      return;
    }
    const bad = this.locProblem(loc);
    if (bad) {
      const err = corruptData(lbn, bad);
      this.log(err.message);
      throw err;
    }
    const pba = locPba(loc);
    if (locKind(loc) === LocKind.Raw) {
      const cached = this.dataBlocks.get(pba);
      if (cached) return out.set(cached);
      await this.backing.pread(out, pba * BLOCK);
      if (this.layout.dedup) this.dataBlocks.put(pba, out); // a likely duplicate candidate
      return;
    }
    let block = this.packer?.pba === pba ? this.packer.buf : (this.sealingBlocks.get(pba) ?? this.dataBlocks.get(pba));
    if (!block) {
      block = new Uint8Array(BLOCK);
      await this.backing.pread(block, pba * BLOCK);
      this.dataBlocks.put(pba, block); // a copy: `block` stays ours
    }
    // From here on synchronous: a cached view is only valid until the next put.
    const frag = fragmentOf(block, locSlot(loc));
    const why = typeof frag === 'string' ? frag : this.codec!.decompress(frag, out) ? null : 'fragment does not decompress to one block';
    if (why) {
      const err = corruptData(lbn, why);
      this.log(err.message);
      throw err;
    }
  }

  private async readBlock(lbn: number, out: Uint8Array): Promise<void> {
    await this.readLoc(await this.getLoc(lbn), out, lbn);
  }

  /** Read whole blocks; runs of raw blocks stored contiguously are read with one pread. */
  private async readBlocks(first: number, out: Uint8Array): Promise<void> {
    const n = out.byteLength / BLOCK;
    const locs: number[] = [];
    for (let i = 0; i < n; i++) locs.push(await this.getLoc(first + i));
    const rawPba = (loc: number) => (loc !== 0 && locKind(loc) === LocKind.Raw && !this.locProblem(loc) ? locPba(loc) : -1);
    for (let i = 0; i < n; ) {
      const pba = rawPba(locs[i]!);
      let j = i + 1;
      if (pba >= 0) {
        while (j < n && rawPba(locs[j]!) === pba + (j - i)) j++;
        await this.backing.pread(out.subarray(i * BLOCK, j * BLOCK), pba * BLOCK);
      } else {
        await this.readLoc(locs[i]!, out.subarray(i * BLOCK, j * BLOCK), first + i);
      }
      i = j;
    }
  }

  /** A candidate from the index is shared only if its block is live and its bytes are equal. */
  private async verifyCandidate(loc: number, data: Uint8Array): Promise<boolean> {
    if (this.locProblem(loc)) return false;
    const pba = locPba(loc);
    const e = await this.getRef(pba);
    if (refCount(e) === 0 || refCount(e) >= REF_LIMIT) return false;
    if (locKind(loc) === LocKind.Packed && locSlot(loc) >= refFragments(e)) return false;
    try {
      await this.readLoc(loc, this.scratch, -1);
    } catch {
      return false;
    }
    return sameBytes(this.scratch, data);
  }

  // ------------------------------------------------------------------ writes

  /** Write any byte range: partial blocks at the edges are read, merged and written whole. */
  private async writeRange(buf: Uint8Array, offset: number): Promise<void> {
    const first = Math.floor(offset / BLOCK);
    const endBlock = Math.ceil((offset + buf.byteLength) / BLOCK);
    let data = buf;
    if (offset % BLOCK !== 0 || buf.byteLength % BLOCK !== 0 || buf.byteOffset % 4 !== 0) {
      data = new Uint8Array((endBlock - first) * BLOCK);
      if (offset % BLOCK !== 0) await this.readBlock(first, data.subarray(0, BLOCK));
      if ((offset + buf.byteLength) % BLOCK !== 0) await this.readBlock(endBlock - 1, data.subarray(data.length - BLOCK));
      data.set(buf, offset - first * BLOCK);
    }
    for (let lbn = first; lbn < endBlock; lbn += this.chunkBlocks) {
      const n = Math.min(this.chunkBlocks, endBlock - lbn);
      await this.writeChunk(data.subarray((lbn - first) * BLOCK, (lbn - first + n) * BLOCK), lbn);
    }
  }

  private async writeChunk(data: Uint8Array, firstLbn: number): Promise<void> {
    const count = data.byteLength / BLOCK;
    await this.makeRoom(count);
    // Blocks freed since the last commit become reusable once the freeing is durable. Commit
    // now if they may be needed: never between planning and applying, since a commit seals
    // the packer and may free a block the plan chose to share.
    if (this.pendingFree.size > 0 && this.freeBlocks() < count + 1) await this.commit();
    const blocks = Array.from({ length: count }, (_, i) => data.subarray(i * BLOCK, (i + 1) * BLOCK));
    const plans = await this.plan(blocks);
    await this.reserveSpace(plans);

    // Phase 2a: raw data goes to freshly allocated blocks; on failure they are released.
    const locs: number[] = new Array(count).fill(0);
    const rawAt: number[] = [];
    for (let i = 0; i < count; i++) {
      const p = plans[i]!;
      if (p.kind === 'new' && !p.fragment) {
        locs[i] = encodeLoc(LocKind.Raw, await this.allocate(1, 0));
        rawAt.push(i);
      }
    }
    try {
      await this.writeRaw(rawAt.map((i) => ({ pba: locPba(locs[i]!), data: blocks[i]! })));
    } catch (err) {
      await this.unsafe(async () => {
        for (const i of rawAt) await this.releaseUnused(locPba(locs[i]!));
      });
      throw err;
    }

    // Phase 2b: references, packing, index and map. References to existing blocks are
    // taken first: sealing the open packer drops its own reference, and a candidate in it
    // must not be freed. Increments come before decrements, so a block that one block of
    // this chunk stops using and another starts using is never freed.
    await this.unsafe(async () => {
      for (let i = 0; i < count; i++) {
        const p = plans[i]!;
        if (p.kind !== 'dup') continue;
        locs[i] = p.loc;
        await this.incRef(locPba(p.loc));
      }
      for (let i = 0; i < count; i++) {
        const p = plans[i]!;
        if (p.kind !== 'new') continue;
        if (p.fragment) locs[i] = await this.pack(p.fragment);
        else await this.incRef(locPba(locs[i]!));
        if (p.tag) await this.indexInsert(p.tag, locs[i]!);
      }
      for (let i = 0; i < count; i++) {
        const p = plans[i]!;
        if (p.kind !== 'sameAs') continue;
        locs[i] = locs[p.index]!;
        await this.incRef(locPba(locs[i]!));
      }
      const olds: number[] = [];
      for (let i = 0; i < count; i++) {
        const old = await this.getLoc(firstLbn + i);
        olds.push(old);
        if (old !== locs[i]) await this.setLoc(firstLbn + i, locs[i]!);
        this.counters.mappedBlocks += (locs[i] !== 0 ? 1 : 0) - (old !== 0 ? 1 : 0);
      }
      for (const old of olds) if (old !== 0 && !this.locProblem(old)) await this.decRef(locPba(old));
    });
  }

  /** Write raw blocks, one pwrite per run of consecutive physical blocks. */
  private async writeRaw(items: Array<{ pba: number; data: Uint8Array }>): Promise<void> {
    const writes: Promise<void>[] = [];
    for (let i = 0; i < items.length; ) {
      let j = i + 1;
      while (j < items.length && items[j]!.pba === items[i]!.pba + (j - i)) j++;
      let run = items[i]!.data;
      const first = items[i]!.data;
      const adjacent = items.slice(i, j).every((it, k) => it.data.buffer === first.buffer && it.data.byteOffset === first.byteOffset + k * BLOCK);
      if (j - i > 1 && adjacent) run = new Uint8Array(first.buffer, first.byteOffset, (j - i) * BLOCK); // already one buffer
      else if (j - i > 1) {
        run = new Uint8Array((j - i) * BLOCK);
        for (let k = i; k < j; k++) run.set(items[k]!.data, (k - i) * BLOCK);
      }
      writes.push(this.backing.pwrite(run, items[i]!.pba * BLOCK));
      // Recent blocks are the likeliest duplicates: keep copies so verifying them needs no read.
      if (this.layout.dedup) for (let k = i; k < j; k++) this.dataBlocks.put(items[k]!.pba, items[k]!.data);
      i = j;
    }
    await Promise.all(writes);
  }

  /** Phase 1: classify every block (zero, duplicate, new) without changing anything. */
  private async plan(blocks: Uint8Array[]): Promise<Plan[]> {
    const plans: Plan[] = [];
    const seen = new Map<string, number>(); // duplicates inside this chunk
    for (let i = 0; i < blocks.length; i++) {
      const data = blocks[i]!;
      if (isZero(data)) {
        this.session.zeroBlocksWritten++;
        plans.push({ kind: 'zero' });
        continue;
      }
      let tag: Fingerprint | null = null;
      if (this.layout.dedup) {
        const t0 = performance.now();
        const h = sha256(data);
        this.session.hashMicros += (performance.now() - t0) * 1000;
        this.session.hashedBlocks++;
        tag = { hi: h.readUInt32LE(0), lo: h.readUInt32LE(4) };
        const key = `${tag.hi}:${tag.lo}`;
        const earlier = seen.get(key);
        if (earlier !== undefined && sameBytes(blocks[earlier]!, data)) {
          this.session.dedupHits++;
          plans.push({ kind: 'sameAs', index: earlier });
          continue;
        }
        const candidate = await this.indexLookup(tag);
        if (candidate !== 0 && (await this.verifyCandidate(candidate, data))) {
          this.session.dedupHits++;
          plans.push({ kind: 'dup', loc: candidate });
          continue;
        }
        seen.set(key, i);
      }
      let fragment: Uint8Array | null = null;
      if (this.codec) {
        const t0 = performance.now();
        fragment = this.codec.compress(data);
        this.session.compressMicros += (performance.now() - t0) * 1000;
        this.session.compressedAttempts++;
      }
      if (fragment) this.session.fragmentsStored++;
      else this.session.rawBlocksStored++;
      plans.push({ kind: 'new', tag, fragment });
    }
    return plans;
  }

  /** Refuse the whole chunk with ENOSPC before anything is written if it cannot fit. */
  private async reserveSpace(plans: Plan[]): Promise<void> {
    const need = (): number => {
      const fragments: number[] = [];
      let raw = 0;
      for (const p of plans) if (p.kind === 'new') p.fragment ? fragments.push(p.fragment.length) : raw++;
      return raw + packedBlocksNeeded(fragments, this.packer?.space() ?? null);
    };
    const n = need();
    if (n > this.freeBlocks()) {
      throw noSpace(`dedup volume is full: the write needs ${n} data block(s), ${this.freeBlocks()} free`);
    }
  }

  /** Put a fragment in the open packed block (sealing it and opening another when full), with one reference. */
  private async pack(fragment: Uint8Array): Promise<number> {
    if (this.packer && !this.packer.fits(fragment.length)) await this.sealPacker();
    // The open packer holds one reference of its own, so it is never freed while filling.
    if (!this.packer) this.packer = new Packer(await this.allocate(0, 1));
    const slot = this.packer.add(fragment);
    const e = await this.getRef(this.packer.pba);
    await this.setRef(this.packer.pba, refEntry(refCount(e) + 1, refFragments(e) + 1)); // the fragment's first reference
    this.counters.storedFragments++;
    return encodeLoc(LocKind.Packed, this.packer.pba, slot);
  }

  private async sealPacker(): Promise<void> {
    const p = this.packer;
    if (!p) return;
    this.packer = null;
    if (p.count > 0) {
      // Not awaited: the block stays readable from the cache (pinned until the write lands),
      // and commit waits for every seal before it flushes.
      this.dataBlocks.put(p.pba, p.buf);
      this.sealingBlocks.set(p.pba, p.buf);
      const settle = () => {
        this.sealing.delete(p.pba);
        this.sealingBlocks.delete(p.pba);
      };
      const write = this.backing.pwrite(p.buf, p.pba * BLOCK).then(settle, (err: unknown) => {
        settle();
        this.sealFailure ??= err;
      });
      this.sealing.set(p.pba, write);
    }
    await this.decRef(p.pba); // drop the packer's own reference
  }

  private async releaseUnused(pba: number): Promise<void> {
    const e = await this.getRef(pba);
    await this.setRef(pba, 0);
    this.counters.usedBlocks--;
    this.counters.storedFragments -= refFragments(e);
  }

  private async unmap(first: number, last: number): Promise<void> {
    for (let lbn = first; lbn < last; lbn += this.chunkBlocks) {
      const end = Math.min(last, lbn + this.chunkBlocks);
      await this.makeRoom(end - lbn);
      await this.unsafe(async () => {
        for (let b = lbn; b < end; b++) {
          const old = await this.getLoc(b);
          if (old === 0) continue;
          await this.setLoc(b, 0);
          this.counters.mappedBlocks--;
          if (!this.locProblem(old)) await this.decRef(locPba(old));
        }
      });
    }
  }

  // ------------------------------------------------------------------ durability

  /** Commit early when a chunk of `blocks` blocks could push the dirty pages past one transaction. */
  private async makeRoom(blocks: number): Promise<void> {
    if (this.cache.dirtyCount + 2 * blocks + 4 > this.dirtyLimit) await this.commit();
  }

  /** Make all acknowledged writes durable: data first, then one atomic journal transaction. */
  private async commit(): Promise<void> {
    await this.unsafe(async () => {
      await this.sealPacker();
      await Promise.all(this.sealing.values());
      if (this.sealFailure) throw this.sealFailure;
    });
    const pages = this.cache.dirtyPages();
    if (pages.length === 0) return;
    await this.unsafe(async () => {
      await this.backing.flush(); // data before the mapping that points at it
      for (const p of pages) sealPage(p.buf);
      await this.journal.commit(pages, { ...this.counters });
    });
    this.cache.markCommitted(pages);
    this.pendingFree.clear(); // the freeing is durable: the blocks may be reused
    if (this.journal.free < Journal.worstCase(this.dirtyLimit)) await this.checkpoint();
  }

  /** Write committed pages home and empty the journal. Needs no dirty pages (right after a commit). */
  private async checkpoint(): Promise<void> {
    await this.unsafe(async () => {
      await this.cache.writeBack();
      await this.backing.flush();
      await this.journal.checkpoint({ ...this.counters });
    });
  }
}
