/**
 * virtio-blk request processor (device side, runs in the controller).
 * Validate, then handle: every request is checked against its shape and the
 * capacity before the backend sees it; a bad request is answered with
 * IOERR/UNSUPP in its status byte and never reaches the backend.
 */
import { UNSYNCED_WRITE, hasFastRead, type BlockDevice, type FastReadDevice, type IoTarget } from '../block/types.ts';
import { capabilitiesOf } from '../block/device.ts';
import { errnoOf, invalidArgument, ioError } from '../util/errors.ts';
import { tracing, trace, S } from '../util/trace.ts';
import {
  BLK_DISCARD_SEGMENT_BYTES,
  BLK_HEADER_BYTES,
  Ctl,
  RegionViews,
  SECTOR_BYTES,
  VIRTIO_BLK_ID_BYTES,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
  regionLayout,
  type RegionLayout,
  waitDoorbell,
  wakeDoorbell,
} from './layout.ts';
import { PopKind, VirtqDevice, type VirtqElement } from './virtq-device.ts';
import { Histogram } from '../util/histogram.ts';

export interface VirtioBlkDeviceOptions {
  region: SharedArrayBuffer | ArrayBuffer;
  backend: BlockDevice;
  name: string;
  onBroken?: (reason: string) => void;
}

export interface VirtioBlkDeviceStats {
  requests: number;
  reads: number;
  writes: number;
  flushes: number;
  discards: number;
  writeZeroes: number;
  getIds: number;
  errors: number;
  unsupported: number;
  bytesRead: number;
  bytesWritten: number;
  /**
   * Writes taken in one poll that shared one sync: each group's writes went
   * without the backend's per-write sync and completed after one flush.
   */
  groupSyncs: number;
  groupedWrites: number;
  /**
   * Write-back queue over a file volume: lone writes taken with a FLUSH right
   * after them (a one-chunk FUA write) written with the volume's own sync
   * (O_DSYNC), and FLUSHes that then had nothing left to sync (no fdatasync).
   */
  syncedWrites: number;
  flushesElided: number;
  inFlight: number;
  maxInFlight: number;
  /** Request latency (pop → completion) in µs: bucket i counts latencies in [2^(i-1), 2^i) µs (see util/histogram.ts). */
  latencyUs: number[];
  latencyP50Us: number;
  latencyP99Us: number;
  /** The histogram's count and sum (µs), for a Prometheus histogram. */
  latencyCount: number;
  latencySumUs: number;
}

/** A validated request: what the backend will be asked to do. */
type WriteRequest = { type: 'write'; offset: number; data: Uint8Array[]; bytes: number };
type Request =
  | { type: 'read'; offset: number; data: Uint8Array[]; bytes: number }
  | WriteRequest
  | { type: 'flush' }
  | { type: 'get-id'; data: Uint8Array[] }
  | { type: 'discard' | 'write-zeroes'; ranges: Array<{ offset: number; length: number }> };

