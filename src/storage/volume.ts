import { FUA_WRITE, UNSYNCED_WRITE, type WriteFlags } from '../block/types.ts';
import { BlockDeviceBase, type BlockCapabilities } from '../block/device.ts';
import { Histogram } from '../util/histogram.ts';
import { BLOCK, BlockCache, cacheKey } from './block-cache.ts';
import { PromiseTarget, backendError, type StorageBackend } from './backend.ts';
import type { Lease, LentReadDevice, LentReadTarget, WriteTarget } from '../nbd/lent-read.ts';
import type { IoTarget } from '../block/types.ts';
import { tracing, trace, S } from '../util/trace.ts';

/**
 * A controller volume as a BlockDevice: range checks, the read cache, and the
 * write path. Write-through by default (a write is acknowledged only once the
 * backend has it durable); a write flagged `unsynced` (WriteFlags: a guest's
 * write-back queue, an NBD client's plain WRITE) skips the per-write sync where
 * the backend can (deferredSync): it is in the host's page cache when it
 * completes, so it survives kill -9 of the controller, and the next flush()
 * (one fdatasync) makes it survive a power loss too. FUA writes and writes
 * without the flag stay durable before they complete. Requests are cut into
 * pieces of at most MAX_IO bytes on block boundaries; each piece goes to disk
 * through one aligned bounce buffer.
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

/** What a volume reads and writes through: a file, an RBD image, or a snapshot layer over either. */
export type VolumeBackend = StorageBackend;

export interface VolumeInfo {
  id: number;
  name: string;
  size: number;
}

/** Read runs never exceed one bounce buffer. */
const RUN_BLOCKS = MAX_IO / BLOCK;
/** Write stamps are kept per block modulo this (a collision only skips a cache fill). */
const STAMP_MASK = 4095;

/** One read request in progress: counts its runs; pooled per volume. */
class ReadReq {
  buf: Uint8Array | null = null;
  pos = 0;
  len = 0;
  pending = 0;
  result = 0;
  t0 = 0;
  private target: IoTarget | null = null;
  private tag = 0;
  private issuing = false;

  constructor(private readonly volume: Volume) {}

  start(buf: Uint8Array, pos: number, target: IoTarget, tag: number): void {
    this.buf = buf;
    this.pos = pos;
    this.len = buf.byteLength;
    this.pending = 0;
    this.result = 0;
    this.t0 = performance.now();
    this.target = target;
    this.tag = tag;
    this.issuing = true;
  }

  /** Every run has been started: finish now if all were hits (or already done). */
  issued(): void {
    this.issuing = false;
    if (this.pending === 0) this.finish();
  }

  runDone(result: number): void {
    if (result < 0 && this.result === 0) this.result = result;
    if (--this.pending === 0 && !this.issuing) this.finish();
  }

  private finish(): void {
    const target = this.target!;
    this.target = null;
    this.buf = null;
    this.volume.readFinished(this, this.result, target, this.tag);
  }
}

/** One backend read of a run of missing blocks; pooled per volume. */
class ReadRun implements IoTarget {
  req: ReadReq | null = null;
  first = 0;
  count = 0;
  /** Volume write sequence when the read started. */
  seq = 0;
  stale = false;
  cacheSlot = -1;
  bounce = -1;

  constructor(private readonly volume: Volume) {}

  ioDone(_tag: number, result: number): void {
    this.volume.runDone(this, result);
  }
}

/**
 * Lent reads (LentReadDevice): the NBD export's READs of up to one block go
 * without a promise. The data is read (cache hit: copied; miss: read by the
 * backend and copied, as for pread) into a buffer of the volume's, lent to the
 * connection until its socket has written it. At most MAX_LEND_BUFFERS per
 * volume (1 MiB); past that, and for longer reads, readLent declines and the
 * request takes pread.
 */
const MAX_LEND_BUFFERS = 256;

