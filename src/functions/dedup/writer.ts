/**
 * Write path of a dedup volume, and durability.
 *
 * A write holds its logical range (RangeLock: overlapping requests stay in order), then
 * per chunk of blocks:
 *   prepare   zero test, fingerprints, compression in the worker pool: no metadata, so
 *             chunks of different requests overlap here
 *   window    (ApplyGate, shared by concurrent writes; a commit waits for none open)
 *     phase 1 under the metadata mutex: plan (planner.ts), ENOSPC, then every reference
 *             goes up: raw blocks are allocated with their reference (allocation runs
 *             ahead of the data) and indexed, shared blocks referenced, fragments packed
 *     data    raw blocks are written to their fresh blocks, concurrently with other
 *             writes' phases; a shared block still being written is waited for
 *     phase 2 under the mutex: the map, then references of the replaced blocks down
 * Increments before decrements, and a commit never inside a window, so a commit never
 * journals half a write and a block still in use is never freed. A raw write that fails
 * takes its references back (the volume goes on); a failure halfway through a metadata
 * step stops the volume (unsafe), and reopening replays the journal.
 *
 * A commit (flush, FUA) makes data durable first, then journals every dirty map/refcount
 * page as one transaction; only then are freed blocks reusable. Commits are grouped: every
 * flush that arrives while one runs is served by the next one, a single transaction.
 */
import type { BlockDevice } from '../../block/types.ts';
import { noSpace } from '../../util/errors.ts';
import { BLOCK, LocKind, PageType, encodeLoc, locPba, sealPage } from './format.ts';
import { Journal, type Counters } from './journal.ts';
import type { PageCache } from './page-cache.ts';
import type { DataStore, RawClaim } from './data-store.ts';
import type { Metadata } from './metadata.ts';
import { DUP, NEW, SAME_AS, type Plans, type Planner, type Prepared } from './planner.ts';
import { ApplyGate, Mutex, RangeLock, unsafe, unsafeError } from './lock.ts';
import { volumeBroken } from './errors.ts';

type Outcome = 'done' | 'space' | 'pages';

/** Chunks of one request in flight at once (bounds what one large request holds: prepared fragments, claims). */
const CHUNK_WINDOW = 4;

/** 4 KiB views of a chunk. */
function blocksOf(data: Uint8Array): Uint8Array[] {
  const n = data.byteLength / BLOCK;
  const blocks: Uint8Array[] = new Array(n);
  for (let i = 0; i < n; i++) blocks[i] = data.subarray(i * BLOCK, (i + 1) * BLOCK);
  return blocks;
}

const isPrepared = (p: Prepared | Promise<Prepared>): p is Prepared => !(p instanceof Promise);

export class Writer {
  readonly ranges = new RangeLock();
  readonly gate = new ApplyGate();
  private readonly mutex = new Mutex();
  /** Phase 2's list of replaced locations (phase 2 runs under the mutex: one at a time). */
  private readonly olds: number[] = [];
  /** Dirty pages that windows past phase 1 may still add in phase 2 (map pages, replaced blocks' refcount pages). */
  private reservedPages = 0;
  /** Group commit: flushes asked for, flushes a finished commit covers, the commit running. */
  private wantGen = 0;
  private doneGen = 0;
  private running: Promise<void> | null = null;
  /** Flushes served by a commit another flush started (group commit). */
  groupedFlushes = 0;
  /** Set when the volume stopped: no metadata step or commit may run after it. */
  stopped: unknown = null;

  constructor(
    private readonly backing: BlockDevice,
    private readonly meta: Metadata,
    private readonly store: DataStore,
    private readonly planner: Planner,
    private readonly cache: PageCache,
    private readonly journal: Journal,
    private readonly counters: Counters,
    /** Pages one journal commit may carry. */
    private readonly dirtyLimit: number,
    /** Blocks per write chunk, so a chunk always fits in a commit. */
    readonly chunkBlocks: number,
  ) {}

  /** Write any byte range: partial blocks at the edges are read, merged and written whole. */
  writeRange(buf: Uint8Array, offset: number): Promise<void> {
    // The common case, whole blocks in one chunk, adds no async frame of its own.
    if (buf.byteLength > 0 && offset % BLOCK === 0 && buf.byteLength % BLOCK === 0 && buf.byteOffset % 4 === 0 && buf.byteLength <= this.chunkBlocks * BLOCK) {
      const prepared = this.planner.prepare(buf, blocksOf(buf));
      return isPrepared(prepared) ? this.writeChunk(prepared, offset / BLOCK) : prepared.then((p) => this.writeChunk(p, offset / BLOCK));
    }
    return this.writeRangeAny(buf, offset);
  }

