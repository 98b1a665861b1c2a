/**
 * Metadata accessors of a dedup volume: the logical -> physical map, the refcount table
 * (with allocation and deferred freeing) and the advisory fingerprint index, all through
 * the page cache. Every change marks its page dirty; the journal commit makes it durable.
 */
import { internalError, noSpace } from '../../util/errors.ts';
import {
  PAGE_HEADER,
  MAP_ENTRIES,
  REF_ENTRIES,
  INDEX_ENTRIES,
  PageType,
  LocKind,
  locKind,
  locPba,
  getU64,
  setU64,
  refCount,
  refEntry,
  refFragments,
  type Layout,
} from './format.ts';
import type { PageCache, Page } from './page-cache.ts';
import type { Counters } from './journal.ts';
import type { Codec } from './fragments.ts';
import type { BlockLru } from './block-lru.ts';

/** 64 bits of a block's fingerprint: what the index stores and compares. */
export interface Fingerprint {
  hi: number;
  lo: number;
}

export class Metadata {
  /** Blocks whose refcount reached zero since the last commit: not reusable until it is durable. */
  readonly pendingFree = new Set<number>();
  /**
   * Bumped whenever freed blocks may be allocated again (a commit made their freeing
   * durable, or an unused block was given back). While it is unchanged, a block that was
   * live stays live or pending-free, so bytes read from it earlier are still its bytes
   * (DataStore.prefetch relies on this).
   */
  reuseGen = 0;

  /** A commit made the pending frees durable: those blocks may be reused from now on. */
  freesDurable(): void {
    this.pendingFree.clear();
    this.reuseGen++;
  }
  private allocCursor = 0;

  constructor(
    readonly layout: Layout,
    readonly cache: PageCache,
    readonly counters: Counters,
    private readonly codec: Codec | null,
    /** Recent data blocks: an entry is dropped when its block is reallocated. */
    private readonly dataBlocks: BlockLru,
  ) {}

  // ------------------------------------------------------------------ map

  /** The map page that holds `lbn`'s entry. */
  mapPageOf(lbn: number): number {
    return this.layout.mapStart + Math.floor(lbn / MAP_ENTRIES);
  }

  /** The refcount page that holds `pba`'s entry. */
  refPageOf(pba: number): number {
    return this.layout.refStart + Math.floor((pba - this.layout.dataStart) / REF_ENTRIES);
  }

  /**
   * The hot accessors below answer synchronously when their page is cached (nearly always:
   * a write's map, refcount and index pages stay hot) and return a Promise only when the
   * page must be read first. Callers on the write path test the result instead of
   * awaiting it, so a cached access costs no async frame, Promise or microtask.
   */
  getLoc(lbn: number): number | Promise<number> {
    const no = this.layout.mapStart + Math.floor(lbn / MAP_ENTRIES);
    const at = PAGE_HEADER + 8 * (lbn % MAP_ENTRIES);
    const page = this.cache.hit(no);
    if (page) return getU64(page.view, at);
    return this.cache.get(no, PageType.Map).then((p) => getU64(p.view, at));
  }

  setLoc(lbn: number, loc: number): Promise<void> | undefined {
    const no = this.layout.mapStart + Math.floor(lbn / MAP_ENTRIES);
    const at = PAGE_HEADER + 8 * (lbn % MAP_ENTRIES);
    const page = this.cache.hit(no);
    if (!page) return this.cache.get(no, PageType.Map).then((p) => this.setU64At(p, at, loc));
    this.setU64At(page, at, loc);
    return undefined;
  }

  private setU64At(page: Page, at: number, v: number): void {
    setU64(page.view, at, v);
    this.cache.markDirty(page);
  }

  /** Why a non-zero map entry cannot be followed, or null when it can. */
  locProblem(loc: number): string | null {
    const kind = locKind(loc);
    const pba = locPba(loc);
    if (kind !== LocKind.Raw && kind !== LocKind.Packed) return `map entry ${loc} has kind ${kind}`;
    if (pba < this.layout.dataStart || pba >= this.layout.dataStart + this.layout.dataBlocks) return `map entry points at block ${pba}, outside the data area`;
    if (kind === LocKind.Packed && !this.codec) return `map entry is a compressed fragment on an uncompressed volume`;
    return null;
  }

  // ------------------------------------------------------------------ refcounts

  getRef(pba: number): number | Promise<number> {
    const idx = pba - this.layout.dataStart;
    const no = this.layout.refStart + Math.floor(idx / REF_ENTRIES);
    const at = PAGE_HEADER + 4 * (idx % REF_ENTRIES);
    const page = this.cache.hit(no);
    if (page) return page.view.getUint32(at, true);
    return this.cache.get(no, PageType.Refcount).then((p) => p.view.getUint32(at, true));
  }

  setRef(pba: number, entry: number): Promise<void> | undefined {
    const idx = pba - this.layout.dataStart;
    const no = this.layout.refStart + Math.floor(idx / REF_ENTRIES);
    const at = PAGE_HEADER + 4 * (idx % REF_ENTRIES);
    const page = this.cache.hit(no);
    if (!page) return this.cache.get(no, PageType.Refcount).then((p) => this.setU32At(p, at, entry));
    this.setU32At(page, at, entry);
    return undefined;
  }

  private setU32At(page: Page, at: number, v: number): void {
    page.view.setUint32(at, v, true);
    this.cache.markDirty(page);
  }

  incRef(pba: number): Promise<void> | undefined {
    const e = this.getRef(pba);
    if (typeof e !== 'number') return e.then((e) => this.setRef(pba, refEntry(refCount(e) + 1, refFragments(e))));
    return this.setRef(pba, refEntry(refCount(e) + 1, refFragments(e)));
  }

