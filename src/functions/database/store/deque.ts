const REMOVED: unknown = Symbol('removed');

/** A growable ring buffer: O(1) push and pop at both ends, O(1) indexed reads (Redis lists). */
export class Deque<T> {
  private items: (T | undefined)[] = new Array(8);
  private head = 0;
  private count = 0;

  get length(): number {
    return this.count;
  }

  at(index: number): T {
    return this.items[(this.head + index) & (this.items.length - 1)] as T;
  }

  pushBack(item: T): void {
    if (this.count === this.items.length) this.grow();
    this.items[(this.head + this.count) & (this.items.length - 1)] = item;
    this.count++;
  }

  pushFront(item: T): void {
    if (this.count === this.items.length) this.grow();
    this.head = (this.head - 1) & (this.items.length - 1);
    this.items[this.head] = item;
    this.count++;
  }

  popFront(): T | undefined {
    if (this.count === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined; // let the value be collected
    this.head = (this.head + 1) & (this.items.length - 1);
    this.count--;
    return item;
  }

  popBack(): T | undefined {
    if (this.count === 0) return undefined;
    const i = (this.head + this.count - 1) & (this.items.length - 1);
    const item = this.items[i];
    this.items[i] = undefined;
    this.count--;
    return item;
  }

  set(index: number, item: T): void {
    this.items[(this.head + index) & (this.items.length - 1)] = item;
  }

  /** Insert before position `index` (0..length), shifting the shorter side. */
  insert(index: number, item: T): void {
    if (index === 0) return this.pushFront(item);
    if (index === this.count) return this.pushBack(item);
    const all = this.slice(0, this.count);
    all.splice(index, 0, item);
    this.rebuild(all);
  }

  /**
   * Remove items equal to `item`: the first |count| from the head (count > 0),
   * from the tail (count < 0), or all (0), as LREM does. Returns how many.
   */
  remove(item: T, count: number, eq: (a: T, b: T) => boolean): number {
    const all = this.slice(0, this.count);
    let removed = 0;
    const limit = count === 0 ? Infinity : Math.abs(count);
    if (count >= 0) {
      for (let i = 0; i < all.length && removed < limit; i++) if (eq(all[i], item)) (all[i] = REMOVED as T), removed++;
    } else {
      for (let i = all.length - 1; i >= 0 && removed < limit; i--) if (eq(all[i], item)) (all[i] = REMOVED as T), removed++;
    }
    if (removed > 0) this.rebuild(all.filter((x) => x !== (REMOVED as T)));
    return removed;
  }

  /** Keep only items [start, end) (already clamped). */
  trim(start: number, end: number): void {
    while (this.count > end) this.popBack();
    for (let i = 0; i < start && this.count > 0; i++) this.popFront();
  }

  /** Items [start, end) in order; indexes must already be clamped. */
  slice(start: number, end: number): T[] {
    const out: T[] = [];
    for (let i = start; i < end; i++) out.push(this.at(i));
    return out;
  }

  private rebuild(all: T[]): void {
    let cap = 8;
    while (cap < all.length) cap *= 2;
    this.items = new Array(cap);
    for (let i = 0; i < all.length; i++) this.items[i] = all[i];
    this.head = 0;
    this.count = all.length;
  }

  private grow(): void {
    // Capacity stays a power of two so index wrapping is a mask.
    const next: (T | undefined)[] = new Array(this.items.length * 2);
    for (let i = 0; i < this.count; i++) next[i] = this.at(i);
    this.items = next;
    this.head = 0;
  }
}