/** A write taken in this poll, waiting to be dispatched with the others at its end (see dispatchWrites). */
interface TakenWrite {
  request: WriteRequest;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** Validation outcome: a request, or the status to answer with. */
type Validated = { ok: true; request: Request } | { ok: false; status: number; reason: string };

const fail = (status: number, reason: string): Validated => ({ ok: false, status, reason });

/**
 * The one error mapper of virtio-blk: a backend failure to its status byte.
 * ENOTSUP (the backend cannot do it at all) is UNSUPP; every other failure
 * (ERANGE, EROFS, ENOSPC, ESHUTDOWN, EIO...) is IOERR, the only other
 * status virtio-blk has (§5.2.6).
 */
export function virtioStatusOf(err: unknown): number {
  return errnoOf(err) === 'ENOTSUP' ? VIRTIO_BLK_S_UNSUPP : VIRTIO_BLK_S_IOERR;
}

export class VirtioBlkDevice {
  readonly name: string;
  private readonly queue: VirtqDevice;
  private readonly backend: BlockDevice;
  private readonly capacity: number;
  private readonly layout: RegionLayout;
  private readonly views: RegionViews;
  private readonly id: Uint8Array;
  private inFlightCount = 0;
  private draining = false;
  private drainWaiters: Array<() => void> = [];
  private flushScheduled = false;
  /** Writes dispatched and not yet completed: a FLUSH waits for these first. */
  private readonly inFlightWrites = new Set<Promise<unknown>>();
  private kickSeen = 0;
  /** The promise-free read path: per-head state in arrays, one completion target for all heads. */
  private readonly fastBackend: FastReadDevice | null;
  private readonly headStatus: Array<Uint8Array | null>;
  private readonly headStarted: Float64Array;
  private readonly headBytes: Float64Array;
  private readonly readTarget: IoTarget = { ioDone: (head, result) => this.readDone(head, result) };
  private readonly histogram = new Histogram();
  /** The element poll() maps each chain into (handle() is done with it before the next). */
  private readonly element: VirtqElement = { head: 0, out: [], in: [] };
  private readonly flushBound = (): void => {
    this.flushScheduled = false;
    this.queue.flush();
    if (tracing) trace.mark(S.devFlushed);
    if (this.inFlightCount === 0 && this.drainWaiters.length > 0) {
      for (const resolve of this.drainWaiters.splice(0)) resolve();
    }
  };
  /**
   * The backend is write-through (every write durable when it completes) and can
   * skip that sync for a write whose caller flushes (WriteFlags.unsynced): then
   * the writes taken in one poll are written without it and completed together
   * after one flush. A guest's large write arrives as many chunks of at most
   * size_max, all published at once; made durable one by one, each chunk was a
   * sync of its own (a journal commit and a disk cache flush each).
   */
  private readonly groupSync: boolean;
  /**
   * The region is write-back (the guest flushes where it needs durability) over
   * a write-through backend that can skip its per-write sync: every write goes
   * without it and FLUSH makes them durable (one sync per guest flush, not one
   * per write). See writebackFor().
   */
  private readonly unsyncedWrites: boolean;
  /** Writes taken so far, and the last of them that a FLUSH in progress covers (see complete()). */
  private writesTaken = 0;
  private coveredWrites = 0;
  private flushesInProgress = 0;
  /** Completed writes held back for the FLUSH that covers them (head, used length pairs): see complete(). */
  private readonly quietWrites: number[] = [];
  /**
   * Writes taken in the current poll, dispatched at its end (groupSync), or
   * (unsyncedWrites) when a FLUSH is taken after them or at the poll's end.
   */
  private readonly taken: TakenWrite[] = [];
  /**
   * unsyncedWrites: writes sent to the backend without a sync so far, and how
   * many of the first of them a completed fdatasync covers. A FLUSH with none
   * uncovered among those sent before it needs no fdatasync (see takenFlush).
   * Starts at one uncovered: a guest before this one (a restart on the same
   * volume) may have left writes no flush covered, so the first FLUSH syncs.
   */
  private unsyncedSent = 1;
  private unsyncedCovered = 0;
  /** FLUSHes inside backend.flush() now (see `syncing`). */
  private syncsInProgress = 0;
  /** Discard/write-zeroes limits this device offers (0: not offered; answered UNSUPP). */
  private readonly maxDiscardSectors: number;
  private readonly maxWriteZeroesSectors: number;
  private readonly counters = {
    requests: 0, reads: 0, writes: 0, flushes: 0, discards: 0, writeZeroes: 0, getIds: 0,
    errors: 0, unsupported: 0, bytesRead: 0, bytesWritten: 0, groupSyncs: 0, groupedWrites: 0, syncedWrites: 0, flushesElided: 0, maxInFlight: 0,
  };

  constructor(options: VirtioBlkDeviceOptions) {
    this.layout = regionLayout(options.region);
    if (this.layout.capacityBytes > options.backend.size) {
      throw invalidArgument(`region capacity ${this.layout.capacityBytes} exceeds backend size ${options.backend.size}`);
    }
    this.name = options.name;
    this.backend = options.backend;
    this.capacity = this.layout.capacityBytes;
    const onBroken = options.onBroken ?? (() => {});
    this.queue = new VirtqDevice(options.region, this.layout, onBroken);
    this.views = this.queue.views;
    this.id = new Uint8Array(VIRTIO_BLK_ID_BYTES);
    this.id.set(new TextEncoder().encode(options.name).subarray(0, VIRTIO_BLK_ID_BYTES));
    this.kickSeen = Atomics.load(this.views.ctl, Ctl.kick);
    this.fastBackend = hasFastRead(options.backend) ? options.backend : null;
    const deferrable = options.backend.writeThrough && deferredSync(options.backend);
    this.unsyncedWrites = deferrable && this.layout.writeback;
    this.groupSync = deferrable && !this.layout.writeback;
    this.headStatus = new Array<Uint8Array | null>(this.layout.queueSize).fill(null);
    this.headStarted = new Float64Array(this.layout.queueSize);
    this.headBytes = new Float64Array(this.layout.queueSize);
    // The device owns its config space: offer discard and write-zeroes only
    // when the backend really does them (a zero limit is "not offered"; the
    // driver reads these when it attaches, after the device is made).
    const caps = capabilitiesOf(options.backend);
    this.maxDiscardSectors = caps.trim ? this.layout.maxDiscardSectors : 0;
    this.maxWriteZeroesSectors = caps.zeroes ? this.layout.maxWriteZeroesSectors : 0;
    Atomics.store(this.views.ctl, Ctl.maxDiscardSectors, this.maxDiscardSectors);
    Atomics.store(this.views.ctl, Ctl.maxWriteZeroesSectors, this.maxWriteZeroesSectors);
  }

