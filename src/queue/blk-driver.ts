/**
 * Driver side of the virtio-blk queue (runs in the guest): a BlockDevice whose
 * requests travel through the shared region to the controller's VirtioBlkDevice.
 *
 * Each request uses a fixed 64-byte control slot per head descriptor (header,
 * discard/zero segment, status byte) plus, for reads and writes, one data
 * buffer from a first-fit pool. Requests that find no free descriptors or
 * buffer space wait in a FIFO. Completions are reaped by a loop whose shape
 * depends on the queue's notification mode (poll, notify, adaptive).
 */
import { yieldCpu } from '../native/libc.ts';
import type { WriteFlags } from '../block/types.ts';
import { BlockDeviceBase, type BlockCapabilities } from '../block/device.ts';
import type { Lease, LentReadDevice, LentReadTarget, WriteTarget } from '../nbd/lent-read.ts';
import { StorvisorError, invalidArgument, ioError, notSupported, shutDown } from '../util/errors.ts';
import { tracing, trace, S } from '../util/trace.ts';
import { BufferPool } from './buffer-pool.ts';
import { SpinBudget } from './spin-budget.ts';
import { InFlightWait } from './in-flight-wait.ts';
import { CoreContention, type ContentionMeter } from '../native/contention.ts';
import {
  BLK_HEADER_BYTES,
  Ctl,
  RegionViews,
  SECTOR_BYTES,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_USED_F_NO_NOTIFY,
  regionLayout,
  ringDoorbell,
  waitDoorbell,
  wakeDoorbell,
  driverSpins,
  type QueueModeName,
  type RegionLayout,
} from './layout.ts';

export interface VirtioBlkDriverOptions {
  region: SharedArrayBuffer | ArrayBuffer;
  /** Adaptive mode: how long to keep spinning after the last submission/completion. Default 50 µs. */
  spinBudgetUs?: number;
  /**
   * Adaptive mode: let the budget grow up to this when sleeps turn out short
   * (see SpinBudget). Default = spinBudgetUs, i.e. a fixed budget.
   */
  maxSpinBudgetUs?: number;
  /**
   * idle=poll for the guest: in a mode where the driver spins, keep spinning
   * (and keep the thread's event loop from sleeping) even with nothing in
   * flight, so a request arriving on the guest's socket needs no wake-up.
   */
  idlePoll?: boolean;
  /**
   * Adaptive mode: sleep at once instead of spinning while other threads want
   * this core. Default: a CoreContention on this thread; false spins by the
   * budget alone.
   */
  contention?: ContentionMeter | false;
}

export interface VirtioBlkDriverStats {
  submitted: number;
  completed: number;
  kicks: number;
  interruptsWaited: number;
  spins: number;
  /** Doorbell waits that ended by the safety timeout with requests outstanding: each one is a lost wake-up. */
  waitTimeouts: number;
  /** Adaptive: waits that slept at once because other threads wanted this core (see CoreContention). */
  contendedSleeps: number;
  /** Reads whose data was lent (readLent), and lent data bytes not yet given back. */
  lentReads: number;
  lentBytes: number;
}

/** Per-head control slot: header at +0, discard/zero segment at +16, status at +32. */
const SLOT_BYTES = 64;
const SLOT_SEGMENT = 16;
const SLOT_STATUS = 32;
/** Safety net for doorbell waits: a lost wake-up costs at most this, never a hang. */
const WAIT_TIMEOUT_MS = 1000;
/** Adaptive mode: how long the driver spins for a completion before it sleeps on the call doorbell. */
const IN_FLIGHT_SPIN_MS = 2;
/**
 * A completion wait up to this long (µs) is worth spinning for whatever the spin
 * budget: a sync write to a file volume (~300 µs) spun for answers a wake-up
 * sooner; an RBD write (1-2 ms) is slept through (InFlightWait).
 */
const IN_FLIGHT_PAYS_US = 500;
/** Cached data-buffer views at most (one per pool offset in use; reset past this). */
const VIEW_CACHE_MAX = 1024;

interface Job {
  type: number;
  sector: number;
  /** Data bytes (reads and writes only). */
  dataBytes: number;
  /** Discard/write-zeroes segment. */
  segment?: { sector: number; sectors: number; flags: number };
  fill?: (view: Uint8Array) => void;
  extract?: (view: Uint8Array) => void;
  /** The fast path's caller buffers: copied whole into (writes) or out of (reads) the data buffer. */
  src?: Uint8Array | null;
  dst?: Uint8Array | null;
  /** A lent read's receiver: its data buffer stays allocated until the lease is released. */
  lent?: LentReadTarget | null;
  /** The lease a lent read hands out (made once per pooled job). */
  lease?: LeaseOf;
  resolve: () => void;
  reject: (err: Error) => void;
  /** A pooled job's reject for lent reads (made once). */
  lentFailed?: (err: Error) => void;
  /** A promise-free write's receiver, and the job's resolve/reject for it (made once). */
  writer?: WriteTarget | null;
  writeOk?: () => void;
  writeFailed?: (err: Error) => void;
  // Set on submission:
  /** The chain's descriptors: [head, data or status, status]; `ndesc` of them in use. */
  descs: number[];
  ndesc: number;
  buffer: number;
}

/** A pooled job's lease: gives its data buffer back once the borrower is done. */
class LeaseOf implements Lease {
  /** Lent and not yet given back. */
  out = false;
  constructor(
    private readonly driver: VirtioBlkDriver,
    private readonly job: Job,
  ) {}