  private async writeRangeAny(buf: Uint8Array, offset: number): Promise<void> {
    const first = Math.floor(offset / BLOCK);
    const endBlock = Math.ceil((offset + buf.byteLength) / BLOCK);
    let data = buf;
    if (offset % BLOCK !== 0 || buf.byteLength % BLOCK !== 0 || buf.byteOffset % 4 !== 0) {
      data = new Uint8Array((endBlock - first) * BLOCK);
      if (offset % BLOCK !== 0) await this.store.readBlock(first, data.subarray(0, BLOCK));
      if ((offset + buf.byteLength) % BLOCK !== 0) await this.store.readBlock(endBlock - 1, data.subarray(data.length - BLOCK));
      data.set(buf, offset - first * BLOCK);
    }
    // The chunks of one request cover different blocks, so up to CHUNK_WINDOW of them are
    // in flight at once, as different requests' chunks are: one chunk's hashing and
    // compression (in the pool) overlap another's metadata steps and data write, and a
    // large write keeps several backing writes in flight.
    const chunks = Math.ceil((endBlock - first) / this.chunkBlocks);
    if (chunks === 1) {
      let prepared = this.planner.prepare(data, blocksOf(data));
      if (!isPrepared(prepared)) prepared = await prepared;
      return this.writeChunk(prepared, first);
    }
    let nextChunk = 0;
    let failure: unknown = null;
    const lane = async (): Promise<void> => {
      while (nextChunk < chunks && failure === null) {
        const lbn = first + nextChunk++ * this.chunkBlocks;
        const view = data.subarray((lbn - first) * BLOCK, (Math.min(endBlock, lbn + this.chunkBlocks) - first) * BLOCK);
        try {
          let prepared = this.planner.prepare(view, blocksOf(view));
          if (!isPrepared(prepared)) prepared = await prepared;
          await this.writeChunk(prepared, lbn);
        } catch (err) {
          failure ??= err;
        }
      }
    };
    const lanes: Promise<void>[] = [];
    for (let k = 0; k < Math.min(CHUNK_WINDOW, chunks); k++) lanes.push(lane());
    await Promise.all(lanes);
    if (failure !== null) throw failure;
  }