  get broken(): boolean {
    return this.queue.broken;
  }

  /** Why the queue broke, or null. */
  get brokenReason(): string | null {
    return this.queue.brokenWhy;
  }

  get inFlight(): number {
    return this.inFlightCount;
  }

  /**
   * FLUSHes in flight that are in the backend's sync (an fdatasync: a
   * millisecond or more of the disk), for the poller: a queue whose requests
   * in flight are all such is not worth a spin (see Poller).
   */
  get syncing(): number {
    return this.syncsInProgress;
  }

  /** Requests the driver has made available and poll() has not taken yet (a cheap emptiness test). */
  get pending(): number {
    return this.queue.broken || this.draining ? 0 : this.queue.pending();
  }

  /** Pop up to `budget` available requests, validate and dispatch them. Returns how many were taken. Never throws. */
  poll(budget = Infinity): number {
    if (this.queue.broken || this.draining) return 0;
    let taken = 0;
    try {
      const element = this.element;
      while (taken < budget) {
        const kind = this.queue.next(element);
        if (kind === PopKind.Empty || kind === PopKind.BrokenRing) break;
        taken++;
        this.counters.requests++;
        if (kind === PopKind.BadChain) {
          this.counters.errors++;
          const status = this.queue.badStatus;
          if (status !== null) status[0] = VIRTIO_BLK_S_IOERR;
          this.queue.push(this.queue.badHead, status !== null ? 1 : 0);
          continue;
        }
        this.handle(element);
      }
      if (this.taken.length > 0) this.dispatchWrites();
    } catch (err) {
      // Only a bug in this file can get here; contain it as a broken queue.
      this.queue.markBroken(`internal error: ${(err as Error)?.message ?? String(err)}`);
    }
    this.queue.flush();
    return taken;
  }

  /** Ask the driver to kick again, then re-check the ring. True = empty and armed: safe to sleep in waitKick. */
  enableKick(): boolean {
    this.kickSeen = this.queue.armKick();
    return this.pending === 0;
  }

  /** The device is spinning: the driver need not kick. */
  disableKick(): void {
    this.queue.disarmKick();
  }

  /** Sleep until the driver kicks (or timeoutMs passes). Call after enableKick() returned true. */
  async waitKick(timeoutMs: number): Promise<'kick' | 'timeout'> {
    if (this.queue.broken) return 'timeout';
    const kicked = await waitDoorbell(this.views, Ctl.kick, this.kickSeen, timeoutMs);
    this.kickSeen = Atomics.load(this.views.ctl, Ctl.kick);
    return kicked ? 'kick' : 'timeout';
  }

  /** Wake a waitKick() in progress without a kick (so a poller can shut down promptly). */
  wake(): void {
    wakeDoorbell(this.views, Ctl.kick);
  }

