import type { BlockDevice, WriteFlags } from '../block/types.ts';
import { outOfRange, readOnly, shutDown } from '../util/errors.ts';
import { Histogram } from '../util/histogram.ts';
import { BLOCK, BlockCache, cacheKey } from './block-cache.ts';
import type { FileBackend } from './backend.ts';

/**
 * A controller volume as a BlockDevice: range checks, the read cache, and the
 * sync write path (write-through: a write is acknowledged only once the backend
 * has it durable). Requests are cut into pieces of at most MAX_IO bytes on block
 * boundaries; each piece goes to disk through one aligned bounce buffer.
 *
 * Consistency rules, for requests in flight at the same time:
 * - Writes (and zero/trim) take per-block locks in ascending block order, so two
 *   writes that share a block (even different bytes of it, as unaligned writes
 *   do with read-modify-write) are applied one after the other, never torn.
 * - A read miss fills the cache only if no write touched the block while the
 *   fill was in flight (a write marks pending fills stale); otherwise the fill
 *   would re-install data older than the write.
 */
export const MAX_IO = 128 * 1024;
const BOUNCE_BUFFERS = 64;

export interface VolumeInfo {
  id: number;
  name: string;
  size: number;
}

interface PendingFill {
  stale: boolean;
}

export class Volume implements BlockDevice {
  readonly blockSize = BLOCK;
  readonly writeThrough = true;
  readonly latency = { read: new Histogram(), write: new Histogram() };
  readonly counters = { reads: 0, writes: 0, flushes: 0, trims: 0, zeroes: 0, bytesRead: 0, bytesWritten: 0, errors: 0 };
  private readonly locks = new Map<number, Array<() => void>>();
  private readonly fills = new Map<number, PendingFill[]>();
  private readonly bounce: Buffer;
  private readonly freeBounce: number[] = [];
  private readonly bounceWaiters: Array<(i: number) => void> = [];
  private inFlight = 0;
  private idleWaiters: Array<() => void> = [];
  private closed = false;

  constructor(
    readonly info: VolumeInfo,
    private readonly backend: FileBackend,
    private readonly cache: BlockCache,
    readonly readOnly = false,
  ) {
    this.bounce = backend.alloc(BOUNCE_BUFFERS * MAX_IO).buf;
    for (let i = 0; i < BOUNCE_BUFFERS; i++) this.freeBounce.push(i);
  }

  get size(): number {
    return this.info.size;
  }
  get name(): string {
    return this.info.name;
  }
  get direct(): boolean {
    return this.backend.direct;
  }

  // ---- BlockDevice -------------------------------------------------------

  async pread(buf: Uint8Array, offset: number): Promise<void> {
    this.admit(offset, buf.byteLength, false);
    const t0 = performance.now();
    try {
      await this.forEachPiece(offset, buf.byteLength, (pos, len, at) => this.readPiece(buf, at, pos, len));
      this.counters.reads++;
      this.counters.bytesRead += buf.byteLength;
      this.latency.read.record((performance.now() - t0) * 1000);
    } catch (err) {
      this.counters.errors++;
      throw err;
    } finally {
      this.done();
    }
  }

  async pwrite(buf: Uint8Array, offset: number, _flags?: WriteFlags): Promise<void> {
    // FUA needs nothing extra: every backend write is O_DSYNC.
    this.admit(offset, buf.byteLength, true);
    const t0 = performance.now();
    try {
      await this.forEachPiece(offset, buf.byteLength, (pos, len, at) => this.writePiece(buf, at, pos, len));
      this.counters.writes++;
      this.counters.bytesWritten += buf.byteLength;
      this.latency.write.record((performance.now() - t0) * 1000);
    } catch (err) {
      this.counters.errors++;
      throw err;
    } finally {
      this.done();
    }
  }

  async flush(): Promise<void> {
    if (this.closed) throw shutDown(`volume ${this.name}`);
    this.counters.flushes++;
    // Writes are already durable (O_DSYNC); the sync covers hole punches and size changes.
    await this.backend.datasync();
  }

  async trim(offset: number, length: number): Promise<void> {
    this.admit(offset, length, true);
    try {
      this.counters.trims++;
      // Only whole blocks can be deallocated; TRIM is advisory, so partial blocks stay as they are.
      const first = Math.ceil(offset / BLOCK);
      const end = Math.floor((offset + length) / BLOCK);
      if (end > first) await this.deallocate(first, end - first, false);
    } finally {
      this.done();
    }
  }

