/**
 * Recently used physical data blocks (packed blocks and raw blocks), so reading several
 * fragments of one packed block costs one backing read and verifying a duplicate of a
 * recent block costs no read at all. Data blocks are immutable while referenced; the
 * owner drops an entry when its block is reallocated.
 *
 * Blocks are copied into one preallocated slab (no per-block allocation, no GC churn);
 * `get` returns a view that stays valid only until the next `put`, so callers use it
 * synchronously. The LRU order is a doubly linked list over slot numbers (two Int32Arrays),
 * so a hit, a put and an eviction are O(1) (a Map used as the LRU list, deleted from and
 * re-inserted on every use, leaves deleted entries at its front for each eviction to skip).
 */
const BLOCK = 4096;
const NONE = -1;

export class BlockLru {
  private readonly slab: Uint8Array;
  private readonly slotOf = new Map<number, number>(); // pba -> slot
  private readonly pbaOf: Float64Array; // slot -> pba (NaN when free)
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  /** Most and least recently used slots. */
  private head = NONE;
  private tail = NONE;
  private readonly freeSlots: number[] = [];

  constructor(capacity: number) {
    const n = Math.max(1, capacity);
    this.slab = new Uint8Array(n * BLOCK);
    // Make the slab resident now (it is the volume's data-cache budget, cacheBytes / 4): a fresh
    // slab is mapped lazily, and each first put paid a page fault on the write path (#12:
    // 10-15 us a put on this VM under load, against ~1 us for a put into a resident slot).
    for (let at = 0; at < this.slab.length; at += BLOCK) this.slab[at] = 0;
    this.pbaOf = new Float64Array(n).fill(NaN);
    this.prev = new Int32Array(n).fill(NONE);
    this.next = new Int32Array(n).fill(NONE);
    for (let i = n - 1; i >= 0; i--) this.freeSlots.push(i);
  }

  get(pba: number): Uint8Array | undefined {
    const slot = this.slotOf.get(pba);
    if (slot === undefined) return undefined;
    this.unlink(slot);
    this.pushFront(slot);
    return this.slab.subarray(slot * BLOCK, (slot + 1) * BLOCK);
  }

  /** Whether `pba` is held (does not count as a use). */
  has(pba: number): boolean {
    return this.slotOf.has(pba);
  }

  /** Copy `block` in, evicting the least recently used block when full. */
  put(pba: number, block: Uint8Array): void {
    let slot = this.slotOf.get(pba);
    if (slot !== undefined) this.unlink(slot);
    else {
      slot = this.freeSlots.pop();
      if (slot === undefined) {
        slot = this.tail; // the least recently used
        this.unlink(slot);
        this.slotOf.delete(this.pbaOf[slot]!);
      }
      this.slotOf.set(pba, slot);
      this.pbaOf[slot] = pba;
    }
    this.slab.set(block, slot * BLOCK);
    this.pushFront(slot);
  }

  delete(pba: number): void {
    const slot = this.slotOf.get(pba);
    if (slot === undefined) return;
    this.slotOf.delete(pba);
    this.unlink(slot);
    this.pbaOf[slot] = NaN;
    this.freeSlots.push(slot);
  }

  private unlink(slot: number): void {
    const p = this.prev[slot]!;
    const n = this.next[slot]!;
    if (p === NONE) this.head = n;
    else this.next[p] = n;
    if (n === NONE) this.tail = p;
    else this.prev[n] = p;
    this.prev[slot] = NONE;
    this.next[slot] = NONE;
  }

  private pushFront(slot: number): void {
    this.prev[slot] = NONE;
    this.next[slot] = this.head;
    if (this.head !== NONE) this.prev[this.head] = slot;
    this.head = slot;
    if (this.tail === NONE) this.tail = slot;
  }
}