  /** Stop taking requests; resolves once every in-flight backend operation has completed and been published. */
  drain(): Promise<void> {
    this.draining = true;
    if (this.inFlightCount === 0) {
      this.queue.flush();
      return Promise.resolve();
    }
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  stats(): VirtioBlkDeviceStats {
    return { ...this.counters, inFlight: this.inFlightCount, latencyUs: [...this.histogram.buckets], latencyP50Us: this.histogram.quantile(0.5), latencyP99Us: this.histogram.quantile(0.99), latencyCount: this.histogram.count, latencySumUs: this.histogram.sumUs };
  }

  private handle(element: VirtqElement): void {
    if (tracing) trace.start(S.devTaken);
    const started = performance.now();
    const status = statusByte(element);
    if (status === null) {
      // No writable byte to answer in: complete with nothing written.
      this.counters.errors++;
      this.queue.push(element.head, 0);
      return;
    }
    if (this.fastBackend !== null && this.tryFastRead(element, status, started)) return;
    const checked = this.validate(element);
    if (!checked.ok) {
      if (checked.status === VIRTIO_BLK_S_UNSUPP) this.counters.unsupported++;
      else this.counters.errors++;
      status[0] = checked.status;
      this.queue.push(element.head, 1);
      return;
    }
    const { request } = checked;
    if (request.type === 'get-id') {
      this.counters.getIds++;
      const written = copyInto(request.data, this.id);
      status[0] = VIRTIO_BLK_S_OK;
      this.queue.push(element.head, written + 1);
      return;
    }
    this.inFlightCount++;
    if (this.inFlightCount > this.counters.maxInFlight) this.counters.maxInFlight = this.inFlightCount;
    if (request.type === 'read' && request.data.length === 1 && this.fastBackend !== null) {
      // The hot path: one guest buffer, read in place, no promise.
      const head = element.head;
      this.headStatus[head] = status;
      this.headStarted[head] = started;
      this.headBytes[head] = request.bytes;
      try {
        this.fastBackend.readTo(request.data[0]!, request.offset, this.readTarget, head);
      } catch {
        this.readDone(head, -5);
      }
      return;
    }
    // Write-back over a file volume: the writes taken before a FLUSH go out as it is taken (see sendTaken).
    if (request.type === 'flush' && this.unsyncedWrites && this.taken.length > 0) this.sendTaken(true);
    const op = request.type !== 'write' ? this.dispatch(request)
      : this.unsyncedWrites || this.groupSync ? this.takeWrite(request)
      : this.dispatch(request);
    let seq = 0;
    if (request.type === 'write') {
      seq = ++this.writesTaken;
      this.inFlightWrites.add(op);
      const forget = () => this.inFlightWrites.delete(op);
      op.then(forget, forget);
    } else if (request.type === 'flush') {
      this.flushesInProgress++;
      this.coveredWrites = this.writesTaken;
    }
    // The element is reused for the next chain: keep its head, not the element.
    const head = element.head;
    const finish = (code: number, usedLen: number, done: Request | null) => {
      try {
        if (request.type === 'flush') {
          this.flushesInProgress--;
          this.postQuietWrites();
        }
        // On a write-back queue, a write that a FLUSH taken after it covers is
        // posted without a call: the guest waits for that flush (a FUA write
        // is its chunks and a FLUSH), whose completion publishes both. One
        // wake-up of the guest per FUA write instead of two.
        const quiet = this.unsyncedWrites && seq !== 0 && seq <= this.coveredWrites && this.flushesInProgress > 0 && code === VIRTIO_BLK_S_OK;
        this.complete(head, status, code, usedLen, started, done, quiet);
      } catch (err) {
        // A bug here must not become an unhandled rejection that kills the controller.
        this.queue.markBroken(`internal error: ${(err as Error)?.message ?? String(err)}`);
      }
    };
    op.then(
      () => finish(VIRTIO_BLK_S_OK, writableBytes(request) + 1, request),
      (err) => finish(virtioStatusOf(err), 1, null),
    );
  }

  /**
   * The hot path, a read in the driver's usual shape: a 16-byte header, one
   * data buffer, a 1-byte status. Checked as validate() would (type, direction,
   * 512-byte multiple, range), read in place with no promise and no object
   * made. Any other shape or an invalid header falls through to validate(),
   * which answers it. The header is read once, here.
   */
  private tryFastRead(element: VirtqElement, status: Uint8Array, started: number): boolean {
    const out = element.out;
    const inb = element.in;
    if (out.length !== 1 || inb.length !== 2 || inb[1]!.byteLength !== 1) return false;
    const header = out[0]!;
    if (header.byteLength !== BLK_HEADER_BYTES || (header.byteOffset & 3) !== 0) return false;
    const w = header.byteOffset >>> 2;
    const u32 = this.views.u32;
    if (u32[w] !== VIRTIO_BLK_T_IN) return false;
    const data = inb[0]!;
    const bytes = data.byteLength;
    if (bytes % SECTOR_BYTES !== 0) return false;
    const offset = this.rangeStart(u32[w + 2]!, u32[w + 3]!, bytes);
    if (offset === null) return false;
    const head = element.head;
    this.inFlightCount++;
    if (this.inFlightCount > this.counters.maxInFlight) this.counters.maxInFlight = this.inFlightCount;
    this.headStatus[head] = status;
    this.headStarted[head] = started;
    this.headBytes[head] = bytes;
    try {
      this.fastBackend!.readTo(data, offset, this.readTarget, head);
    } catch {
      this.readDone(head, -5);
    }
    return true;
  }

  /**
   * Check the request's shape and range; trusts nothing in the guest's buffers.
   * Header and segment fields are read exactly once into the returned request,
   * so a guest rewriting them after validation cannot change what executes.
   */
  private validate(element: VirtqElement): Validated {
    const header = gather(element.out, BLK_HEADER_BYTES);
    if (header === null) return fail(VIRTIO_BLK_S_IOERR, 'request header shorter than 16 bytes');
    let type: number, sectorLo: number, sectorHi: number;
    if (header.buffer === this.views.buffer && (header.byteOffset & 3) === 0) {
      // A view into the region, 4-aligned (the driver's slots are): read its words in place.
      const w = header.byteOffset >>> 2;
      type = this.views.u32[w]!;
      sectorLo = this.views.u32[w + 2]!;
      sectorHi = this.views.u32[w + 3]!;
    } else {
      const hv = new DataView(header.buffer, header.byteOffset, BLK_HEADER_BYTES);
      type = hv.getUint32(0, true);
      sectorLo = hv.getUint32(8, true);
      sectorHi = hv.getUint32(12, true);
    }
    const outData = sliceAfter(element.out, BLK_HEADER_BYTES);
    const inData = withoutLastByte(element.in);
    const outBytes = totalBytes(outData);
    const inBytes = totalBytes(inData);
    switch (type) {
      case VIRTIO_BLK_T_IN:
      case VIRTIO_BLK_T_OUT: {
        const isRead = type === VIRTIO_BLK_T_IN;
        if (isRead ? outBytes !== 0 : inBytes !== 0) return fail(VIRTIO_BLK_S_IOERR, 'data in the wrong direction');
        const bytes = isRead ? inBytes : outBytes;
        if (bytes % SECTOR_BYTES !== 0) return fail(VIRTIO_BLK_S_IOERR, 'data length not a multiple of 512');
        const offset = this.rangeStart(sectorLo, sectorHi, bytes);
        if (offset === null) return fail(VIRTIO_BLK_S_IOERR, 'sector range past capacity');
        return { ok: true, request: { type: isRead ? 'read' : 'write', offset, data: isRead ? inData : outData, bytes } };
      }
      case VIRTIO_BLK_T_FLUSH:
        if (outBytes !== 0 || inBytes !== 0) return fail(VIRTIO_BLK_S_IOERR, 'flush carries data');
        return { ok: true, request: { type: 'flush' } };
      case VIRTIO_BLK_T_GET_ID:
        if (outBytes !== 0 || inBytes === 0) return fail(VIRTIO_BLK_S_IOERR, 'get-id needs a writable id buffer');
        return { ok: true, request: { type: 'get-id', data: inData } };
      case VIRTIO_BLK_T_DISCARD:
      case VIRTIO_BLK_T_WRITE_ZEROES:
        return this.validateRanges(type, outData, outBytes, inBytes);
      default:
        return fail(VIRTIO_BLK_S_UNSUPP, `unknown request type ${type}`);
    }
  }

  private validateRanges(type: number, outData: Uint8Array[], outBytes: number, inBytes: number): Validated {
    const isDiscard = type === VIRTIO_BLK_T_DISCARD;
    if (inBytes !== 0 || outBytes === 0 || outBytes % BLK_DISCARD_SEGMENT_BYTES !== 0) {
      return fail(VIRTIO_BLK_S_IOERR, 'discard/write-zeroes segments malformed');
    }
    const segments = gather(outData, outBytes)!;
    const view = new DataView(segments.buffer, segments.byteOffset, outBytes);
    const limit = isDiscard ? this.maxDiscardSectors : this.maxWriteZeroesSectors;
    if (limit === 0) return fail(VIRTIO_BLK_S_UNSUPP, `${isDiscard ? 'discard' : 'write-zeroes'} not offered by this device`);
    const ranges: Array<{ offset: number; length: number }> = [];
    for (let at = 0; at < outBytes; at += BLK_DISCARD_SEGMENT_BYTES) {
      const sectors = view.getUint32(at + 8, true);
      const flags = view.getUint32(at + 12, true);
      // §5.2.6.2: unmap is meaningless for discard; other flag bits are reserved.
      if (isDiscard ? flags !== 0 : (flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) !== 0) {
        return fail(VIRTIO_BLK_S_UNSUPP, 'unsupported discard/write-zeroes flags');
      }
      if (sectors > limit) return fail(VIRTIO_BLK_S_IOERR, 'discard/write-zeroes segment too large');
      const offset = this.rangeStart(view.getUint32(at, true), view.getUint32(at + 4, true), sectors * SECTOR_BYTES);
      if (offset === null) return fail(VIRTIO_BLK_S_IOERR, 'sector range past capacity');
      ranges.push({ offset, length: sectors * SECTOR_BYTES });
    }
    return { ok: true, request: { type: isDiscard ? 'discard' : 'write-zeroes', ranges } };
  }

  /** Byte offset of a sector if [sector*512, +bytes) fits the capacity, else null. */
  private rangeStart(sectorLo: number, sectorHi: number, bytes: number): number | null {
    if (sectorHi !== 0) return null;
    const offset = sectorLo * SECTOR_BYTES; // < 2^41: exact
    return offset + bytes <= this.capacity ? offset : null;
  }

  /** A write for dispatchWrites at the end of this poll; settles when it is durable (or failed). */
  private takeWrite(request: WriteRequest): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.taken.push({ request, resolve, reject });
    });
  }

  /**
   * The writes taken in this poll. A lone one goes as always (durable when it
   * completes: one sync, no flush after). Several go without the per-write sync
   * and then share one flush, begun once every one of them has completed; each
   * completes only after that flush, so an acknowledged write is durable exactly
   * as before. A failed write fails alone (the driver fails the guest's whole
   * I/O when any of its chunks fails); a failed flush fails every write of the
   * group, since none of them is known durable.
   */
  private dispatchWrites(): void {
    if (this.unsyncedWrites) return this.sendTaken(false);
    const taken = this.taken.splice(0);
    if (taken.length === 1) {
      const w = taken[0]!;
      this.dispatch(w.request).then(w.resolve, w.reject);
      return;
    }
    this.counters.groupSyncs++;
    this.counters.groupedWrites += taken.length;
    const writes = taken.map((w) => this.writeUnsynced(w.request));
    void Promise.allSettled(writes).then(async (results) => {
      let flushed: unknown = null;
      if (results.some((r) => r.status === 'fulfilled')) {
        try {
          await this.backend.flush();
        } catch (err) {
          flushed = err ?? ioError('flush failed');
        }
      }
      for (let i = 0; i < taken.length; i++) {
        const r = results[i]!;
        if (r.status === 'rejected') taken[i]!.reject(r.reason);
        else if (flushed !== null) taken[i]!.reject(flushed);
        else taken[i]!.resolve();
      }
    });
  }

  /**
   * Write-back over a file volume: send the writes taken since the last FLUSH
   * (`flushNext`: one is being taken now; else at the end of a poll). A lone
   * write of at most SYNCED_MAX_BYTES with a FLUSH right after it (a small
   * database log batch: a one-chunk FUA write) is written with the volume's
   * own sync, O_DSYNC, durable when it completes: one backend operation
   * instead of a buffered write and an fdatasync after it (fio on this
   * machine, 8 KiB sequential to a sparse file: 5,674 against 1,646 per
   * second when the disk was quiet). The FLUSH then finds nothing uncovered
   * and completes without a sync. Every other write goes unsynced, and the
   * next FLUSH makes it durable with one fdatasync.
   */
  private sendTaken(flushNext: boolean): void {
    const taken = this.taken;
    if (flushNext && SYNCED_WRITES && taken.length === 1 && taken[0]!.request.bytes <= SYNCED_MAX_BYTES) {
      const w = taken[0]!;
      taken.length = 0;
      this.counters.syncedWrites++;
      this.dispatch(w.request).then(w.resolve, w.reject);
      return;
    }
    for (let i = 0; i < taken.length; i++) {
      const w = taken[i]!;
      this.unsyncedSent++;
      this.writeUnsynced(w.request).then(w.resolve, w.reject);
    }
    taken.length = 0;
  }

  /**
   * A FLUSH on a write-back queue over a file volume: wait for the writes
   * taken before it, then fdatasync only if one of the unsynced writes sent
   * before it is not covered by a completed fdatasync yet (writes sent synced
   * are durable when they complete).
   */
  private async flushUnsynced(): Promise<void> {
    const sent = this.unsyncedSent;
    await Promise.allSettled([...this.inFlightWrites]);
    if (sent <= this.unsyncedCovered) {
      this.counters.flushesElided++;
      return;
    }
    await this.backendSync();
    // Every write sent before it had completed when the fdatasync began.
    if (sent > this.unsyncedCovered) this.unsyncedCovered = sent;
  }

  /** The backend's flush, counted in `syncing` while it runs. */
  private async backendSync(): Promise<void> {
    this.syncsInProgress++;
    try {
      await this.backend.flush();
    } finally {
      this.syncsInProgress--;
    }
  }

  /** A write without the backend's per-write sync (the caller flushes after it). */
  private async writeUnsynced(request: WriteRequest): Promise<void> {
    if (request.data.length === 1) return this.backend.pwrite(request.data[0]!, request.offset, UNSYNCED_WRITE);
    const ops: Promise<void>[] = [];
    let offset = request.offset;
    for (const seg of request.data) {
      ops.push(this.backend.pwrite(seg, offset, UNSYNCED_WRITE));
      offset += seg.byteLength;
    }
    await settleAll(ops);
  }

  private async dispatch(request: Exclude<Request, { type: 'get-id' }>): Promise<void> {
    switch (request.type) {
      case 'read':
      case 'write': {
        if (request.data.length === 1) {
          // The common case: one guest buffer, handed to the backend as is (no copy).
          const seg = request.data[0]!;
          return request.type === 'read' ? this.backend.pread(seg, request.offset) : this.backend.pwrite(seg, request.offset);
        }
        // One backend call per guest segment, at sequential offsets; the
        // common single-segment case reads/writes the shared buffer directly.
        const ops: Promise<void>[] = [];
        let offset = request.offset;
        for (const seg of request.data) {
          ops.push(request.type === 'read' ? this.backend.pread(seg, offset) : this.backend.pwrite(seg, offset));
          offset += seg.byteLength;
        }
        await settleAll(ops);
        return;
      }
      case 'flush':
        if (this.unsyncedWrites) return this.flushUnsynced();
        // Cover every write dispatched before this flush, then make them durable.
        await Promise.allSettled([...this.inFlightWrites]);
        await this.backendSync();
        return;
      case 'discard':
      case 'write-zeroes':
        await settleAll(request.ranges.map((r) =>
          request.type === 'discard' ? this.backend.trim(r.offset, r.length) : this.backend.zero(r.offset, r.length)));
        return;
    }
  }

  /** Post a completion; `quiet`: held back until the FLUSH covering it completes (postQuietWrites), then posted with it. */
  private complete(head: number, status: Uint8Array, code: number, usedLen: number, started: number, done: Request | null, quiet = false): void {
    this.inFlightCount--;
    if (code !== VIRTIO_BLK_S_OK) this.counters.errors++;
    else if (done !== null) this.count(done);
    this.histogram.record((performance.now() - started) * 1000);
    if (quiet) {
      status[0] = code;
      this.quietWrites.push(head, usedLen);
      return;
    }
    if (!this.queue.broken) {
      status[0] = code;
      this.queue.push(head, usedLen);
    }
    if (tracing) trace.mark(S.devPushed);
    // Completions that land in the same tick share one used.idx store and one call.
    if (!quiet && !this.flushScheduled) {
      this.flushScheduled = true;
      // A then() on a settled promise, not queueMicrotask (which makes an AsyncResource per call).
      void SETTLED.then(this.flushBound);
    }
  }

  /** A FLUSH completed: post the writes held back for it, ahead of the flush itself (same used.idx store). */
  private postQuietWrites(): void {
    const q = this.quietWrites;
    if (q.length === 0) return;
    if (!this.queue.broken) for (let i = 0; i < q.length; i += 2) this.queue.push(q[i]!, q[i + 1]!);
    q.length = 0;
  }

  private readDone(head: number, result: number): void {
    const status = this.headStatus[head]!;
    this.headStatus[head] = null;
    const bytes = this.headBytes[head]!;
    if (result >= 0) {
      this.counters.reads++;
      this.counters.bytesRead += bytes;
    }
    try {
      this.complete(head, status, result >= 0 ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR, result >= 0 ? bytes + 1 : 1, this.headStarted[head]!, null);
    } catch (err) {
      this.queue.markBroken(`internal error: ${(err as Error)?.message ?? String(err)}`);
    }
  }

  private count(done: Request): void {
    switch (done.type) {
      case 'read': this.counters.reads++; this.counters.bytesRead += done.bytes; break;
      case 'write': this.counters.writes++; this.counters.bytesWritten += done.bytes; break;
      case 'flush': this.counters.flushes++; break;
      case 'discard': this.counters.discards++; break;
      case 'write-zeroes': this.counters.writeZeroes++; break;
      case 'get-id': break;
    }
  }
}

