/**
 * LRU cache of 4 KiB metadata pages read from the backing volume (map, refcount and
 * index pages), bounded by a page count, as dm-vdo's block map cache is. Page states:
 *   clean      identical to the page on disk
 *   dirty      changed since the last journal commit: must not reach its home location
 *              before it is committed (write-ahead rule), so it is never evicted
 *   unwritten  committed to the journal (or an index page, which is advisory and not
 *              journaled) but not yet written home: written on eviction or checkpoint
 */
import type { BlockDevice } from '../../block/types.ts';
import { BLOCK, PageType, pageProblem, initPage, sealPage, viewOf } from './format.ts';
import { corruptMetadata } from './errors.ts';

export type PageState = 'clean' | 'dirty' | 'unwritten';

export interface Page {
  readonly no: number;
  readonly type: PageType;
  readonly buf: Uint8Array;
  readonly view: DataView;
  state: PageState;
  /** Used since it last reached the cold end of the LRU (second-chance bit: hits cost no Map update). */
  hot: boolean;
  /** Bumped by every change, so a write-back can tell whether the page changed meanwhile. */
  gen: number;
}

/** Index pages one read-ahead covers at most (64 KiB). */
const READ_AHEAD = 16;
/** Pages one write-back pwrite covers at most (256 KiB). */
const WRITE_RUN = 64;

const TYPE_NAME: Record<PageType, string> = {
  [PageType.Map]: 'map page',
  [PageType.Refcount]: 'refcount page',
  [PageType.Index]: 'index page',
};

export class PageCache {
  private readonly pages = new Map<number, Page>(); // insertion order = LRU order
  private dirty = new Set<Page>();
  /** Dirty pages per type (checked for every write chunk: no scan of the dirty set). */
  private readonly dirtyByType = [0, 0, 0, 0];
  /** Pages being read: a second request for one waits for the same read (never two copies). */
  private readonly loading = new Map<number, Promise<Page>>();
  hits = 0;
  misses = 0;

  constructor(
    private readonly dev: BlockDevice,
    readonly capacity: number,
    private readonly log: (msg: string) => void,
  ) {}

  get size(): number {
    return this.pages.size;
  }
  get dirtyCount(): number {
    return this.dirty.size;
  }

  /** Dirty pages of one type. */
  dirtyOfType(type: PageType): number {
    return this.dirtyByType[type] ?? 0;
  }

  /** Whether the page is cached and changed since the last commit. */
  isDirty(no: number): boolean {
    return this.pages.get(no)?.state === 'dirty';
  }

  /** The page if it is cached, without waiting for a read (a hint: no hit counted). */
  peek(no: number): Page | undefined {
    return this.pages.get(no);
  }

  /** Whether the page is being read (a `get` would join that read). */
  isLoading(no: number): boolean {
    return this.loading.has(no);
  }

  /** The page if it is cached, counted as a hit (the synchronous fast path of `get`). */
  hit(no: number): Page | undefined {
    const p = this.pages.get(no);
    if (p) {
      this.hits++;
      p.hot = true;
    }
    return p;
  }

  get(no: number, type: PageType): Promise<Page> {
    const hit = this.pages.get(no);
    if (hit) {
      this.hits++;
      hit.hot = true;
      return Promise.resolve(hit);
    }
    let load = this.loading.get(no);
    if (!load) {
      this.misses++;
      load = this.load(no, type).finally(() => this.loading.delete(no));
      this.loading.set(no, load);
    }
    return load;
  }

  private async load(no: number, type: PageType): Promise<Page> {
    const buf = new Uint8Array(BLOCK);
    await this.dev.pread(buf, no * BLOCK);
    return this.admit(no, type, buf);
  }

  /** A page just read: checked, and cached (a corrupt index page is reset, any other is an error). */
  private admit(no: number, type: PageType, buf: Uint8Array): Page {
    const page: Page = { no, type, buf, view: viewOf(buf), state: 'clean', hot: false, gen: 0 };
    const problem = pageProblem(buf, type, no);
    if (problem) {
      if (type !== PageType.Index) {
        const err = corruptMetadata(TYPE_NAME[type], no, problem);
        this.log(err.message);
        throw err;
      }
      // The index only gives hints that are byte-verified before use: losing a page
      // costs some deduplication, never data, so it is reset (and said so).
      this.log(`dedup: index page at backing block ${no} is corrupt (${problem}); resetting it`);
      initPage(buf, type, no);
      page.state = 'unwritten';
    }
    this.pages.set(no, page);
    return page;
  }

