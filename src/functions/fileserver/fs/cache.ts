import type { BlockDevice } from '../../../block/types.ts';
import { BLOCK_SIZE } from './superblock.ts';

/**
 * A metadata block held in memory. The buffer object is stable for the life of
 * the entry: handles modify it in place, the journal snapshots it at commit.
 */
export interface CacheEntry {
  readonly block: number;
  buf: Uint8Array;
  /** Open journal handles using this block: never evicted while > 0. */
  pins: number;
  /** Modified in the running transaction (not yet in the journal). */
  txDirty: boolean;
  /** Committed to the journal but not yet written to its home location. */
  unCheckpointed: boolean;
  /** Used since the eviction scan last passed it (second-chance LRU: hits cost no reordering). */
  referenced: boolean;
}

/**
 * Bounded cache of metadata blocks (bitmaps, inode table, indirect blocks,
 * directory nodes), approximately least recently used evicted first (second chance). Only clean, unpinned
 * blocks are evicted: a dirty block's newest content exists nowhere else.
 */
export class MetaCache {
  private readonly entries = new Map<number, CacheEntry>();
  private readonly loading = new Map<number, Promise<CacheEntry>>();
  hits = 0;
  misses = 0;

  constructor(
    private readonly device: BlockDevice,
    private readonly capacity: number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  peek(block: number): CacheEntry | undefined {
    return this.entries.get(block);
  }

  /**
   * The block's entry, read from the device on a miss (concurrent misses share
   * one read). A hit returns the entry itself, not a promise: most metadata
   * accesses hit, and an `await` of a plain value is far cheaper than an async call.
   */
  load(block: number): CacheEntry | Promise<CacheEntry> {
    const hit = this.entries.get(block);
    if (hit) {
      this.hits++;
      hit.referenced = true;
      return hit;
    }
    return this.miss(block);
  }

  private async miss(block: number): Promise<CacheEntry> {
    const pending = this.loading.get(block);
    if (pending) return pending;
    this.misses++;
    const p = (async () => {
      const buf = new Uint8Array(BLOCK_SIZE);
      await this.device.pread(buf, block * BLOCK_SIZE);
      // A block created (newly allocated) while we were reading wins over the stale read.
      const raced = this.entries.get(block);
      if (raced) return raced;
      return this.insert(block, buf);
    })();
    this.loading.set(block, p);
    try {
      return await p;
    } finally {
      this.loading.delete(block);
    }
  }

  /** Install a fresh zeroed buffer for a block just allocated as metadata (its old content is irrelevant). */
  create(block: number): CacheEntry {
    const existing = this.entries.get(block);
    if (existing) {
      existing.buf.fill(0);
      return existing;
    }
    return this.insert(block, new Uint8Array(BLOCK_SIZE));
  }

  private insert(block: number, buf: Uint8Array): CacheEntry {
    const e: CacheEntry = { block, buf, pins: 0, txDirty: false, unCheckpointed: false, referenced: false };
    this.entries.set(block, e);
    if (this.entries.size > this.capacity) this.evict();
    return e;
  }

  private evict(): void {
    let excess = this.entries.size - this.capacity;
    // Bounded work per insert (CLOCK): if everything is hot, the cache overshoots a little for now.
    let budget = 64;
    for (const [block, e] of this.entries) {
      if (excess <= 0 || budget-- <= 0) break;
      this.entries.delete(block);
      if (e.pins > 0 || e.txDirty || e.unCheckpointed || e.referenced) {
        // Second chance: move to the young end.
        e.referenced = false;
        this.entries.set(block, e);
        continue;
      }
      excess--;
    }
  }
}