/**
 * The largest lone write before a FLUSH sent synced. Measured through a file
 * volume on this machine's ext4 (interleaved, median of 100 each, loaded
 * disk), one O_DSYNC write against an unsynced write + fdatasync: 4 KiB 829
 * / 1,134 µs, 8 KiB 1,743-1,861 / 1,605-1,865, 16 KiB 1,393 / 1,330, 32 KiB
 * 1,312 / 961, 64 KiB 2,768-3,391 / 1,215-1,268. Small writes gain (and
 * save a backend operation), large ones lose.
 */
const SYNCED_MAX_BYTES = 16 * 1024;
/** STORVISOR_QUEUE_SYNCED_WRITES=0: every write on such a queue unsynced and every FLUSH an fdatasync (to compare). */
const SYNCED_WRITES = process.env.STORVISOR_QUEUE_SYNCED_WRITES !== '0';

/** Whether the backend can skip its per-write sync for a caller that flushes (a Volume on a file: see Volume.deferredSync). */
function deferredSync(backend: BlockDevice): boolean {
  return (backend as { deferredSync?: boolean }).deferredSync === true;
}

/**
 * Whether a guest's region over `volume` should be write-back (Ctl.writeback):
 * when the volume is (its writes are not durable until a flush), and when it is
 * write-through but can skip the sync per write. Then the guest's writes cost no
 * sync each and its flushes one each, as a function integrated on a file does
 * (write, then fdatasync): every function flushes or writes with FUA where it
 * needs durability. A write the guest has seen complete is on the disk (or in
 * the host's page cache) either way, so it survives kill -9 of the guest or the
 * controller; only its survival of a power loss waits for the flush.
 */