  async zero(offset: number, length: number): Promise<void> {
    this.admit(offset, length, true);
    try {
      this.counters.zeroes++;
      const first = Math.ceil(offset / BLOCK);
      const end = Math.max(first, Math.floor((offset + length) / BLOCK));
      const headEnd = Math.min(offset + length, first * BLOCK);
      const tailStart = Math.max(headEnd, end * BLOCK);
      const pieces: Promise<void>[] = [];
      if (headEnd > offset) pieces.push(this.writeZeroBytes(offset, headEnd - offset));
      if (offset + length > tailStart) pieces.push(this.writeZeroBytes(tailStart, offset + length - tailStart));
      if (end > first) pieces.push(this.deallocate(first, end - first, true));
      await Promise.all(pieces);
    } finally {
      this.done();
    }
  }

  // ---- lifecycle -----------------------------------------------------------

  /** Wait for in-flight requests, then close the backend. Later requests fail with ESHUTDOWN. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    await this.backend.datasync().catch(() => {});
    this.cache.invalidateRange(this.info.id, 0, Math.ceil(this.size / BLOCK));
    this.backend.close();
  }

  /** Grow (or shrink) the volume. Shrinking drops cached blocks past the new end. */
  async resize(newSize: number): Promise<void> {
    await this.backend.truncate(newSize);
    await this.backend.datasync();
    if (newSize < this.info.size) {
      const first = Math.floor(newSize / BLOCK);
      this.cache.invalidateRange(this.info.id, first, Math.ceil(this.info.size / BLOCK) - first);
    }
    this.info.size = newSize;
  }

  stats(): Record<string, number> {
    const r = this.latency.read.summary();
    const w = this.latency.write.summary();
    return {
      ...this.counters,
      inFlight: this.inFlight,
      readP50Us: r.p50Us,
      readP99Us: r.p99Us,
      writeP50Us: w.p50Us,
      writeP99Us: w.p99Us,
      ...Object.fromEntries(Object.entries(this.backend.stats).map(([k, v]) => [`backend_${k}`, v])),
    };
  }

  // ---- internals -----------------------------------------------------------

