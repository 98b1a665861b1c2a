/**
 * Recently used physical data blocks (packed blocks and raw blocks), so reading several
 * fragments of one packed block costs one backing read and verifying a duplicate of a
 * recent block costs no read at all. Data blocks are immutable while referenced; the
 * owner drops an entry when its block is reallocated.
 *
 * Blocks are copied into one preallocated slab (no per-block allocation, no GC churn);
 * `get` returns a view that stays valid only until the next `put`, so callers use it
 * synchronously.
 */
const BLOCK = 4096;

export class BlockLru {
  private readonly slab: Uint8Array;
  private readonly slots = new Map<number, number>(); // pba -> slot, insertion order = LRU order
  private readonly freeSlots: number[] = [];

  constructor(capacity: number) {
    this.slab = new Uint8Array(Math.max(1, capacity) * BLOCK);
    for (let i = Math.max(1, capacity) - 1; i >= 0; i--) this.freeSlots.push(i);
  }

  get(pba: number): Uint8Array | undefined {
    const slot = this.slots.get(pba);
    if (slot === undefined) return undefined;
    this.slots.delete(pba);
    this.slots.set(pba, slot);
    return this.slab.subarray(slot * BLOCK, (slot + 1) * BLOCK);
  }

  /** Copy `block` in, evicting the least recently used block when full. */
  put(pba: number, block: Uint8Array): void {
    let slot = this.slots.get(pba);
    if (slot !== undefined) this.slots.delete(pba);
    else slot = this.freeSlots.pop();
    if (slot === undefined) {
      const [oldest, reused] = this.slots.entries().next().value!;
      this.slots.delete(oldest);
      slot = reused;
    }
    this.slab.set(block, slot * BLOCK);
    this.slots.set(pba, slot);
  }

  delete(pba: number): void {
    const slot = this.slots.get(pba);
    if (slot === undefined) return;
    this.slots.delete(pba);
    this.freeSlots.push(slot);
  }
}