  /**
   * Start reading index page `no` together with its neighbours in [first, end) that are
   * neither cached nor being read, in one pread of at most READ_AHEAD pages (#12: a fresh
   * volume read its ~200 index pages one pread each, in the first seconds of a sequential
   * write, since fingerprints land on every page at random). Only while the cache has room
   * for the whole run, so a read-ahead never evicts a page in use; otherwise the page alone.
   * Index pages only: they are advisory, so a corrupt neighbour is reset like any index page.
   * Each page gets its own 4 KiB (a view of the run's buffer would keep all of it alive).
   * Resolves (never rejects) when the run is in; `get` on any page of it joins the read.
   */
  readAheadIndex(no: number, first: number, end: number): Promise<unknown> {
    if (this.pages.has(no) || this.loading.has(no)) return Promise.resolve();
    const room = this.capacity - this.pages.size - this.loading.size;
    if (room < READ_AHEAD) return this.get(no, PageType.Index).catch(() => undefined);
    // The aligned group of READ_AHEAD pages around `no`, cut at the index's ends and at the
    // first page (on either side of `no`) already cached or being read.
    const base = first + Math.floor((no - first) / READ_AHEAD) * READ_AHEAD;
    let lo = no;
    while (lo > base && lo - 1 >= first && !this.pages.has(lo - 1) && !this.loading.has(lo - 1)) lo--;
    let hi = no + 1;
    while (hi < base + READ_AHEAD && hi < end && !this.pages.has(hi) && !this.loading.has(hi)) hi++;
    const n = hi - lo;
    this.misses++;
    const run = new Uint8Array(n * BLOCK);
    const read = this.dev.pread(run, lo * BLOCK);
    for (let k = 0; k < n; k++) {
      const pageNo = lo + k;
      const load = read
        .then(() => this.admit(pageNo, PageType.Index, run.slice(k * BLOCK, (k + 1) * BLOCK)))
        .finally(() => this.loading.delete(pageNo));
      load.catch(() => {}); // a failed read is reported to whoever asks for the page (get)
      this.loading.set(pageNo, load);
    }
    return read.catch(() => undefined);
  }

  markDirty(page: Page): void {
    page.gen++;
    if (page.type === PageType.Index) {
      if (page.state === 'clean') page.state = 'unwritten';
      return;
    }
    if (page.state !== 'dirty') {
      page.state = 'dirty';
      this.dirty.add(page);
      this.dirtyByType[page.type]!++;
    }
  }

  /** The pages the next journal commit must carry. */
  dirtyPages(): Page[] {
    return [...this.dirty];
  }

  /** After the journal commit is durable, the pages may go home whenever convenient. */
  markCommitted(pages: Page[]): void {
    for (const p of pages) {
      if (this.dirty.delete(p)) this.dirtyByType[p.type]!--;
      p.state = 'unwritten';
    }
  }

  /**
   * Write every committed-but-not-home page home (the caller flushes), one pwrite per run of
   * consecutive page numbers (at most WRITE_RUN pages) instead of one per page (#12: a
   * checkpoint wrote its few hundred map, refcount and index pages a syscall each, on the
   * request thread's time). Copies go out, as writeHome's do; a torn run is no worse than
   * torn pages: every page in it has its image in the live journal until the checkpoint.
   */
  async writeBack(): Promise<void> {
    const out: Page[] = [];
    for (const p of this.pages.values()) if (p.state === 'unwritten') out.push(p);
    out.sort((a, b) => a.no - b.no);
    for (let i = 0; i < out.length; ) {
      let j = i + 1;
      while (j < out.length && j - i < WRITE_RUN && out[j]!.no === out[i]!.no + (j - i)) j++;
      if (j - i === 1) await this.writeHome(out[i]!);
      else {
        const run = new Uint8Array((j - i) * BLOCK);
        const gens: number[] = [];
        for (let k = i; k < j; k++) {
          const p = out[k]!;
          gens.push(p.gen);
          const copy = run.subarray((k - i) * BLOCK, (k - i + 1) * BLOCK);
          copy.set(p.buf);
          sealPage(copy);
        }
        await this.dev.pwrite(run, out[i]!.no * BLOCK);
        for (let k = i; k < j; k++) {
          const p = out[k]!;
          if (p.gen === gens[k - i] && p.state === 'unwritten') p.state = 'clean';
        }
      }
      i = j;
    }
  }

  /**
   * Evict until the cache is within capacity, oldest first; a page used since it was
   * last looked at gets a second chance (moves to the young end); dirty pages stay.
   */
  /** Whether trim() has anything to do (checked per request, so most requests skip the call). */
  get overCapacity(): boolean {
    return this.pages.size > this.capacity;
  }

  async trim(): Promise<void> {
    if (this.pages.size <= this.capacity) return;
    for (let pass = 0; pass < 2 && this.pages.size > this.capacity; pass++) {
      for (const p of [...this.pages.values()]) {
        if (this.pages.size <= this.capacity) break;
        if (p.state === 'dirty') continue;
        if (p.hot) {
          p.hot = false;
          this.pages.delete(p.no);
          this.pages.set(p.no, p);
          continue;
        }
        if (p.state === 'unwritten') await this.writeHome(p);
        // A write may have changed the page while it went home: then it stays.
        if (p.state !== 'clean') continue;
        if (this.pages.get(p.no) === p) this.pages.delete(p.no);
      }
    }
  }

  /** Forget everything (after a failure, so nothing unsafe is written later). */
  drop(): void {
    this.pages.clear();
    this.dirty.clear();
    this.dirtyByType.fill(0);
  }

  /**
   * Write a committed page home. A copy goes out, so a write that changes the page while
   * the pwrite is in flight can neither tear it nor be mistaken for clean.
   */
  private async writeHome(p: Page): Promise<void> {
    const gen = p.gen;
    const copy = p.buf.slice();
    sealPage(copy);
    await this.dev.pwrite(copy, p.no * BLOCK);
    if (p.gen === gen && p.state === 'unwritten') p.state = 'clean';
  }
}
