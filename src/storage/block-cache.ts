/**
 * The controller's read cache: fixed 4 KiB slots in one slab, shared by every
 * volume, CLOCK replacement (one reference bit per slot; no list surgery on the
 * hit path). Keys are (volume id, block number) packed into one double.
 *
 * The cache only holds data that is on disk (the write path is write-through),
 * so eviction never writes and a crash never loses anything held here.
 * Consistency with in-flight writes is the volume's job (see volume.ts).
 */
import { allocPageAligned } from './aligned.ts';

export const BLOCK = 4096;
const BLOCK_KEY_BITS = 2 ** 36; // 2^36 blocks = 256 TiB per volume

export const cacheKey = (volumeId: number, block: number): number => volumeId * BLOCK_KEY_BITS + block;

export interface CacheStats {
  capacityBlocks: number;
  usedBlocks: number;
  hits: number;
  misses: number;
  inserts: number;
  evictions: number;
}

/** slotKey values that are not keys: a free slot, and one being filled by a read in flight. */
const FREE = -1;
const FILLING = -2;

export class BlockCache {
  /** The slots; page-aligned (when `direct`) so O_DIRECT reads can land in a slot. */
  readonly slab: Buffer;
  readonly direct: boolean;
  private readonly slotKey: Float64Array;
  private readonly referenced: Uint8Array;
  private readonly index = new Map<number, number>();
  private hand = 0;
  private readonly views: Array<Buffer | undefined> = [];
  private used = 0;
  private filling = 0;
  readonly capacity: number;
  readonly counters = { hits: 0, misses: 0, inserts: 0, evictions: 0 };

  constructor(capacityBytes: number) {
    this.capacity = Math.max(0, Math.floor(capacityBytes / BLOCK));
    const slab = allocPageAligned(this.capacity * BLOCK);
    this.slab = slab.buf;
    this.direct = slab.aligned;
    this.slotKey = new Float64Array(this.capacity).fill(FREE);
    this.referenced = new Uint8Array(this.capacity);
  }

  /** The cached bytes of a block (a view valid until the next insert), or undefined. */
  get(key: number): Buffer | undefined {
    const slot = this.lookup(key);
    return slot < 0 ? undefined : this.slab.subarray(slot * BLOCK, slot * BLOCK + BLOCK);
  }

  /** A view of one slot, made once per slot (copying whole blocks then allocates nothing). */
  slotView(slot: number): Buffer {
    let v = this.views[slot];
    if (v === undefined) this.views[slot] = v = this.slab.subarray(slot * BLOCK, slot * BLOCK + BLOCK);
    return v;
  }

  /** The slot holding a block (its bytes are slab[slot*BLOCK..+BLOCK], valid until the next insert), or -1: no view allocated. */
  lookup(key: number): number {
    const slot = this.index.get(key);
    if (slot === undefined) {
      this.counters.misses++;
      return -1;
    }
    this.counters.hits++;
    this.referenced[slot] = 1;
    return slot;
  }

  /**
   * Claim a slot for a block about to be read from disk: the read lands in
   * slab[slot*BLOCK..] and then publish() or abandon() is called. The slot is
   * invisible to get() and never evicted meanwhile. -1 when no slot can be
   * spared (the caller reads elsewhere).
   */
  reserve(): number {
    if (this.capacity === 0 || this.filling >= this.capacity >> 1) return -1;
    const slot = this.victim();
    this.slotKey[slot] = FILLING;
    this.referenced[slot] = 0;
    this.filling++;
    return slot;
  }

  /** The reserved slot now holds `key`'s data (unless the block was cached meanwhile). */
  publish(slot: number, key: number): void {
    this.filling--;
    if (this.index.has(key)) {
      this.release(slot);
      return;
    }
    this.slotKey[slot] = key;
    this.index.set(key, slot);
    this.referenced[slot] = 1;
    this.counters.inserts++;
  }

  /** Give back a reserved slot without caching it (the read failed or went stale). */
  abandon(slot: number): void {
    this.filling--;
    this.release(slot);
  }

  private release(slot: number): void {
    this.slotKey[slot] = FREE;
    this.referenced[slot] = 0;
    this.used--;
  }

  /** Store a copy of one block (4096 bytes of `src` at `srcOffset`). */
  put(key: number, src: Uint8Array, srcOffset = 0): void {
    if (this.capacity === 0) return;
    let slot = this.index.get(key);
    if (slot === undefined) {
      slot = this.victim();
      this.slotKey[slot] = key;
      this.index.set(key, slot);
      this.counters.inserts++;
    }
    this.referenced[slot] = 1;
    this.slab.set(src.subarray(srcOffset, srcOffset + BLOCK), slot * BLOCK);
  }

  /** Overwrite a block only if it is cached (writes do not pollute the cache with cold data). */
  update(key: number, src: Uint8Array, srcOffset = 0): void {
    const slot = this.index.get(key);
    if (slot !== undefined) this.slab.set(src.subarray(srcOffset, srcOffset + BLOCK), slot * BLOCK);
  }

  invalidate(key: number): void {
    const slot = this.index.get(key);
    if (slot === undefined) return;
    this.index.delete(key);
    this.release(slot);
  }

  /** Drop every block of a volume in [first, first+count), cheaply for large ranges. */
  invalidateRange(volumeId: number, first: number, count: number): void {
    if (count <= this.index.size) {
      for (let b = first; b < first + count; b++) this.invalidate(cacheKey(volumeId, b));
      return;
    }
    const lo = cacheKey(volumeId, first);
    const hi = cacheKey(volumeId, first + count);
    for (const key of [...this.index.keys()]) if (key >= lo && key < hi) this.invalidate(key);
  }

  private victim(): number {
    if (this.used < this.capacity) {
      // Fill free slots first; the hand also finds slots freed by invalidate.
      for (;;) {
        const s = this.hand;
        this.hand = (this.hand + 1) % this.capacity;
        if (this.slotKey[s] === FREE) {
          this.used++;
          return s;
        }
      }
    }
    for (;;) {
      const s = this.hand;
      this.hand = (this.hand + 1) % this.capacity;
      if (this.referenced[s]) {
        this.referenced[s] = 0;
        continue;
      }
      if (this.slotKey[s] === FILLING) continue; // a read is landing here
      this.index.delete(this.slotKey[s]!);
      this.counters.evictions++;
      return s;
    }
  }

  stats(): CacheStats {
    return { capacityBlocks: this.capacity, usedBlocks: this.used, ...this.counters };
  }
}