/** One lent read's buffer: the read's target, then the lease the borrower gives back. Pooled per volume. */
class LendBuffer implements IoTarget, Lease {
  readonly buf = Buffer.allocUnsafeSlow(BLOCK);
  data: Buffer = this.buf;
  target: LentReadTarget | null = null;
  /** Completed inside readLent (every block a cache hit): handed over on the volume's next microtask. */
  result = 0;

  constructor(private readonly volume: Volume) {}

  ioDone(_tag: number, result: number): void {
    this.volume.lendDone(this, result);
  }

  release(): void {
    this.volume.lendReturned(this);
  }
}

/** One block write on writeFrom's promise-free path; pooled per volume. */
class BlockWrite implements IoTarget {
  target: WriteTarget | null = null;
  block = 0;
  bounce = -1;
  gen = 0;
  t0 = 0;

  constructor(private readonly volume: Volume) {}

  ioDone(_tag: number, result: number): void {
    this.volume.blockWritten(this, result);
  }
}

/**
 * Trim punches holes (advisory: where the filesystem cannot, nothing is done);
 * zero punches holes or writes zeroes here; a write is O_DSYNC unless flagged
 * `unsynced`, so FUA is free (and flush is one fdatasync).
 */
const CAPABILITIES: BlockCapabilities = Object.freeze({ trim: true, zeroes: true, flush: true, fua: true, fastRead: true });

export class Volume extends BlockDeviceBase implements LentReadDevice {
  readonly blockSize = BLOCK;
  readonly writeThrough = true;
  readonly capabilities = CAPABILITIES;
  readonly latency = { read: new Histogram(), write: new Histogram() };
  readonly counters = { reads: 0, writes: 0, flushes: 0, trims: 0, zeroes: 0, bytesRead: 0, bytesWritten: 0, errors: 0 };
  private readonly locks = new Map<number, Array<() => void>>();
  private readonly readReqs: ReadReq[] = [];
  private readonly readRuns: ReadRun[] = [];
  private readonly runWaiters: ReadRun[] = [];
  private writeSeq = 0;
  private readonly writeStamps = new Float64Array(STAMP_MASK + 1);
  private readonly bounce: Buffer;
  private readonly freeBounce: number[] = [];
  private readonly bounceWaiters: Array<(i: number) => void> = [];
  private inFlight = 0;
  private idleWaiters: Array<() => void> = [];
  /** Backend writes in flight, by backend generation (parity), so replaceBackend can wait for the old one's. */
  private backendGen = 0;
  private readonly backendWrites = [0, 0];
  private backendDrained: Array<() => void> = [];
  private readonly blockWrites: BlockWrite[] = [];
  private readonly lendFree: LendBuffer[] = [];
  private lendCount = 0;
  /** Lent reads that completed inside readLent, handed over together on one microtask. */
  private readonly lendEarly: LendBuffer[] = [];
  private lendStarting: LendBuffer | null = null;
  readonly lending: LentReadDevice = this;

  constructor(
    readonly info: VolumeInfo,
    private backend: VolumeBackend,
    private readonly cache: BlockCache,
    readonly readOnly = false,
  ) {
    super();
    this.bounce = backend.alloc(BOUNCE_BUFFERS * MAX_IO).buf;
    for (let i = 0; i < BOUNCE_BUFFERS; i++) this.freeBounce.push(i);
  }

  get size(): number {
    return this.info.size;
  }
  /** Writes flagged `unsynced` skip the per-write sync (the backend can write without O_DSYNC): see WriteFlags. */
  get deferredSync(): boolean {
    return this.backend.writeUnsynced !== undefined;
  }
  get name(): string {
    return this.info.name;
  }
  get direct(): boolean {
    return this.backend.direct;
  }

  protected label(): string {
    return `volume ${this.info.name}`;
  }

  // ---- BlockDevice -------------------------------------------------------

  pread(buf: Uint8Array, offset: number): Promise<void> {
    return new Promise((resolve, reject) => {
      try {
        this.readTo(buf, offset, new PromiseTarget(resolve, reject, 'read'), 0);
      } catch (err) {
        reject(err);
      }
    });
  }

