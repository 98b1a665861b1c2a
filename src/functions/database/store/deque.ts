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

  /** Items [start, end) in order; indexes must already be clamped. */
  slice(start: number, end: number): T[] {
    const out: T[] = [];
    for (let i = start; i < end; i++) out.push(this.at(i));
    return out;
  }

  private grow(): void {
    // Capacity stays a power of two so index wrapping is a mask.
    const next: (T | undefined)[] = new Array(this.items.length * 2);
    for (let i = 0; i < this.count; i++) next[i] = this.at(i);
    this.items = next;
    this.head = 0;
  }
}