  private admit(offset: number, length: number, write: boolean): void {
    if (this.closed) throw shutDown(`volume ${this.name}`);
    if (write && this.readOnly) throw readOnly(`volume ${this.name}`);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw outOfRange(offset, length, this.size);
    }
    this.inFlight++;
  }

  private done(): void {
    if (--this.inFlight === 0 && this.idleWaiters.length) {
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /** Cut [offset, +length) at MAX_IO-aligned boundaries and run the pieces concurrently. */
  private async forEachPiece(
    offset: number,
    length: number,
    fn: (pos: number, len: number, bufOffset: number) => Promise<void>,
  ): Promise<void> {
    const end = offset + length;
    const firstEnd = Math.min(end, (Math.floor(offset / MAX_IO) + 1) * MAX_IO);
    if (firstEnd >= end) return fn(offset, length, 0); // the common case: one piece
    const pieces: Promise<void>[] = [];
    for (let pos = offset, next = firstEnd; pos < end; pos = next, next = Math.min(end, next + MAX_IO)) {
      pieces.push(fn(pos, next - pos, pos - offset));
    }
    await Promise.all(pieces);
  }

  private getBounce(): Promise<number> | number {
    const i = this.freeBounce.pop();
    if (i !== undefined) return i;
    return new Promise((resolve) => this.bounceWaiters.push(resolve));
  }

  private putBounce(i: number): void {
    const waiter = this.bounceWaiters.shift();
    if (waiter) waiter(i);
    else this.freeBounce.push(i);
  }

  private async lock(first: number, count: number): Promise<void> {
    for (let b = first; b < first + count; b++) {
      const key = cacheKey(this.info.id, b);
      const pending = this.fills.get(b);
      if (pending) for (const fill of pending) fill.stale = true;
      const queue = this.locks.get(key);
      if (!queue) {
        this.locks.set(key, []);
        continue;
      }
      await new Promise<void>((resolve) => queue.push(resolve));
    }
  }

  private unlock(first: number, count: number): void {
    for (let b = first; b < first + count; b++) {
      const key = cacheKey(this.info.id, b);
      const queue = this.locks.get(key)!;
      const next = queue.shift();
      if (next) next(); // ownership passes straight to the next waiter
      else this.locks.delete(key);
    }
  }

  /** Read [pos, +len) (within one MAX_IO window) into dst at dstOffset: hits from cache, misses in runs. */
  private async readPiece(dst: Uint8Array, dstOffset: number, pos: number, len: number): Promise<void> {
    const first = Math.floor(pos / BLOCK);
    const last = Math.floor((pos + len - 1) / BLOCK);
    const id = this.info.id;
    let runStart = -1;
    const runs: Promise<void>[] = [];
    for (let b = first; b <= last + 1; b++) {
      const hit = b <= last ? this.cache.get(cacheKey(id, b)) : undefined;
      if (hit) this.copyOut(hit, b, dst, dstOffset, pos, len);
      if (b <= last && !hit) {
        if (runStart < 0) runStart = b;
      } else if (runStart >= 0) {
        runs.push(this.readRun(runStart, b - runStart, dst, dstOffset, pos, len));
        runStart = -1;
      }
    }
    if (runs.length === 1) await runs[0];
    else if (runs.length) await Promise.all(runs);
  }

  /** Copy the part of block `b` (bytes in `src`) that falls inside the request [pos, +len). */
  private copyOut(src: Uint8Array, b: number, dst: Uint8Array, dstOffset: number, pos: number, len: number): void {
    const from = Math.max(pos, b * BLOCK);
    const to = Math.min(pos + len, (b + 1) * BLOCK);
    dst.set(src.subarray(from - b * BLOCK, to - b * BLOCK), dstOffset + from - pos);
  }

  private async readRun(first: number, count: number, dst: Uint8Array, dstOffset: number, pos: number, len: number): Promise<void> {
    const slot = await this.getBounce();
    const base = slot * MAX_IO;
    const fill: PendingFill = { stale: false };
    for (let b = first; b < first + count; b++) {
      const pending = this.fills.get(b);
      if (pending) pending.push(fill);
      else this.fills.set(b, [fill]);
      if (this.locks.has(cacheKey(this.info.id, b))) fill.stale = true;
    }
    try {
      await this.backend.read(this.bounce, base, count * BLOCK, first * BLOCK);
      for (let b = first; b < first + count; b++) {
        const at = base + (b - first) * BLOCK;
        this.copyOut(this.bounce.subarray(at, at + BLOCK), b, dst, dstOffset, pos, len);
        if (!fill.stale) this.cache.put(cacheKey(this.info.id, b), this.bounce, at);
      }
    } finally {
      for (let b = first; b < first + count; b++) {
        const pending = this.fills.get(b)!;
        if (pending.length === 1) this.fills.delete(b);
        else pending.splice(pending.indexOf(fill), 1);
      }
      this.putBounce(slot);
    }
  }

  /** Write src[srcOffset..] to [pos, +len) (within one MAX_IO window), read-modify-write at the edges. */
  private async writePiece(src: Uint8Array, srcOffset: number, pos: number, len: number): Promise<void> {
    const first = Math.floor(pos / BLOCK);
    const count = Math.floor((pos + len - 1) / BLOCK) - first + 1;
    await this.lock(first, count);
    const slot = await this.getBounce();
    const base = slot * MAX_IO;
    const id = this.info.id;
    try {
      const headPartial = pos % BLOCK !== 0;
      const tailPartial = (pos + len) % BLOCK !== 0;
      if (headPartial) await this.loadBlock(first, base);
      if (tailPartial && (count > 1 || !headPartial)) await this.loadBlock(first + count - 1, base + (count - 1) * BLOCK);
      this.bounce.set(src.subarray(srcOffset, srcOffset + len), base + (pos - first * BLOCK));
      try {
        await this.backend.write(this.bounce, base, count * BLOCK, first * BLOCK);
      } catch (err) {
        // The disk's copy is unknown now: never serve the old data from cache.
        this.cache.invalidateRange(id, first, count);
        throw err;
      }
      for (let b = 0; b < count; b++) {
        const key = cacheKey(id, first + b);
        if (count === 1) this.cache.put(key, this.bounce, base); // small writes are likely re-read
        else this.cache.update(key, this.bounce, base + b * BLOCK);
      }
    } finally {
      this.putBounce(slot);
      this.unlock(first, count);
    }
  }

  /** The current content of block b into the bounce slab at `at` (the caller holds b's lock). */
  private async loadBlock(b: number, at: number): Promise<void> {
    const hit = this.cache.get(cacheKey(this.info.id, b));
    if (hit) this.bounce.set(hit, at);
    else await this.backend.read(this.bounce, at, BLOCK, b * BLOCK);
  }

  private async writeZeroBytes(pos: number, len: number): Promise<void> {
    await this.writePiece(new Uint8Array(len), 0, pos, len);
  }

  /** Make whole blocks read as zeroes: punch a hole, or (where holes cannot be punched and mustZero) write zeroes. */
  private async deallocate(first: number, count: number, mustZero: boolean): Promise<void> {
    const CHUNK = MAX_IO / BLOCK;
    for (let b = first; b < first + count; b += CHUNK) {
      const n = Math.min(CHUNK, first + count - b);
      await this.lock(b, n);
      try {
        this.cache.invalidateRange(this.info.id, b, n);
        if (!this.backend.punchHole(b * BLOCK, n * BLOCK)) {
          if (!mustZero) return;
          const slot = await this.getBounce();
          try {
            this.bounce.fill(0, slot * MAX_IO, slot * MAX_IO + n * BLOCK);
            await this.backend.write(this.bounce, slot * MAX_IO, n * BLOCK, b * BLOCK);
          } finally {
            this.putBounce(slot);
          }
        }
      } finally {
        this.unlock(b, n);
      }
    }
    // A punched hole is a metadata change: make it durable before acknowledging.
    await this.backend.datasync();
  }
}