  /**
   * Read buf.byteLength bytes at `offset` into `buf`, then target.ioDone(tag, 0)
   * or a negative errno: the request path without a promise. Throws (before
   * anything starts) when the request is out of range or the volume closed.
   * Hits are copied from the cache; each run of missing blocks is one backend
   * read, a single block straight into a cache slot, a longer run through a
   * bounce buffer.
   */
  readTo(buf: Uint8Array, offset: number, target: IoTarget, tag: number): void {
    this.admit(offset, buf.byteLength, false);
    const req = this.readReqs.pop() ?? new ReadReq(this);
    req.start(buf, offset, target, tag);
    const id = this.info.id;
    const pos = offset;
    const len = buf.byteLength;
    const first = Math.floor(pos / BLOCK);
    const last = len === 0 ? first - 1 : Math.floor((pos + len - 1) / BLOCK);
    let runStart = -1;
    for (let b = first; b <= last; b++) {
      const slot = this.cache.lookup(cacheKey(id, b));
      if (slot >= 0) {
        if (pos === b * BLOCK && len === BLOCK) buf.set(this.cache.slotView(slot)); // the common case: one whole block
        else this.copyOut(this.cache.slab, slot * BLOCK, b, buf, pos, len);
        if (runStart >= 0) this.startRun(req, runStart, b - runStart);
        runStart = -1;
      } else {
        if (runStart < 0) runStart = b;
        if (b - runStart + 1 === RUN_BLOCKS) {
          this.startRun(req, runStart, RUN_BLOCKS);
          runStart = -1;
        }
      }
    }
    if (runStart >= 0) this.startRun(req, runStart, last + 1 - runStart);
    if (tracing && req.pending === 0) trace.mark(S.cacheHit);
    req.issued();
  }

  /**
   * A read of up to one block without a promise (the NBD export's READ): false,
   * with nothing started, when it does not qualify (longer, out of range,
   * closed, or every lend buffer is out); the caller then uses pread.
   */
  readLent(offset: number, length: number, target: LentReadTarget): boolean {
    if (length > BLOCK || length === 0 || !this.inRange(offset, length)) return false;
    let lb = this.lendFree.pop();
    if (lb === undefined) {
      if (this.lendCount >= MAX_LEND_BUFFERS) return false;
      this.lendCount++;
      lb = new LendBuffer(this);
    }
    lb.target = target;
    lb.data = length === BLOCK ? lb.buf : lb.buf.subarray(0, length);
    this.lendStarting = lb;
    try {
      this.readTo(lb.data, offset, lb, 0);
    } catch (err) {
      this.lendReturned(lb); // inRange said yes, so this does not happen; the buffer stays in the pool if it does
      throw err;
    } finally {
      this.lendStarting = null;
    }
    return true;
  }

  /** @internal A lent read's data is in (or it failed): to its target, never before readLent returned. */
  lendDone(lb: LendBuffer, result: number): void {
    if (lb === this.lendStarting) {
      lb.result = result;
      if (this.lendEarly.push(lb) === 1) queueMicrotask(this.lendFlush);
      return;
    }
    this.lendHandOver(lb, result);
  }

  private readonly lendFlush = (): void => {
    const early = this.lendEarly;
    for (let i = 0; i < early.length; i++) this.lendHandOver(early[i]!, early[i]!.result);
    early.length = 0;
  };

  private lendHandOver(lb: LendBuffer, result: number): void {
    const target = lb.target!;
    if (result < 0) {
      this.lendReturned(lb);
      target.lentFailed(backendError(result, 'read'));
    } else target.lentDone(lb.data, lb);
  }

  /** @internal The borrower is done with a lent buffer. */
  lendReturned(lb: LendBuffer): void {
    lb.target = null;
    lb.data = lb.buf;
    this.lendFree.push(lb);
  }

