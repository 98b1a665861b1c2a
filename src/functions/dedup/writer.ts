/**
 * Write path of a dedup volume, phase 2 (apply) and durability. A chunk is planned
 * (planner.ts) and then applied: raw data to fresh blocks, then references up, map,
 * references down. A commit makes data durable first, then journals every dirty
 * map/refcount page as one transaction; only then are freed blocks reusable.
 */
import type { BlockDevice } from '../../block/types.ts';
import { BLOCK, LocKind, encodeLoc, locPba, sealPage } from './format.ts';
import { Journal, type Counters } from './journal.ts';
import type { PageCache } from './page-cache.ts';
import type { DataStore } from './data-store.ts';
import type { Metadata } from './metadata.ts';
import type { Planner } from './planner.ts';
import { unsafe } from './lock.ts';

export class Writer {
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
  async writeRange(buf: Uint8Array, offset: number): Promise<void> {
    const first = Math.floor(offset / BLOCK);
    const endBlock = Math.ceil((offset + buf.byteLength) / BLOCK);
    let data = buf;
    if (offset % BLOCK !== 0 || buf.byteLength % BLOCK !== 0 || buf.byteOffset % 4 !== 0) {
      data = new Uint8Array((endBlock - first) * BLOCK);
      if (offset % BLOCK !== 0) await this.store.readBlock(first, data.subarray(0, BLOCK));
      if ((offset + buf.byteLength) % BLOCK !== 0) await this.store.readBlock(endBlock - 1, data.subarray(data.length - BLOCK));
      data.set(buf, offset - first * BLOCK);
    }
    for (let lbn = first; lbn < endBlock; lbn += this.chunkBlocks) {
      const n = Math.min(this.chunkBlocks, endBlock - lbn);
      await this.writeChunk(data.subarray((lbn - first) * BLOCK, (lbn - first + n) * BLOCK), lbn);
    }
  }

  private async writeChunk(data: Uint8Array, firstLbn: number): Promise<void> {
    const count = data.byteLength / BLOCK;
    const meta = this.meta;
    await this.makeRoom(count);
    // Blocks freed since the last commit become reusable once the freeing is durable. Commit
    // now if they may be needed: never between planning and applying, since a commit seals
    // the packer and may free a block the plan chose to share.
    if (meta.pendingFree.size > 0 && meta.freeBlocks() < count + 1) await this.commit();
    const blocks = Array.from({ length: count }, (_, i) => data.subarray(i * BLOCK, (i + 1) * BLOCK));
    const plans = await this.planner.plan(blocks);
    this.planner.reserveSpace(plans);

    // Phase 2a: raw data goes to freshly allocated blocks; on failure they are released.
    const locs: number[] = new Array(count).fill(0);
    const rawAt: number[] = [];
    for (let i = 0; i < count; i++) {
      const p = plans[i]!;
      if (p.kind === 'new' && !p.fragment) {
        locs[i] = encodeLoc(LocKind.Raw, await meta.allocate(1, 0));
        rawAt.push(i);
      }
    }
    try {
      await this.store.writeRaw(rawAt.map((i) => ({ pba: locPba(locs[i]!), data: blocks[i]! })));
    } catch (err) {
      await unsafe(async () => {
        for (const i of rawAt) await meta.releaseUnused(locPba(locs[i]!));
      });
      throw err;
    }

    // Phase 2b: references, packing, index and map. References to existing blocks are
    // taken first: sealing the open packer drops its own reference, and a candidate in it
    // must not be freed. Increments come before decrements, so a block that one block of
    // this chunk stops using and another starts using is never freed.
    await unsafe(async () => {
      for (let i = 0; i < count; i++) {
        const p = plans[i]!;
        if (p.kind !== 'dup') continue;
        locs[i] = p.loc;
        await meta.incRef(locPba(p.loc));
      }
      for (let i = 0; i < count; i++) {
        const p = plans[i]!;
        if (p.kind !== 'new') continue;
        if (p.fragment) locs[i] = await this.store.pack(p.fragment);
        else await meta.incRef(locPba(locs[i]!));
        if (p.tag) await meta.indexInsert(p.tag, locs[i]!);
      }
      for (let i = 0; i < count; i++) {
        const p = plans[i]!;
        if (p.kind !== 'sameAs') continue;
        locs[i] = locs[p.index]!;
        await meta.incRef(locPba(locs[i]!));
      }
      const olds: number[] = [];
      for (let i = 0; i < count; i++) {
        const old = await meta.getLoc(firstLbn + i);
        olds.push(old);
        if (old !== locs[i]) await meta.setLoc(firstLbn + i, locs[i]!);
        this.counters.mappedBlocks += (locs[i] !== 0 ? 1 : 0) - (old !== 0 ? 1 : 0);
      }
      for (const old of olds) if (old !== 0 && !meta.locProblem(old)) await meta.decRef(locPba(old));
    });
  }

  /** Unmap whole blocks [first, last): they read as zeroes. */
  async unmap(first: number, last: number): Promise<void> {
    const meta = this.meta;
    for (let lbn = first; lbn < last; lbn += this.chunkBlocks) {
      const end = Math.min(last, lbn + this.chunkBlocks);
      await this.makeRoom(end - lbn);
      await unsafe(async () => {
        for (let b = lbn; b < end; b++) {
          const old = await meta.getLoc(b);
          if (old === 0) continue;
          await meta.setLoc(b, 0);
          this.counters.mappedBlocks--;
          if (!meta.locProblem(old)) await meta.decRef(locPba(old));
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
  async commit(): Promise<void> {
    await unsafe(() => this.store.settle());
    const pages = this.cache.dirtyPages();
    if (pages.length === 0) return;
    await unsafe(async () => {
      await this.backing.flush(); // data before the mapping that points at it
      for (const p of pages) sealPage(p.buf);
      await this.journal.commit(pages, { ...this.counters });
    });
    this.cache.markCommitted(pages);
    this.meta.pendingFree.clear(); // the freeing is durable: the blocks may be reused
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