  /**
   * One chunk, start to end, in one async frame (#12: the path used to be a dozen nested
   * async calls per 4 KiB write, ~12 KB of heap per write and the GC it drives). Every
   * metadata accessor answers synchronously from cached pages, so an `await` happens only
   * where something is really pending: the gate or the mutex held, a page read, the data
   * write. Retries (a commit first) loop here.
   */
  private async writeChunk(prepared: Prepared, firstLbn: number): Promise<void> {
    const meta = this.meta;
    const store = this.store;
    const count = prepared.blocks.length;
    let retried = false;
    for (;;) {
      const entering = this.gate.enter();
      if (entering) await entering;
      let outcome: Outcome = 'done';
      let reserved = 0;
      let plans: Plans | null = null;
      let locs: number[] | null = null;
      let claim: RawClaim | null = null;
      let waitFor: Promise<void>[] | null = null;
      try {
        // ---- phase 1, under the metadata mutex (taken without a Promise when free)
        const locking = this.mutex.lock();
        if (locking) await locking;
        try {
          this.alive();
          if (!this.fits(this.worstPages(firstLbn, count))) outcome = 'pages';
          else {
            let planned = this.planner.plan(prepared);
            if (planned instanceof Promise) planned = await planned;
            plans = planned;
            const kind = plans.kind;
            const arg = plans.arg;
            const fragments = prepared.fragments;
            const need = this.planner.spaceNeeded(plans, prepared);
            if (need > meta.freeBlocks()) {
              if (!retried && meta.pendingFree.size > 0) outcome = 'space';
              else throw noSpace(`dedup volume is full: the write needs ${need} data block(s), ${meta.freeBlocks()} free`);
            } else {
              try {
                // Every reference the chunk will hold, before any data is written: fresh raw
                // blocks (allocated with their reference), then shared blocks (before packing:
                // sealing the open packer drops its own reference, and a candidate in it must
                // not be freed), then fragments, then duplicates inside the chunk.
                locs = new Array<number>(count).fill(0);
                let raw: Array<{ pba: number; data: Uint8Array }> | null = null;
                for (let i = 0; i < count; i++) {
                  if (kind[i] === NEW && !fragments[i]) {
                    let pba = meta.allocate(1, 1);
                    if (typeof pba !== 'number') pba = await pba;
                    locs[i] = encodeLoc(LocKind.Raw, pba);
                    (raw ??= []).push({ pba, data: prepared.blocks[i]! });
                  }
                }
                if (raw) claim = store.claimRaw(raw); // visible to concurrent writes before the mutex is released
                for (let i = 0; i < count; i++) {
                  if (kind[i] !== DUP) continue;
                  const loc = arg[i]!;
                  locs[i] = loc;
                  const w = meta.incRef(locPba(loc));
                  if (w) await w;
                  const f = store.inflight.get(locPba(loc));
                  if (f) (waitFor ??= []).push(f.done);
                }
                for (let i = 0; i < count; i++) {
                  if (kind[i] !== NEW) continue;
                  const fragment = fragments[i];
                  if (fragment) {
                    let loc = store.pack(fragment);
                    if (typeof loc !== 'number') loc = await loc;
                    locs[i] = loc; // the fragment is readable at once (packer, sealing)
                  }
                  // Raw blocks go in the index now, before their data lands, so concurrent writes
                  // of the same bytes share them (verified against DataStore.inflight).
                  const d = prepared.digests;
                  if (d) {
                    const w = meta.indexInsert(d, i, locs[i]!);
                    if (w) await w;
                  }
                }
                for (let i = 0; i < count; i++) {
                  if (kind[i] !== SAME_AS) continue;
                  locs[i] = locs[arg[i]!]!;
                  const w = meta.incRef(locPba(locs[i]!));
                  if (w) await w;
                }
                // The packed blocks this chunk sealed are written with its raw blocks (writeData, below).
                const rest = this.phase2Pages(firstLbn, count);
                reserved = typeof rest === 'number' ? rest : await rest;
                this.reservedPages += reserved;
              } catch (err) {
                throw unsafeError(err);
              }
            }
          }
        } finally {
          this.mutex.unlock();
        }
        if (outcome === 'done') {
          // ---- data: our raw blocks, and any block we share whose write (another request's) is still in flight
          try {
            const writing = store.writeData(claim); // raw blocks and sealed packed blocks, runs merged
            if (waitFor) await Promise.all(writing ? [writing, ...waitFor] : waitFor);
            else if (writing) await writing;
          } catch (err) {
            await this.takeBack(locs!, claim);
            throw err;
          }
          // ---- phase 2, under the mutex: the map, then the replaced blocks' references down
          const locking2 = this.mutex.lock();
          if (locking2) await locking2;
          try {
            this.alive();
            const olds = this.olds;
            olds.length = 0;
            for (let i = 0; i < count; i++) {
              let old = meta.getLoc(firstLbn + i);
              if (typeof old !== 'number') old = await old;
              olds.push(old);
              if (old !== locs![i]) {
                const w = meta.setLoc(firstLbn + i, locs![i]!);
                if (w) await w;
              }
              this.counters.mappedBlocks += (locs![i] !== 0 ? 1 : 0) - (old !== 0 ? 1 : 0);
            }
            for (let i = 0; i < olds.length; i++) {
              const old = olds[i]!;
              if (old === 0 || meta.locProblem(old)) continue;
              const w = meta.decRef(locPba(old));
              if (w) await w;
            }
          } catch (err) {
            throw unsafeError(err);
          } finally {
            this.mutex.unlock();
          }
          this.planner.count(plans!, prepared);
        }
      } finally {
        this.reservedPages -= reserved;
        this.gate.leave();
      }
      if (outcome === 'done') return;
      // 'space': blocks freed since the last commit become reusable once the freeing is durable.
      // 'pages': the chunk's pages might not fit in the next transaction.
      if (outcome === 'space') retried = true;
      await this.commitNow();
    }
  }

  /**
   * A raw write failed: nothing maps the new blocks, and a block whose write failed is
   * refused to everyone (DataStore.inflight); take back every reference this chunk took.
   */
  private takeBack(locs: number[], claim: RawClaim | null): Promise<void> {
    const meta = this.meta;
    const rawPbas = claim ? claim.items.map((it) => it.pba) : [];
    return this.mutex.run(() =>
      unsafe(async () => {
        for (let i = 0; i < locs.length; i++) if (locs[i] !== 0) await meta.decRef(locPba(locs[i]!));
        this.store.forgetFailed(rawPbas);
      }),
    );
  }

  /**
   * Whether a step that may dirty `pages` more pages fits in the next transaction,
   * counting what open windows may still add. Checked under the mutex, where the dirty
   * count is exact.
   */
  private fits(pages: number): boolean {
    return this.cache.dirtyCount + this.reservedPages + pages <= this.dirtyLimit;
  }