  /**
   * A write without the NBD transmission's promises; its outcome to `target`.
   * `fua`: durable before `target` hears of it; otherwise as a write flagged
   * `unsynced` (in the page cache, durable at the next flush, where the backend
   * can defer its sync). One whole, aligned block whose lock is free, with a
   * bounce buffer at hand, goes without any promise (the NBD export's 4 KiB
   * WRITE); the rest takes pwrite.
   */
  writeFrom(src: Uint8Array, offset: number, target: WriteTarget, fua = false): boolean {
    const len = src.byteLength;
    if (!this.inRange(offset, len) || this.readOnly) return false;
    if (len === BLOCK && offset % BLOCK === 0 && this.backend.writeFrom !== undefined && this.freeBounce.length > 0) {
      const block = offset / BLOCK;
      const key = cacheKey(this.info.id, block);
      if (!this.locks.has(key)) {
        this.admit(offset, len, true);
        // As lock() does for a free block: stale any read fill in flight, take the lock.
        this.writeStamps[block & STAMP_MASK] = ++this.writeSeq;
        this.locks.set(key, []);
        const op = this.blockWrites.pop() ?? new BlockWrite(this);
        op.target = target;
        op.block = block;
        op.bounce = this.freeBounce.pop()!;
        op.t0 = performance.now();
        const base = op.bounce * MAX_IO;
        this.bounce.set(src, base);
        op.gen = this.backendWriteBegin();
        if (tracing) trace.mark(S.volWrite);
        this.backend.writeFrom(this.bounce, base, BLOCK, offset, op, 0, !fua);
        return true;
      }
    }
    this.pwrite(src, offset, fua ? FUA_WRITE : UNSYNCED_WRITE).then(
      () => target.writeDone(null),
      (err: Error) => target.writeDone(err),
    );
    return true;
  }

  /** @internal writeFrom's block write completed: what writePiece and pwrite do after the backend write, then its target. */
  blockWritten(op: BlockWrite, result: number): void {
    const target = op.target!;
    const id = this.info.id;
    const base = op.bounce * MAX_IO;
    this.backendWriteEnd(op.gen);
    let err: Error | null = null;
    if (result < 0) {
      // The disk's copy is unknown now: never serve the old data from cache.
      this.cache.invalidateRange(id, op.block, 1);
      this.counters.errors++;
      err = backendError(result, `write [${op.block * BLOCK}, +${BLOCK})`);
    } else this.cache.put(cacheKey(id, op.block), this.bounce, base); // small writes are likely re-read
    this.releaseBounce(op.bounce);
    this.unlock(op.block, 1);
    if (err === null) {
      this.counters.writes++;
      this.counters.bytesWritten += BLOCK;
      this.latency.write.record((performance.now() - op.t0) * 1000);
      if (tracing) trace.mark(S.volDone);
    }
    op.target = null;
    this.blockWrites.push(op);
    this.done();
    target.writeDone(err);
  }

  /** @internal A read request finished: count it and give its object back. */
  readFinished(req: ReadReq, result: number, target: IoTarget, tag: number): void {
    if (result < 0) this.counters.errors++;
    else {
      this.counters.reads++;
      this.counters.bytesRead += req.len;
      this.latency.read.record((performance.now() - req.t0) * 1000);
    }
    this.readReqs.push(req);
    this.done();
    if (tracing) trace.mark(S.volDone);
    target.ioDone(tag, result);
  }