  release(): void {
    if (!this.out) return; // once only: a second release must not free a buffer lent since
    this.out = false;
    this.driver.releaseLent(this.job);
  }
}

export class VirtioBlkDriver extends BlockDeviceBase implements LentReadDevice {
  readonly size: number;
  readonly blockSize = 4096;
  readonly readOnly = false;
  /** From the device's config (virtio-blk writeback): false means FLUSH/FUA are needed for durability. */
  readonly writeThrough: boolean;
  /** From the device's config: discard and write-zeroes are offered when their limits are non-zero. */
  readonly capabilities: BlockCapabilities;
  readonly mode: QueueModeName;
  /** See LentReadDevice.lending: the driver itself, so wrappers that inherit from it are not taken for lenders. */
  readonly lending: LentReadDevice = this;
  private readonly layout: RegionLayout;
  private readonly views: RegionViews;
  private readonly n: number;
  private readonly pool: BufferPool;
  private readonly slotBase: number;
  /** Largest data buffer of one request: size_max, capped by the pool. */
  private readonly chunkBytes: number;
  private readonly spinBudget: SpinBudget;
  private readonly freeDescs: number[] = [];
  private readonly inflight: Array<Job | undefined>;
  private inflightCount = 0;
  private readonly waiting: Job[] = [];
  /** Shadow of avail.idx (what we have published or are about to). */
  private availIdx: number;
  /** Shadow of used.idx: how far we have reaped. */
  private lastUsedIdx: number;
  private loopRunning = false;
  private kickScheduled = false;
  /**
   * A multi-chunk transfer is placing its chunks: they are published together
   * when it is done (held counts them), so a spinning device takes them in one
   * poll and can make them durable with one sync (see VirtioBlkDevice.groupSync).
   */
  private holding = false;
  private held = 0;
  /** Fast-path jobs, reused. */
  private readonly jobs: Job[] = [];
  /** Settlers of a write and its FLUSH (writeAndFlush), reused. */
  private readonly pairs: JobPair[] = [];
  /** Index of the first job still waiting in `waiting` (a FIFO without Array.shift). */
  private waitHead = 0;
  /** The job single() is making a promise for (read by the shared executor). */
  private executing: Job | null = null;
  private readonly executor = (resolve: () => void, reject: (err: Error) => void): void => {
    const job = this.executing!;
    job.resolve = resolve;
    job.reject = reject;
  };
  /**
   * Views of the data buffers, per offset: the pool hands the same offsets out
   * again and again, so copying a read out needs no new Uint8Array. Bounded by
   * the pool's granules in use; reset when it grows past VIEW_CACHE_MAX.
   */
  private readonly viewCache = new Map<number, Buffer>();
  /** Adaptive: whether other threads want this core, so spinning would take it from them. */
  private readonly contention: ContentionMeter | null;
  private sleptAt = 0;
  private lastActivity = 0;
  /** The last event was a submission (not a completion): see adaptivePass. */
  private lastWasSubmit = false;
  /**
   * Whether spinning for a completion pays: every completion is timed from the
   * driver's last event (a submission or a completion), spun for or slept
   * through; see adaptivePass.
   */
  private readonly inFlightWait = new InFlightWait();
  /** Why new requests are refused once closed: ESHUTDOWN after close(), EIO after the queue broke. */
  private refusal: StorvisorError = shutDown('queue driver');
  /** Serialises read-modify-write of partial sectors (two sub-sector writes to one sector must not race). */
  private rmwTail: Promise<void> = Promise.resolve();
  private readonly idlePoll: boolean;
  /** Data bytes of lent reads in flight or not yet given back, and their bound (a quarter of the data pool). */
  private lentBytes = 0;
  private readonly maxLentBytes: number;
  private readonly counters: VirtioBlkDriverStats = { submitted: 0, completed: 0, kicks: 0, interruptsWaited: 0, spins: 0, waitTimeouts: 0, contendedSleeps: 0, lentReads: 0, lentBytes: 0 };

  constructor(options: VirtioBlkDriverOptions) {
    super();
    this.layout = regionLayout(options.region);
    this.views = new RegionViews(options.region, this.layout);
    this.n = this.layout.queueSize;
    // A read or write needs three descriptors (header, data, status).
    if (this.n < 4) throw invalidArgument(`queue size ${this.n} too small for the virtio-blk driver (minimum 4)`);
    this.mode = this.layout.mode;
    this.size = this.layout.capacityBytes;
    this.writeThrough = !this.layout.writeback;
    this.capabilities = Object.freeze({
      trim: this.layout.maxDiscardSectors > 0,
      zeroes: this.layout.maxWriteZeroesSectors > 0,
      flush: true,
      fua: true, // a write then a FLUSH on a write-back device
      fastRead: false,
    });
    this.idlePoll = (options.idlePoll ?? false) && driverSpins(this.mode);
    const baseUs = options.spinBudgetUs ?? 50;
    this.spinBudget = new SpinBudget(baseUs, options.maxSpinBudgetUs ?? baseUs);
    this.slotBase = this.layout.dataOffset;
    const poolStart = Math.ceil((this.slotBase + this.n * SLOT_BYTES) / 4096) * 4096;
    this.pool = new BufferPool(poolStart, this.layout.dataOffset + this.layout.dataBytes);
    this.chunkBytes = Math.floor(Math.min(this.layout.sizeMax, this.pool.capacity) / SECTOR_BYTES) * SECTOR_BYTES;
    this.maxLentBytes = Math.max(this.chunkBytes, Math.floor(this.pool.capacity / 4));
    if (this.chunkBytes < SECTOR_BYTES) throw invalidArgument('region data area too small for the queue driver');
    this.inflight = new Array<Job | undefined>(this.n);
    for (let i = this.n - 1; i >= 0; i--) this.freeDescs.push(i);
    this.availIdx = Atomics.load(this.views.u16, this.views.availIdx);
    this.lastUsedIdx = Atomics.load(this.views.u16, this.views.usedIdx);
    // poll/adaptive: we spin on the used ring, so tell the device not to call us.
    // notify: never set it (every completion is signalled).
    Atomics.store(this.views.u16, this.views.availFlags, this.sleeps() ? 0 : VIRTQ_AVAIL_F_NO_INTERRUPT);
    this.contention = this.mode !== 'adaptive' || options.contention === false ? null : (options.contention ?? new CoreContention());
    if (this.idlePoll) this.startLoop();
  }

