/**
 * Bytes received but not yet parsed, kept as the chunks the socket delivered.
 * Parsers ask for exactly what they need next: `take` hands out a view when the
 * bytes sit in one chunk and copies only when they straddle chunks, so a WRITE
 * payload that arrived in one piece is never copied.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0; // index of the first live chunk
  private offset = 0; // bytes already consumed from chunks[head]
  private total = 0;

  get length(): number {
    return this.total;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /**
   * Remove and return the next `n` bytes (caller checked `length >= n`).
   * The result may be a view into a received chunk or into `scratch` (when
   * given and large enough), so callers must not keep it past their turn.
   */
  take(n: number, scratch?: Buffer): Buffer {
    const first = this.chunks[this.head];
    if (first !== undefined && first.length - this.offset >= n) {
      const view = first.subarray(this.offset, this.offset + n);
      this.advance(n);
      return view;
    }
    const out = scratch !== undefined && scratch.length >= n ? scratch.subarray(0, n) : Buffer.allocUnsafe(n);
    this.copyInto(out, 0, n);
    return out;
  }

  /** Copy up to `max` bytes into `dst` at `at`, consuming them; returns the count. */
  copyInto(dst: Uint8Array, at: number, max: number): number {
    let copied = 0;
    while (copied < max && this.total > 0) {
      const chunk = this.chunks[this.head]!;
      const n = Math.min(max - copied, chunk.length - this.offset);
      dst.set(chunk.subarray(this.offset, this.offset + n), at + copied);
      copied += n;
      this.advance(n);
    }
    return copied;
  }

  /** Drop up to `max` bytes without looking at them; returns the count. */
  skip(max: number): number {
    let skipped = 0;
    while (skipped < max && this.total > 0) {
      const n = Math.min(max - skipped, this.chunks[this.head]!.length - this.offset);
      skipped += n;
      this.advance(n);
    }
    return skipped;
  }

  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.offset = 0;
    this.total = 0;
  }

  /** Consume `n` bytes that lie within the first chunk. */
  private advance(n: number): void {
    this.total -= n;
    this.offset += n;
    if (this.offset === this.chunks[this.head]!.length) {
      this.head++;
      this.offset = 0;
      // Drop consumed chunks so they can be collected: all at once when the
      // queue empties (the common case), in bulk when many have piled up.
      if (this.head === this.chunks.length) {
        this.chunks.length = 0;
        this.head = 0;
      } else if (this.head > 64) {
        this.chunks = this.chunks.slice(this.head);
        this.head = 0;
      }
    }
  }
}