  private startRun(req: ReadReq, first: number, count: number): void {
    if (tracing) trace.mark(S.cacheMiss);
    const run = this.readRuns.pop() ?? new ReadRun(this);
    run.req = req;
    run.first = first;
    run.count = count;
    run.seq = this.writeSeq;
    run.stale = false;
    for (let b = first; b < first + count; b++) {
      // A write in progress on the block: what we read may predate it, so do not cache it.
      if (this.locks.has(cacheKey(this.info.id, b))) run.stale = true;
    }
    req.pending++;
    if (count === 1 && this.cache.direct && this.backend.direct) {
      const slot = this.cache.reserve();
      if (slot >= 0) {
        run.cacheSlot = slot;
        this.backend.readTo(this.cache.slab, slot * BLOCK, BLOCK, first * BLOCK, run, 0);
        return;
      }
    }
    run.cacheSlot = -1;
    const bounce = this.freeBounce.pop();
    if (bounce === undefined) {
      this.runWaiters.push(run);
      return;
    }
    run.bounce = bounce;
    this.backend.readTo(this.bounce, bounce * MAX_IO, count * BLOCK, first * BLOCK, run, 0);
  }

  /** @internal A run's backend read completed: copy it out, cache it unless stale, free its buffer. */
  runDone(run: ReadRun, result: number): void {
    const req = run.req!;
    const id = this.info.id;
    const stale = run.stale || this.writtenSince(run.first, run.count, run.seq);
    if (run.cacheSlot >= 0) {
      const slot = run.cacheSlot;
      if (result >= 0) {
        if (req.pos === run.first * BLOCK && req.len === BLOCK) req.buf!.set(this.cache.slotView(slot));
        else this.copyOut(this.cache.slab, slot * BLOCK, run.first, req.buf!, req.pos, req.len);
        if (!stale) this.cache.publish(slot, cacheKey(id, run.first));
        else this.cache.abandon(slot);
      } else this.cache.abandon(slot);
    } else {
      const base = run.bounce * MAX_IO;
      if (result >= 0) {
        for (let b = run.first; b < run.first + run.count; b++) {
          const at = base + (b - run.first) * BLOCK;
          this.copyOut(this.bounce, at, b, req.buf!, req.pos, req.len);
          if (!stale) this.cache.put(cacheKey(id, b), this.bounce, at);
        }
      }
      this.releaseBounce(run.bounce);
    }
    run.req = null;
    this.readRuns.push(run);
    req.runDone(result);
  }

  /** Whether a write to any of the blocks began after sequence `seq` (false positives only cost a cache fill). */
  private writtenSince(first: number, count: number, seq: number): boolean {
    if (this.writeSeq === seq) return false;
    for (let b = first; b < first + count; b++) if (this.writeStamps[b & STAMP_MASK]! > seq) return true;
    return false;
  }

  /** Give a bounce buffer back: a read run waiting for one goes first, then a waiting write. */
  private releaseBounce(i: number): void {
    const run = this.runWaiters.shift();
    if (run) {
      run.bounce = i;
      this.backend.readTo(this.bounce, i * MAX_IO, run.count * BLOCK, run.first * BLOCK, run, 0);
      return;
    }
    this.putBounce(i);
  }