  /** The driver waits for calls (notify, poll-controller) instead of spinning on the used ring. */
  private sleeps(): boolean {
    return this.mode === 'notify' || this.mode === 'poll-controller';
  }

  protected label(): string {
    return 'queue driver';
  }

  /** ESHUTDOWN after close(), EIO after the queue broke. */
  protected override closedError(): StorvisorError {
    return this.refusal;
  }

  stats(): VirtioBlkDriverStats {
    return { ...this.counters, lentBytes: this.lentBytes };
  }

  pread(buf: Uint8Array, offset: number): Promise<void> {
    const len = buf.byteLength;
    // The common case, one sector-aligned chunk: one job, one promise, no closures.
    if (len > 0 && len <= this.chunkBytes && this.aligned(offset, len, SECTOR_BYTES) && this.inRange(offset, len)) {
      return this.single(VIRTIO_BLK_T_IN, offset, len, null, buf);
    }
    return this.preadSlow(buf, offset);
  }

  /**
   * A read whose data is lent (see nbd/lent-read.ts): the target gets a view of
   * the region's data buffer, which stays allocated until the lease is
   * released. No copy and no promise. Only one sector-aligned chunk qualifies.
   */
  readLent(offset: number, length: number, target: LentReadTarget): boolean {
    if (!(length > 0 && length <= this.chunkBytes && this.aligned(offset, length, SECTOR_BYTES) && this.inRange(offset, length))) return false;
    // Lent memory is bounded: a borrower that holds on (a client not reading its replies) must leave room for the rest.
    if (this.lentBytes + length > this.maxLentBytes) return false;
    this.lentBytes += length;
    const job = this.jobs.pop() ?? this.newJob();
    job.type = VIRTIO_BLK_T_IN;
    job.sector = offset / SECTOR_BYTES;
    job.dataBytes = length;
    job.src = job.dst = null;
    job.lent = target;
    job.resolve = noop;
    job.reject = job.lentFailed!;
    this.submit(job);
    return true;
  }

  /** A write without a promise (see nbd/lent-read.ts): one sector-aligned chunk, no FUA on a write-back device. */
  writeFrom(src: Uint8Array, offset: number, target: WriteTarget): boolean {
    const len = src.byteLength;
    if (!(len > 0 && len <= this.chunkBytes && this.aligned(offset, len, SECTOR_BYTES) && this.inRange(offset, len))) return false;
    const job = this.jobs.pop() ?? this.newJob();
    job.type = VIRTIO_BLK_T_OUT;
    job.sector = offset / SECTOR_BYTES;
    job.dataBytes = len;
    job.src = src;
    job.dst = null;
    job.writer = target;
    job.resolve = job.writeOk!;
    job.reject = job.writeFailed!;
    this.submit(job);
    return true;
  }

  /** @internal A lease came back: free its data buffer and pool the job. */
  releaseLent(job: Job): void {
    this.lentBytes -= job.dataBytes;
    if (job.buffer >= 0) this.pool.release(job.buffer, job.dataBytes);
    job.buffer = -1;
    job.lent = null;
    this.jobs.push(job);
    // Buffer space freed: waiting requests may fit now.
    if (this.waitHead < this.waiting.length && !this.closed) this.pump();
  }

  private newJob(): Job {
    const job = newJob();
    job.lease = new LeaseOf(this, job);
    job.lentFailed = (err: Error) => {
      const target = job.lent;
      job.lent = null;
      this.lentBytes -= job.dataBytes;
      job.resolve = job.reject = noop;
      target?.lentFailed(err);
    };
    job.writeOk = () => {
      const target = job.writer;
      job.writer = null;
      target?.writeDone(null);
    };
    job.writeFailed = (err: Error) => {
      const target = job.writer;
      job.writer = null;
      target?.writeDone(err);
    };
    return job;
  }

  private async preadSlow(buf: Uint8Array, offset: number): Promise<void> {
    this.checkRead(offset, buf.byteLength);
    if (buf.byteLength === 0) return;
    const start = alignDown(offset);
    const end = alignUp(offset + buf.byteLength);
    await this.transfer(VIRTIO_BLK_T_IN, start, end, (at, view) => {
      // Copy the part of this chunk [at, at+len) that the caller asked for.
      const from = Math.max(at, offset);
      const to = Math.min(at + view.byteLength, offset + buf.byteLength);
      buf.set(view.subarray(from - at, to - at), from - offset);
    });
  }

  pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags): Promise<void> {
    const len = buf.byteLength;
    if (len > 0 && len <= this.chunkBytes && this.aligned(offset, len, SECTOR_BYTES) && this.inRange(offset, len)) {
      if (this.writeThrough || !flags?.fua) return this.single(VIRTIO_BLK_T_OUT, offset, len, buf, null);
      return this.writeAndFlush(buf, offset);
    }
    return this.pwriteSlow(buf, offset, flags);
  }

  /**
   * A FUA write of one chunk on a write-back device (a database log batch):
   * the write and a FLUSH, pooled jobs placed together and published with one
   * avail.idx store (one kick), settled by one pooled pair when both have
   * completed. What pwriteSlow does for many chunks, without its async frame,
   * closures, request objects and Promise.allSettled per call.
   */
  private writeAndFlush(buf: Uint8Array, offset: number): Promise<void> {
    const pair = this.pairs.pop() ?? new JobPair(this.pairs);
    const write = this.jobs.pop() ?? this.newJob();
    write.type = VIRTIO_BLK_T_OUT;
    write.sector = offset / SECTOR_BYTES;
    write.dataBytes = buf.byteLength;
    write.src = buf;
    write.dst = null;
    const flush = this.jobs.pop() ?? this.newJob();
    flush.type = VIRTIO_BLK_T_FLUSH;
    flush.sector = 0;
    flush.dataBytes = 0;
    flush.src = flush.dst = null;
    const done = pair.begin(write, flush);
    // The device's FLUSH covers every write taken before it, and the ring keeps our order.
    const outer = this.hold();
    try {
      this.submit(write);
      this.submit(flush);
    } finally {
      this.release(outer);
    }
    return done;
  }

  private single(type: number, offset: number, bytes: number, src: Uint8Array | null, dst: Uint8Array | null): Promise<void> {
    const job = this.jobs.pop() ?? this.newJob();
    job.type = type;
    job.sector = offset / SECTOR_BYTES;
    job.dataBytes = bytes;
    job.src = src;
    job.dst = dst;
    this.executing = job;
    const done = new Promise<void>(this.executor);
    this.executing = null;
    this.submit(job);
    return done;
  }

  private async pwriteSlow(buf: Uint8Array, offset: number, flags?: WriteFlags): Promise<void> {
    this.checkWrite(offset, buf.byteLength);
    if (buf.byteLength === 0) return;
    const end = offset + buf.byteLength;
    const fill = (at: number, view: Uint8Array) => view.set(buf.subarray(at - offset, at - offset + view.byteLength));
    if (offset % SECTOR_BYTES === 0 && end % SECTOR_BYTES === 0) {
      if (flags?.fua && !this.writeThrough) {
        // The chunks and the FLUSH in one publish: one round trip, not two. This
        // device's FLUSH covers every write taken before it (VirtioBlkDevice
        // waits for those in flight first), and the ring keeps our order: the
        // FIFO places the flush after the last chunk. The write completes when
        // all of them have, and fails if any did.
        const outer = this.hold();
        let writes: Promise<void>, flushed: Promise<void>;
        try {
          writes = this.transfer(VIRTIO_BLK_T_OUT, offset, end, fill);
          flushed = this.enqueue({ type: VIRTIO_BLK_T_FLUSH, sector: 0, dataBytes: 0 });
        } finally {
          this.release(outer);
        }
        return allOrFirstError([writes, flushed]);
      }
      await this.transfer(VIRTIO_BLK_T_OUT, offset, end, fill);
    } else {
      await this.withRmwLock(() => this.writeUnaligned(buf, offset));
    }
    // virtio-blk has no FUA: on a write-back device, FUA is a write then a FLUSH.
    // On a write-through device an acknowledged write is already durable.
    if (flags?.fua && !this.writeThrough) await this.flush();
  }

  async flush(): Promise<void> {
    this.checkOpen();
    await this.enqueue({ type: VIRTIO_BLK_T_FLUSH, sector: 0, dataBytes: 0 });
  }

  /** Discard the whole sectors inside the range (trim may leave partial sectors as they are). */
  async trim(offset: number, length: number): Promise<void> {
    this.checkWrite(offset, length);
    if (!this.capabilities.trim) return; // not offered by the device; trim is advisory
    await this.ranged(VIRTIO_BLK_T_DISCARD, alignUp(offset), alignDown(offset + length), this.layout.maxDiscardSectors);
  }

  /**
   * Zero whole sectors with WRITE_ZEROES and partial edge sectors by
   * read-modify-write; where the device does not offer WRITE_ZEROES, by
   * writing zero buffers of at most one chunk.
   */
  async zero(offset: number, length: number): Promise<void> {
    this.checkWrite(offset, length);
    const end = offset + length;
    const innerStart = alignUp(offset);
    const innerEnd = alignDown(end);
    if (!this.capabilities.zeroes) {
      const zeroes = new Uint8Array(Math.min(length, this.chunkBytes));
      for (let at = offset; at < end; at += zeroes.byteLength) await this.pwrite(zeroes.subarray(0, Math.min(zeroes.byteLength, end - at)), at);
      return;
    }
    if (innerStart >= innerEnd) {
      if (length > 0) await this.pwrite(new Uint8Array(length), offset);
      return;
    }
    const ops = [this.ranged(VIRTIO_BLK_T_WRITE_ZEROES, innerStart, innerEnd, this.layout.maxWriteZeroesSectors)];
    if (offset < innerStart) ops.push(this.pwrite(new Uint8Array(innerStart - offset), offset));
    if (innerEnd < end) ops.push(this.pwrite(new Uint8Array(end - innerEnd), innerEnd));
    await allOrFirstError(ops);
  }

  /** Stop the completion loop; every pending or waiting request rejects with ESHUTDOWN. */
  close(): void {
    if (this.closed) return;
    this.failAll(shutDown('queue driver'));
    this.contention?.close();
    // Wake our own doorbell wait so the loop sees `closed` and exits now.
    wakeDoorbell(this.views, Ctl.call);
  }

  // ---- request building ----

  /**
   * Move the sector-aligned range [start, end) in chunks of at most size_max, all
   * queued at once. Chunks end on multiples of the chunk size: the volume splits
   * its writes at its own 128 KiB boundaries, and a chunk across one is two
   * backend writes.
   */
  private transfer(type: number, start: number, end: number, copy: (at: number, view: Uint8Array) => void): Promise<void> {
    const ops: Promise<void>[] = [];
    const outer = this.hold();
    try {
      for (let at = start; at < end; ) {
        const bytes = Math.min((Math.floor(at / this.chunkBytes) + 1) * this.chunkBytes, end) - at;
        const chunkAt = at;
        const bind = (view: Uint8Array) => copy(chunkAt, view);
        ops.push(this.enqueue({ type, sector: at / SECTOR_BYTES, dataBytes: bytes, ...(type === VIRTIO_BLK_T_IN ? { extract: bind } : { fill: bind }) }));
        at += bytes;
      }
    } finally {
      this.release(outer);
    }
    return allOrFirstError(ops);
  }

  /** Hold publishing (see `holding`); returns whether a hold was already on, for release(). */
  private hold(): boolean {
    const outer = this.holding;
    this.holding = true;
    return outer;
  }

  /** End the outermost hold: publish what was placed meanwhile, with one avail.idx store and one kick. */
  private release(outer: boolean): void {
    if (outer) return;
    this.holding = false;
    const n = this.held;
    this.held = 0;
    if (!this.closed) this.publish(n);
  }

  private ranged(type: number, start: number, end: number, maxSectors: number): Promise<void> {
    const ops: Promise<void>[] = [];
    const step = maxSectors * SECTOR_BYTES;
    for (let at = start; at < end; at += step) {
      const sectors = Math.min(step, end - at) / SECTOR_BYTES;
      ops.push(this.enqueue({ type, sector: 0, dataBytes: 0, segment: { sector: at / SECTOR_BYTES, sectors, flags: 0 } }));
    }
    return allOrFirstError(ops);
  }

  private async writeUnaligned(buf: Uint8Array, offset: number): Promise<void> {
    const end = offset + buf.byteLength;
    const start = alignDown(offset);
    const alignedEnd = alignUp(end);
    // Read the partial edge sectors; when the write lies within one sector,
    // `head` is that whole sector and already holds the tail bytes.
    const head = offset % SECTOR_BYTES !== 0 ? new Uint8Array(SECTOR_BYTES) : null;
    const tail = end % SECTOR_BYTES !== 0 && (head === null || alignedEnd - start > SECTOR_BYTES) ? new Uint8Array(SECTOR_BYTES) : null;
    const reads: Promise<void>[] = [];
    if (head) reads.push(this.pread(head, start));
    if (tail) reads.push(this.pread(tail, alignedEnd - SECTOR_BYTES));
    await allOrFirstError(reads);
    await this.transfer(VIRTIO_BLK_T_OUT, start, alignedEnd, (at, view) => {
      const chunkEnd = at + view.byteLength;
      if (head && at === start) view.set(head.subarray(0, Math.min(SECTOR_BYTES, view.byteLength)));
      if (tail && chunkEnd === alignedEnd) view.set(tail, view.byteLength - SECTOR_BYTES);
      const from = Math.max(at, offset);
      const to = Math.min(chunkEnd, end);
      view.set(buf.subarray(from - offset, to - offset), from - at);
    });
  }

  private withRmwLock(fn: () => Promise<void>): Promise<void> {
    const run = this.rmwTail.then(fn);
    this.rmwTail = run.catch(() => {});
    return run;
  }

  private enqueue(spec: Omit<Job, 'resolve' | 'reject' | 'descs' | 'ndesc' | 'buffer'>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.submit({ ...spec, resolve, reject, descs: [0, 0, 0], ndesc: 0, buffer: -1 });
    });
  }

  /** Queue a job and publish it at once: a spinning device sees it without waiting for this tick to end. */
  private submit(job: Job): void {
    if (this.closed) return job.reject(this.refusal);
    if (Atomics.load(this.views.ctl, Ctl.broken) !== 0) {
      this.failAll(ioError('queue is broken'));
      return job.reject(this.refusal);
    }
    // Nothing waiting ahead of it (the usual case): place it at once, no FIFO round trip.
    if (this.waitHead === this.waiting.length && this.place(job)) {
      this.publishOrHold(1);
      return;
    }
    this.waiting.push(job);
    this.pump();
  }

  /** Submit waiting jobs in FIFO order while descriptors and buffer space last; publish and kick once. */
  private pump(): void {
    let submitted = 0;
    while (this.waitHead < this.waiting.length) {
      if (!this.place(this.waiting[this.waitHead]!)) break;
      this.waiting[this.waitHead++] = undefined as unknown as Job;
      submitted++;
    }
    // Emptied: start over at index 0 (the array keeps its storage).
    if (this.waitHead === this.waiting.length && this.waitHead > 0) this.waiting.length = this.waitHead = 0;
    this.publishOrHold(submitted);
  }

  private publishOrHold(submitted: number): void {
    if (this.holding) this.held += submitted;
    else this.publish(submitted);
  }

  /** Take descriptors and a data buffer for the job and write its chain and ring entry (not yet published); false if either is short. */
  private place(job: Job): boolean {
    const need = job.dataBytes > 0 ? 3 : 2;
    if (this.freeDescs.length < need) return false;
    let buffer = -1;
    if (job.dataBytes > 0) {
      const at = this.pool.alloc(job.dataBytes);
      if (at === null) return false;
      buffer = at;
    }
    job.buffer = buffer;
    for (let i = 0; i < need; i++) job.descs[i] = this.freeDescs.pop()!;
    job.ndesc = need;
    this.writeChain(job);
    this.inflight[job.descs[0]!] = job;
    this.inflightCount++;
    // Plain store of the ring entry; made visible by the idx store in publish().
    this.views.u16[this.views.availRing(this.availIdx & (this.n - 1))] = job.descs[0]!;
    this.availIdx = (this.availIdx + 1) & 0xffff;
    return true;
  }

  /** Make placed entries visible with one avail.idx store; kick once per tick if the device sleeps. */
  private publish(submitted: number): void {
    if (submitted === 0) return;
    this.counters.submitted += submitted;
    this.lastActivity = performance.now();
    this.lastWasSubmit = true;
    // Release: descriptors, header and data (plain stores) are ordered before
    // the device can observe the new idx.
    Atomics.store(this.views.u16, this.views.availIdx, this.availIdx);
    if (tracing) tracePublished(this.inflightCount === submitted);
    // Seq-cst load after the idx store: if the device armed kicks (cleared
    // NO_NOTIFY) and then re-checked avail, either it saw our entries or we see the flag clear.
    if (!(Atomics.load(this.views.u16, this.views.usedFlags) & VIRTQ_USED_F_NO_NOTIFY) && !this.kickScheduled) {
      // Requests published in the same tick (chunks of one large I/O, concurrent
      // callers) share one kick: it goes when this tick's code is done.
      this.kickScheduled = true;
      void SETTLED.then(this.kickBound); // a microtask without queueMicrotask's AsyncResource
    }
    this.startLoop();
  }

  private readonly kickBound = (): void => {
    this.kickScheduled = false;
    if (this.closed) return;
    this.counters.kicks++;
    ringDoorbell(this.views, Ctl.kick);
    if (tracing) trace.mark(S.drvKicked);
  };

  private writeChain(job: Job): void {
    const { u8, u32 } = this.views;
    const head = job.descs[0]!;
    const slot = this.slotBase + head * SLOT_BYTES;
    // The slot is 64-byte aligned inside the region: write the header as u32 words (LE host).
    const w = slot >>> 2;
    u32[w] = job.type;
    u32[w + 1] = 0;
    u32[w + 2] = job.sector >>> 0;
    u32[w + 3] = Math.floor(job.sector / 2 ** 32);
    let headerLen = BLK_HEADER_BYTES;
    if (job.segment) {
      // The segment follows the header in one readable buffer; the device gathers both.
      u32[w + 4] = job.segment.sector >>> 0;
      u32[w + 5] = Math.floor(job.segment.sector / 2 ** 32);
      u32[w + 6] = job.segment.sectors;
      u32[w + 7] = job.segment.flags;
      headerLen += SLOT_SEGMENT;
    }
    u8[slot + SLOT_STATUS] = 0xff; // not a valid status: a device that skips it is detected
    const d0 = job.descs[0]!;
    const d1 = job.descs[1]!;
    const d2 = job.descs[2]!;
    if (job.dataBytes > 0) {
      if (job.src) u8.set(job.src, job.buffer);
      else if (job.fill) job.fill(this.dataView(job.buffer, job.dataBytes));
      this.writeDesc(d0, slot, headerLen, VIRTQ_DESC_F_NEXT, d1);
      this.writeDesc(d1, job.buffer, job.dataBytes, VIRTQ_DESC_F_NEXT | (job.type === VIRTIO_BLK_T_IN ? VIRTQ_DESC_F_WRITE : 0), d2);
      this.writeDesc(d2, slot + SLOT_STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
    } else {
      this.writeDesc(d0, slot, headerLen, VIRTQ_DESC_F_NEXT, d1);
      this.writeDesc(d1, slot + SLOT_STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
    }
  }

  /** Plain stores: published by the avail.idx store in pump(). */
  private writeDesc(i: number, addr: number, len: number, flags: number, next: number): void {
    const i32 = this.views.desc32(i);
    const i16 = this.views.desc16(i);
    this.views.u32[i32] = addr;
    this.views.u32[i32 + 1] = 0;
    this.views.u32[i32 + 2] = len;
    this.views.u16[i16 + 6] = flags;
    this.views.u16[i16 + 7] = next;
  }

  // ---- completions ----

  /** Reap every published used entry. Returns how many completed. */
  private reap(): number {
    if (this.closed) return 0;
    // Acquire: entries, status bytes and read data written by the device are
    // visible once we observe its used.idx store.
    const usedIdx = Atomics.load(this.views.u16, this.views.usedIdx);
    let done = 0;
    while (this.lastUsedIdx !== usedIdx) {
      const elem = this.views.usedElem(this.lastUsedIdx & (this.n - 1));
      const id = this.views.u32[elem]!;
      this.lastUsedIdx = (this.lastUsedIdx + 1) & 0xffff;
      const job = id < this.n ? this.inflight[id] : undefined;
      if (job === undefined) continue; // the device completed something we never sent: ignore it
      this.inflight[id] = undefined;
      this.inflightCount--;
      done++;
      if (tracing) trace.mark(S.drvReaped);
      this.finish(job);
    }
    if (Atomics.load(this.views.ctl, Ctl.broken) !== 0) this.failAll(ioError('queue is broken'));
    if (done > 0) {
      this.counters.completed += done;
      const now = performance.now();
      // Everything just completed was in flight since the last event at least.
      this.inFlightWait.record((now - this.lastActivity) * 1000, Math.max(this.spinBudget.us, IN_FLIGHT_PAYS_US));
      this.lastActivity = now;
      this.lastWasSubmit = false;
      this.pump();
    }
    return done;
  }

  private finish(job: Job): void {
    const status = this.views.u8[this.slotBase + job.descs[0]! * SLOT_BYTES + SLOT_STATUS]!;
    if (job.lent && status === VIRTIO_BLK_S_OK) {
      // Lent: the data buffer stays allocated until the borrower releases the lease.
      for (let i = 0; i < job.ndesc; i++) this.freeDescs.push(job.descs[i]!);
      job.ndesc = 0;
      const target = job.lent;
      this.counters.lentReads++;
      job.lease!.out = true;
      target.lentDone(this.dataView(job.buffer, job.dataBytes), job.lease!);
      return;
    }
    let error: Error | null = null;
    if (status === VIRTIO_BLK_S_OK) {
      if (job.dst) job.dst.set(this.dataView(job.buffer, job.dataBytes));
      else if (job.extract) {
        try {
          job.extract(this.dataView(job.buffer, job.dataBytes));
        } catch (err) {
          error = err as Error;
        }
      }
    } else if (status === VIRTIO_BLK_S_UNSUPP) error = notSupported(`virtio-blk request type ${job.type} unsupported by the device`);
    else error = ioError(`virtio-blk request type ${job.type} at sector ${job.sector} failed (status ${status})`);
    if (job.buffer >= 0) this.pool.release(job.buffer, job.dataBytes);
    for (let i = 0; i < job.ndesc; i++) this.freeDescs.push(job.descs[i]!);
    job.ndesc = 0;
    const { resolve, reject } = job;
    if (job.dst !== undefined || job.src !== undefined) {
      // A fast-path job (or a failed lent read): back to the pool.
      job.src = job.dst = null;
      job.buffer = -1;
      job.resolve = job.reject = noop;
      this.jobs.push(job);
    }
    if (error) reject(error);
    else resolve();
  }

  private failAll(err: StorvisorError): void {
    // In-flight buffers stay allocated: the device may still write into them.
    for (let i = 0; i < this.n; i++) {
      const job = this.inflight[i];
      if (job === undefined) continue;
      this.inflight[i] = undefined;
      job.reject(err);
    }
    this.inflightCount = 0;
    const waiting = this.waiting.splice(this.waitHead);
    this.waiting.length = this.waitHead = 0;
    for (const job of waiting) job.reject(err);
    if (!this.closed) {
      this.closed = true;
      this.refusal = err;
    }
  }

  /** A view of a data buffer (cached per offset: the pool reuses offsets). */
  private dataView(at: number, bytes: number): Buffer {
    const cached = this.viewCache.get(at);
    if (cached !== undefined && cached.byteLength === bytes) return cached;
    if (this.viewCache.size >= VIEW_CACHE_MAX) this.viewCache.clear();
    // A Buffer (not just a Uint8Array): a lent read's view goes to a socket as it is.
    const u8 = this.views.u8;
    const view = Buffer.from(u8.buffer, u8.byteOffset + at, bytes);
    this.viewCache.set(at, view);
    return view;
  }

  /**
   * The completion loops are callbacks (a bound function per mode, rescheduled
   * with setImmediate), not async loops: a spin costs one Immediate, not a
   * promise, a closure and an async frame.
   */
  private startLoop(): void {
    if (this.loopRunning || this.closed) return;
    this.loopRunning = true;
    if (driverSpins(this.mode)) this.pollPass();
    else if (this.sleeps()) this.notifyPass();
    else this.adaptivePass();
  }

  private loopEnded(): void {
    this.loopRunning = false;
  }

  /** Give the core away, then come back on the next event-loop turn (the worker's sockets are served between). */
  private spinAgain(pass: () => void): void {
    this.counters.spins++;
    yieldCpu();
    setImmediate(pass);
  }

  /** poll: spin on the used ring; stop when nothing is in flight (unless idle=poll). */
  private readonly pollPass = (): void => {
    for (;;) {
      if (this.closed || (this.inflightCount === 0 && !this.idlePoll)) return this.loopEnded();
      if (this.reap() === 0) break;
    }
    this.spinAgain(this.pollPass);
  };

  /** notify: sleep on the call doorbell between completions. */
  private readonly notifyPass = (): void => {
    while (this.inflightCount > 0 && !this.closed) {
      // Snapshot the doorbell before re-checking used.idx: a call after the check changes it.
      const seen = Atomics.load(this.views.ctl, Ctl.call);
      if (this.reap() > 0) continue;
      this.counters.interruptsWaited++;
      void waitDoorbell(this.views, Ctl.call, seen, WAIT_TIMEOUT_MS).then(this.notifyWoke);
      return;
    }
    this.loopEnded();
  };

  private readonly notifyWoke = (woken: boolean): void => {
    if (!woken && !this.closed) this.counters.waitTimeouts++;
    this.notifyPass();
  };

  /**
   * adaptive: spin while requests are in flight (their completions are due
   * within a disk access), for at most IN_FLIGHT_SPIN_MS; after the last
   * completion keep the loop turning for the spin budget, so a request that
   * arrives on the guest's socket right away (a client at queue depth 1)
   * finds a thread that is not asleep (haltpoll's idea); then let it sleep.
   * Whenever other threads want this core (CoreContention: this thread's own
   * run delay while it spins and yields), spinning would take the core from
   * work that produces its next event: it arms the call doorbell and sleeps
   * at once instead, and lets the event loop sleep when idle.
   */
  private readonly adaptivePass = (): void => {
    const { u16 } = this.views;
    while (!this.closed) {
      if (this.reap() > 0) continue;
      const now = performance.now();
      const since = now - this.lastActivity;
      const contended = this.contention !== null && this.contention.contended(now);
      if (this.inflightCount === 0) {
        if (contended || since >= this.spinBudget.ms) return this.loopEnded(); // the event loop may sleep
        return this.spinAgain(this.adaptivePass);
      }
      // Spin for a completion only when it is expected within the spin budget
      // (a file volume's tens of µs); one that takes far longer (an RBD
      // request, hundreds of µs to ms) would cost more CPU spinning than the
      // wake-up it saves, so then the queue is treated as idle: spin for the
      // budget after the last event (a request arriving on the socket needs no
      // wake-up), then sleep until the controller calls.
      // The budget after the last event is for what a completion brings (the
      // client's next request on the socket); after a submission, with
      // completions too slow to spin for, nothing comes before the completion:
      // an RBD guest at QD1 spun ~14 passes per request here for nothing.
      const pays = this.inFlightWait.pays;
      const spinMs = pays ? Math.max(this.spinBudget.ms, IN_FLIGHT_SPIN_MS) : this.lastWasSubmit ? 0 : this.spinBudget.ms;
      if (!contended && since < spinMs) return this.spinAgain(this.adaptivePass);
      // Arm: clear NO_INTERRUPT, snapshot the doorbell, then re-check the used
      // ring. The device stores used.idx before loading avail.flags, so either
      // this re-check sees its completion or it sees the flag clear and calls.
      Atomics.store(u16, this.views.availFlags, 0);
      const seen = Atomics.load(this.views.ctl, Ctl.call);
      if (this.reap() === 0 && this.inflightCount > 0) {
        this.counters.interruptsWaited++;
        if (contended) this.counters.contendedSleeps++;
        this.sleptAt = performance.now();
        void waitDoorbell(this.views, Ctl.call, seen, WAIT_TIMEOUT_MS).then(this.adaptiveWoke);
        return;
      }
      Atomics.store(u16, this.views.availFlags, VIRTQ_AVAIL_F_NO_INTERRUPT);
      this.lastActivity = performance.now();
    }
    this.loopEnded();
  };

  private readonly adaptiveWoke = (woken: boolean): void => {
    if (!woken && !this.closed) this.counters.waitTimeouts++;
    this.spinBudget.slept((performance.now() - this.sleptAt) * 1000);
    Atomics.store(this.views.u16, this.views.availFlags, VIRTQ_AVAIL_F_NO_INTERRUPT);
    // Reap before restarting the clock: the completion that woke us is timed from the event before the sleep.
    if (this.reap() === 0) this.lastActivity = performance.now();
    this.adaptivePass();
  };
}

/**
 * Tracing only: a publish from an idle queue opens a row of its own when the
 * current row has already met drvPublished (a function with no server that
 * starts rows, such as the database's log: one row per batch); a request an
 * NBD connection started keeps its row.
 */
function tracePublished(fromIdle: boolean): void {
  if (fromIdle && trace.met(S.drvPublished)) trace.start(S.drvPublished);
  else trace.mark(S.drvPublished);
}

/**
 * Settles one promise for two jobs (a write and its FLUSH): resolved once
 * both completed, rejected with the first error once both completed or
 * failed. Returns itself to its pool when settled.
 */
class JobPair {
  private left = 0;
  private error: Error | null = null;
  private resolve: () => void = noop;
  private reject: (err: Error) => void = noop;
  private readonly executor = (resolve: () => void, reject: (err: Error) => void): void => {
    this.resolve = resolve;
    this.reject = reject;
  };
  private readonly one = (): void => {
    if (--this.left === 0) this.settle();
  };
  private readonly failed = (err: Error): void => {
    this.error ??= err;
    this.one();
  };

  constructor(private readonly pool: JobPair[]) {}

  begin(a: Job, b: Job): Promise<void> {
    this.left = 2;
    this.error = null;
    a.resolve = b.resolve = this.one;
    a.reject = b.reject = this.failed;
    return new Promise<void>(this.executor);
  }

  private settle(): void {
    const { resolve, reject, error } = this;
    this.resolve = this.reject = noop;
    this.error = null;
    this.pool.push(this);
    if (error !== null) reject(error);
    else resolve();
  }
}

const noop = (): void => {};
const SETTLED = Promise.resolve();
const newJob = (): Job => ({ type: 0, sector: 0, dataBytes: 0, src: null, dst: null, lent: null, lease: undefined, writer: null, writeOk: noop, writeFailed: noop, resolve: noop, reject: noop, lentFailed: noop, descs: [0, 0, 0], ndesc: 0, buffer: -1 });

const alignDown = (n: number) => Math.floor(n / SECTOR_BYTES) * SECTOR_BYTES;
const alignUp = (n: number) => Math.ceil(n / SECTOR_BYTES) * SECTOR_BYTES;

/** Wait for every op (none may still be copying into a caller's buffer), then reject with the first error. */
async function allOrFirstError(ops: Promise<void>[]): Promise<void> {
  if (ops.length === 1) return ops[0];
  const results = await Promise.allSettled(ops);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
}