  decRef(pba: number): Promise<void> | undefined {
    const e = this.getRef(pba);
    if (typeof e !== 'number') return e.then((e) => this.decRefFrom(pba, e));
    return this.decRefFrom(pba, e);
  }

  private decRefFrom(pba: number, e: number): Promise<void> | undefined {
    const refs = refCount(e) - 1;
    if (refs < 0) throw internalError(`refcount underflow on block ${pba}`);
    if (refs > 0) return this.setRef(pba, refEntry(refs, refFragments(e)));
    this.counters.usedBlocks--;
    this.counters.storedFragments -= refFragments(e);
    this.pendingFree.add(pba);
    return this.setRef(pba, 0);
  }

  /** Give back a block allocated for a write that failed before anything referenced it. */
  async releaseUnused(pba: number): Promise<void> {
    const e = await this.getRef(pba);
    this.reuseGen++;
    await this.setRef(pba, 0);
    this.counters.usedBlocks--;
    this.counters.storedFragments -= refFragments(e);
  }

  /**
   * Take a free data block (refcount entry 0, freeing durable) and mark it used: at once
   * while the refcount pages it scans are cached, else after reading the next one.
   */
  allocate(fragments: number, refs: number): number | Promise<number> {
    const n = this.layout.dataBlocks;
    for (let scanned = 0; scanned < n; ) {
      const pageIdx = Math.floor(this.allocCursor / REF_ENTRIES);
      const no = this.layout.refStart + pageIdx;
      const page = this.cache.hit(no);
      if (!page) return this.cache.get(no, PageType.Refcount).then(() => this.allocate(fragments, refs));
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

  freeBlocks(): number {
    return this.layout.dataBlocks - this.counters.usedBlocks - this.pendingFree.size;
  }

  // ------------------------------------------------------------------ fingerprint index

  // A fingerprint is passed as the chunk's digest array and its block's index k (hi = d[2k],
  // lo = d[2k+1]: hash.ts), not as two numbers: half of all u32 halves are past V8's small
  // integer range, and each one passed to a call that is not inlined was a HeapNumber (#12).

  private indexPageNo(hi: number): number {
    return this.layout.indexStart + (hi % this.layout.indexPages);
  }

  /**
   * The location the index holds for fingerprint k, looking only at a cached page (a hint for
   * planning: 0 when absent or not cached). A page found counts as used (hot), as plan's
   * lookup counted it before plan took this hint instead.
   */
  indexPeek(d: Uint32Array, k: number): number {
    const page = this.cache.hit(this.indexPageNo(d[2 * k]!));
    return page ? probe(page, d, k) : 0;
  }

  /**
   * Start reading the index page that holds the fingerprint if it is neither cached nor
   * being read; the read, or null. Called by prepare, outside the metadata mutex, so that
   * plan's lookup and phase 1's insert find the page in memory instead of reading it under
   * the mutex while every other write's metadata steps wait (#12: on a volume whose index
   * does not fit the cache, that was a read per new block). A failed read is left to the
   * real access to report.
   */
  indexWarm(d: Uint32Array, k: number): Promise<unknown> | null {
    const no = this.indexPageNo(d[2 * k]!);
    if (this.cache.peek(no) || this.cache.isLoading(no)) return null;
    return this.cache.readAheadIndex(no, this.layout.indexStart, this.layout.indexStart + this.layout.indexPages);
  }

  /** Linear probing inside one page; entries are never deleted, so an empty slot ends a search. */
  indexLookup(d: Uint32Array, k: number): number | Promise<number> {
    const no = this.indexPageNo(d[2 * k]!);
    const page = this.cache.hit(no);
    if (!page) return this.cache.get(no, PageType.Index).then((p) => probe(p, d, k));
    return probe(page, d, k);
  }

  /** Insert or replace; a full page evicts the entry at the home slot (the index is advisory). */
  indexInsert(d: Uint32Array, k: number, loc: number): Promise<void> | undefined {
    const no = this.indexPageNo(d[2 * k]!);
    const page = this.cache.hit(no);
    if (!page) return this.cache.get(no, PageType.Index).then((p) => this.insertInto(p, d, k, loc));
    this.insertInto(page, d, k, loc);
    return undefined;
  }

  private insertInto(page: Page, d: Uint32Array, k: number, loc: number): void {
    const hi = d[2 * k]!;
    const lo = d[2 * k + 1]!;
    const v = page.view;
    const home = lo % INDEX_ENTRIES;
    let target = home;
    for (let n = 0, i = home; n < INDEX_ENTRIES; n++, i = (i + 1) % INDEX_ENTRIES) {
      const at = PAGE_HEADER + 16 * i;
      const empty = getU64(v, at + 8) === 0;
      if (empty || (v.getUint32(at, true) === hi && v.getUint32(at + 4, true) === lo)) {
        target = i;
        break;
      }
    }
    const at = PAGE_HEADER + 16 * target;
    v.setUint32(at, hi, true);
    v.setUint32(at + 4, lo, true);
    setU64(v, at + 8, loc);
    this.cache.markDirty(page);
  }
}

/** The location an index page holds for fingerprint k of `d`, or 0. */
function probe(page: Page, d: Uint32Array, k: number): number {
  const hi = d[2 * k]!;
  const lo = d[2 * k + 1]!;
  const v = page.view;
  for (let n = 0, i = lo % INDEX_ENTRIES; n < INDEX_ENTRIES; n++, i = (i + 1) % INDEX_ENTRIES) {
    const at = PAGE_HEADER + 16 * i;
    const loc = getU64(v, at + 8);
    if (loc === 0) return 0;
    if (v.getUint32(at, true) === hi && v.getUint32(at + 4, true) === lo) return loc;
  }
  return 0;
}