  async pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags): Promise<void> {
    // FUA needs nothing extra: a backend write is O_DSYNC unless `unsynced` (never
    // with FUA), which leaves it to the next flush (see WriteFlags).
    this.admit(offset, buf.byteLength, true);
    const t0 = performance.now();
    const unsynced = flags?.unsynced === true && flags.fua !== true;
    try {
      await this.forEachPiece(offset, buf.byteLength, (pos, len, at) => this.writePiece(buf, at, pos, len, unsynced));
      this.counters.writes++;
      this.counters.bytesWritten += buf.byteLength;
      this.latency.write.record((performance.now() - t0) * 1000);
      if (tracing) trace.mark(S.volDone);
    } catch (err) {
      this.counters.errors++;
      throw err;
    } finally {
      this.done();
    }
  }

  /**
   * Every write completed before this call durable: one fdatasync of the image,
   * which covers the unsynced writes (whichever descriptor wrote them), hole
   * punches and size changes. A snapshot's delta and map, and a clone's map,
   * are written O_DSYNC, in the order the layers need (layered.ts), so nothing
   * of theirs waits for it.
   */
  async flush(): Promise<void> {
    this.checkOpen();
    this.counters.flushes++;
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
    let syncError: unknown;
    try {
      // Unsynced writes, hole punches and size changes (the rest is O_DSYNC already).
      await this.backend.datasync();
    } catch (err) {
      syncError = err;
      this.counters.errors++;
    }
    this.cache.invalidateRange(this.info.id, 0, Math.ceil(this.size / BLOCK));
    await this.backend.close();
    // Closed either way, but a failed sync is the caller's to report, never swallowed.
    if (syncError !== undefined) throw syncError;
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

  /**
   * Put `make(old)` in place of the backend (a snapshot of an open volume
   * layers it); resolves once every write issued to the old backend has
   * completed, so from then on every write in flight goes through the new one.
   * One replacement at a time (the caller serializes them).
   */
  async replaceBackend(make: (old: VolumeBackend) => VolumeBackend): Promise<void> {
    const old = this.backendGen & 1;
    this.backend = make(this.backend);
    this.backendGen++;
    if (this.backendWrites[old]! > 0) await new Promise<void>((resolve) => this.backendDrained.push(resolve));
  }

  /** Count a backend write in flight (no promise of its own: the write path allocates nothing more for it). */
  private backendWriteBegin(): number {
    const gen = this.backendGen & 1;
    this.backendWrites[gen]!++;
    return gen;
  }

  private backendWriteEnd(gen: number): void {
    if (--this.backendWrites[gen]! === 0 && gen !== (this.backendGen & 1) && this.backendDrained.length > 0) {
      for (const w of this.backendDrained.splice(0)) w();
    }
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
    if (write) this.checkWrite(offset, length);
    else this.checkRead(offset, length);
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
    const seq = ++this.writeSeq;
    for (let b = first; b < first + count; b++) {
      const key = cacheKey(this.info.id, b);
      // Read fills in flight on this block are stale now (see writtenSince).
      this.writeStamps[b & STAMP_MASK] = seq;
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

  /** Copy the part of block `b` (bytes in `src`) that falls inside the request [pos, +len). */
  private copyOut(src: Buffer, srcAt: number, b: number, dst: Uint8Array, pos: number, len: number): void {
    const from = Math.max(pos, b * BLOCK);
    const to = Math.min(pos + len, (b + 1) * BLOCK);
    // Buffer#copy takes offsets: no view is allocated per block.
    src.copy(dst, from - pos, srcAt + from - b * BLOCK, srcAt + to - b * BLOCK);
  }


  /** Write src[srcOffset..] to [pos, +len) (within one MAX_IO window), read-modify-write at the edges. */
  private async writePiece(src: Uint8Array, srcOffset: number, pos: number, len: number, unsynced = false): Promise<void> {
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
      const gen = this.backendWriteBegin();
      if (tracing) trace.mark(S.volWrite);
      try {
        if (unsynced && this.backend.writeUnsynced) await this.backend.writeUnsynced(this.bounce, base, count * BLOCK, first * BLOCK);
        else await this.backend.write(this.bounce, base, count * BLOCK, first * BLOCK);
      } catch (err) {
        // The disk's copy is unknown now: never serve the old data from cache.
        this.cache.invalidateRange(id, first, count);
        throw err;
      } finally {
        this.backendWriteEnd(gen);
      }
      for (let b = 0; b < count; b++) {
        const key = cacheKey(id, first + b);
        if (count === 1) this.cache.put(key, this.bounce, base); // small writes are likely re-read
        else this.cache.update(key, this.bounce, base + b * BLOCK);
      }
    } finally {
      this.releaseBounce(slot);
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
        if (!(await this.backend.punchHole(b * BLOCK, n * BLOCK, mustZero))) {
          if (!mustZero) return;
          const slot = await this.getBounce();
          const gen = this.backendWriteBegin();
          try {
            this.bounce.fill(0, slot * MAX_IO, slot * MAX_IO + n * BLOCK);
            await this.backend.write(this.bounce, slot * MAX_IO, n * BLOCK, b * BLOCK);
          } finally {
            this.backendWriteEnd(gen);
            this.releaseBounce(slot);
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