export function writebackFor(volume: BlockDevice): boolean {
  return !volume.writeThrough || deferredSync(volume);
}

/** A settled promise to queue microtasks on. */
const SETTLED = Promise.resolve();

/** Wait for all, then fail if any failed (so no op is still touching guest memory when we complete). */
async function settleAll(ops: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(ops);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
}

function writableBytes(request: Request): number {
  return request.type === 'read' ? request.bytes : 0;
}

/** The status byte: the last byte of the last writable buffer. */
function statusByte(element: VirtqElement): Uint8Array | null {
  const last = element.in[element.in.length - 1];
  if (last === undefined) return null;
  return last.byteLength === 1 ? last : last.subarray(last.byteLength - 1);
}

function totalBytes(views: Uint8Array[]): number {
  let n = 0;
  for (const v of views) n += v.byteLength;
  return n;
}

/** The first `n` bytes of the buffers, contiguous (a view when one buffer holds them, else a copy); null if shorter. */
function gather(views: Uint8Array[], n: number): Uint8Array | null {
  const first = views[0];
  if (first !== undefined && first.byteLength >= n) return first.subarray(0, n);
  if (totalBytes(views) < n) return null;
  const out = new Uint8Array(n);
  let at = 0;
  for (const v of views) {
    if (at === n) break;
    const take = Math.min(v.byteLength, n - at);
    out.set(v.subarray(0, take), at);
    at += take;
  }
  return out;
}

/** The buffers with their first `n` bytes removed. */
function sliceAfter(views: Uint8Array[], n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let skip = n;
  for (const v of views) {
    if (skip >= v.byteLength) {
      skip -= v.byteLength;
      continue;
    }
    out.push(skip > 0 ? v.subarray(skip) : v);
    skip = 0;
  }
  return out;
}

/** The writable buffers minus the trailing status byte. */
function withoutLastByte(views: Uint8Array[]): Uint8Array[] {
  if (views.length === 0) return [];
  const out = views.slice(0, -1);
  const last = views[views.length - 1]!;
  if (last.byteLength > 1) out.push(last.subarray(0, last.byteLength - 1));
  return out;
}

function copyInto(targets: Uint8Array[], source: Uint8Array): number {
  let at = 0;
  for (const t of targets) {
    if (at >= source.byteLength) break;
    const take = Math.min(t.byteLength, source.byteLength - at);
    t.set(source.subarray(at, at + take));
    at += take;
  }
  return at;
}