  /**
   * Pages a chunk over [first, first+count) may newly dirty: its map pages that are not
   * dirty yet, and a refcount page per new and per replaced block plus the packers' (two),
   * but never more refcount pages than are not dirty yet.
   */
  private worstPages(first: number, count: number): number {
    let map = 0;
    for (let p = this.meta.mapPageOf(first); p <= this.meta.mapPageOf(first + count - 1); p++) if (!this.cache.isDirty(p)) map++;
    return map + Math.min(2 * count + 2, this.meta.layout.refPages - this.cache.dirtyOfType(PageType.Refcount));
  }

  /** Pages phase 2 will dirty that are not dirty yet: the map pages of the range, the replaced blocks' refcount pages. */
  private phase2Pages(firstLbn: number, count: number, from = 0, n = 0, refPages: number[] | null = null): number | Promise<number> {
    const meta = this.meta;
    let lastMap = from > 0 ? meta.mapPageOf(firstLbn + from - 1) : -1;
    for (let i = from; i < count; i++) {
      const old = meta.getLoc(firstLbn + i);
      if (typeof old !== 'number') {
        // A map page to read (rare: the chunk's map page was evicted): go on from this block once it is in.
        const at = i;
        const counted = n;
        const pages = refPages;
        return old.then(() => this.phase2Pages(firstLbn, count, at, counted, pages));
      }
      const mapNo = meta.mapPageOf(firstLbn + i);
      if (mapNo !== lastMap) {
        lastMap = mapNo;
        if (!this.cache.isDirty(mapNo)) n++;
      }
      if (old === 0 || meta.locProblem(old)) continue;
      const refNo = meta.refPageOf(locPba(old));
      if (this.cache.isDirty(refNo)) continue;
      refPages ??= [];
      if (!refPages.includes(refNo)) refPages.push(refNo); // a handful per chunk at most
    }
    return n + (refPages?.length ?? 0);
  }

  /** Unmap whole blocks [first, last): they read as zeroes. */
  async unmap(first: number, last: number): Promise<void> {
    const meta = this.meta;
    for (let lbn = first; lbn < last; ) {
      const end = Math.min(last, lbn + this.chunkBlocks);
      const entering = this.gate.enter();
      if (entering) await entering;
      let done: boolean;
      try {
        done = await this.mutex.run(async () => {
          this.alive();
          if (!this.fits(this.worstPages(lbn, end - lbn))) return false;
          await unsafe(async () => {
            for (let b = lbn; b < end; b++) {
              const old = await meta.getLoc(b);
              if (old === 0) continue;
              await meta.setLoc(b, 0);
              this.counters.mappedBlocks--;
              if (!meta.locProblem(old)) await meta.decRef(locPba(old));
            }
          });
          return true;
        });
      } finally {
        this.gate.leave();
      }
      if (done) lbn = end;
      else await this.commitNow();
    }
  }

  // ------------------------------------------------------------------ windows and commits

  /** Refuse to touch metadata once the volume stopped (a concurrent step failed halfway). */
  private alive(): void {
    if (this.stopped) throw volumeBroken(this.stopped);
  }

  /** Commit now (no window open meanwhile). */
  commitNow(): Promise<void> {
    return this.gate.exclusive(() => this.commit());
  }

  /**
   * Make every write finished before this call durable. Flushes that arrive while a
   * commit runs wait for the next one, which serves them all (group commit).
   */
  async sync(): Promise<void> {
    const mine = ++this.wantGen;
    while (this.doneGen < mine) {
      if (!this.running) {
        const covers = this.wantGen;
        if (covers - this.doneGen > 1) this.groupedFlushes += covers - this.doneGen - 1;
        this.running = this.commitNow().then(
          () => {
            this.doneGen = Math.max(this.doneGen, covers);
            this.running = null;
          },
          (err: unknown) => {
            this.running = null;
            throw err;
          },
        );
      }
      await this.running;
    }
  }

  /** Data first, then one atomic journal transaction. Runs with no window open. */
  async commit(): Promise<void> {
    this.alive();
    await unsafe(() => this.store.settle());
    const pages = this.cache.dirtyPages();
    if (pages.length === 0) return;
    await unsafe(async () => {
      await this.backing.flush(); // data before the mapping that points at it
      for (const p of pages) sealPage(p.buf);
      await this.journal.commit(pages, { ...this.counters });
    });
    this.cache.markCommitted(pages);
    this.meta.freesDurable(); // the freeing is durable: the blocks may be reused
    if (this.journal.free < Journal.worstCase(this.dirtyLimit)) await this.checkpoint();
  }

  /** Write committed pages home and empty the journal. Needs no dirty pages (right after a commit). */
  async checkpoint(): Promise<void> {
    await unsafe(async () => {
      await this.cache.writeBack();
      await this.backing.flush();
      await this.journal.checkpoint({ ...this.counters });
    });
  }
}
