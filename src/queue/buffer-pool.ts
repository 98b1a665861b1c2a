/**
 * First-fit allocator for data buffers in the shared data area (driver side).
 * Extents are kept sorted and coalesced on free; with at most queueSize
 * buffers outstanding the lists stay short, so linear scans are fine.
 */
export class BufferPool {
  /** Free extents as [start, length] pairs, sorted by start, never adjacent. */
  private free: Array<[number, number]>;
  /**
   * Released buffers of the last size asked for, kept aside uncoalesced: a
   * queue of same-sized requests (4 KiB reads) then allocates and releases
   * with a push and a pop, no extent arrays made or spliced. Given back to the
   * extent list (and coalesced) whenever first-fit alone cannot serve.
   */
  private hotSize = 0;
  private readonly hot: number[] = [];

  constructor(readonly start: number, readonly end: number, readonly granule = 512) {
    this.free = end > start ? [[start, end - start]] : [];
  }

  get capacity(): number {
    return this.end - this.start;
  }

  /** Offset of a buffer of at least `bytes` (rounded to the granule), or null if none fits now. */
  alloc(bytes: number): number | null {
    const size = this.round(bytes);
    if (size === this.hotSize && this.hot.length > 0) return this.hot.pop()!;
    // Another size (or the extents alone cannot serve): everything kept aside goes back first.
    this.returnHot();
    const at = this.firstFit(size);
    if (at !== null) this.hotSize = size;
    return at;
  }

  private firstFit(size: number): number | null {
    for (let i = 0; i < this.free.length; i++) {
      const extent = this.free[i]!;
      if (extent[1] < size) continue;
      const at = extent[0];
      if (extent[1] === size) this.free.splice(i, 1);
      else {
        extent[0] += size;
        extent[1] -= size;
      }
      return at;
    }
    return null;
  }

  release(at: number, bytes: number): void {
    const size = this.round(bytes);
    if (size === this.hotSize) {
      this.hot.push(at);
      return;
    }
    this.insert(at, size);
  }

  /** Give the buffers kept aside back to the extent list. */
  private returnHot(): void {
    const size = this.hotSize;
    while (this.hot.length > 0) this.insert(this.hot.pop()!, size);
  }

  private insert(at: number, size: number): void {
    let i = 0;
    while (i < this.free.length && this.free[i]![0] < at) i++;
    this.free.splice(i, 0, [at, size]);
    // Coalesce with the next, then with the previous extent.
    const next = this.free[i + 1];
    if (next !== undefined && at + size === next[0]) {
      this.free[i]![1] += next[1];
      this.free.splice(i + 1, 1);
    }
    const prev = this.free[i - 1];
    if (prev !== undefined && prev[0] + prev[1] === at) {
      prev[1] += this.free[i]![1];
      this.free.splice(i, 1);
    }
  }

  /** Bytes currently free (for tests and stats). */
  freeBytes(): number {
    return this.free.reduce((n, [, len]) => n + len, 0) + this.hot.length * this.hotSize;
  }

  private round(bytes: number): number {
    return Math.max(this.granule, Math.ceil(bytes / this.granule) * this.granule);
  }
}
