/**
 * First-fit allocator for data buffers in the shared data area (driver side).
 * Extents are kept sorted and coalesced on free; with at most queueSize
 * buffers outstanding the lists stay short, so linear scans are fine.
 */
export class BufferPool {
  /** Free extents as [start, length] pairs, sorted by start, never adjacent. */
  private free: Array<[number, number]>;

  constructor(readonly start: number, readonly end: number, readonly granule = 512) {
    this.free = end > start ? [[start, end - start]] : [];
  }

  get capacity(): number {
    return this.end - this.start;
  }

  /** Offset of a buffer of at least `bytes` (rounded to the granule), or null if none fits now. */
  alloc(bytes: number): number | null {
    const size = this.round(bytes);
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
    return this.free.reduce((n, [, len]) => n + len, 0);
  }

  private round(bytes: number): number {
    return Math.max(this.granule, Math.ceil(bytes / this.granule) * this.granule);
  }
}
