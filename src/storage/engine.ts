import { invalidArgument, notSupported } from '../util/errors.ts';
import { read, write, fdatasync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { native, nativeUnavailable, type NativeAddon, type Ring } from '../native/addon.ts';
import { tracing, trace, S } from '../util/trace.ts';

/**
 * The backend I/O engine: submits reads, writes and syncs on file descriptors
 * and reports each completion to a target object, with no promise, closure or
 * other allocation per request.
 *
 * - `io_uring` (the data path): requests are prepared as SQEs and handed to the
 *   kernel with one system call per batch (a microtask after the code that
 *   issued them). Completions are read from the completion ring by the poller
 *   while it spins (a memory read, no thread hand-off); when nothing spins, an
 *   eventfd registered with the ring wakes this thread's event loop directly.
 *   A lone request (nothing else in flight, no poller spinning: a QD1 client)
 *   goes to the kernel at once, and the microtask after its caller polls the
 *   completion ring for it in C for a bounded time (`holdUs`, see
 *   UringOptions): no event-loop pass, no eventfd, no poller and no wake-up of
 *   a sleeping thread in between.
 * - `libuv` (the fallback): Node's fs calls on the libuv thread pool, two
 *   thread hand-offs per request; chosen where io_uring is missing or refused,
 *   or forced with STORVISOR_ENGINE=libuv.
 *
 * A result is the byte count (>= 0) or a negative errno, as the kernel gives it.
 */
import type { IoTarget } from '../block/types.ts';
export type { IoTarget };

export interface EngineStats {
  engine: EngineKind;
  submitted: number;
  completed: number;
  /** System calls that handed SQEs to the kernel (io_uring): submitted / submits is the batch size. */
  submits: number;
  /** Completions found by a spinning poller, and by an eventfd wake-up. */
  reapedPolling: number;
  reapedWoken: number;
  /**
   * Lone requests completed while their submitter held the loop (io_uring `holdUs`),
   * holds that timed out, and holds given up (or not begun) because other I/O waited on the loop.
   */
  reapedHeld?: number;
  holdTimeouts?: number;
  holdsYielded?: number;
  inFlight: number;
  maxInFlight: number;
}

export type EngineKind = 'io_uring' | 'libuv';

export interface IoEngine {
  readonly kind: EngineKind;
  read(fd: number, buf: Uint8Array, at: number, length: number, position: number, target: IoTarget, tag: number): void;
  /** With `dsync`, the write is durable when it completes (RWF_DSYNC). */
  write(fd: number, buf: Uint8Array, at: number, length: number, position: number, dsync: boolean, target: IoTarget, tag: number): void;
  datasync(fd: number, target: IoTarget, tag: number): void;
  /** Reap what has completed (a poller's pass); how many completions were delivered. */
  poll(): number;
  /** A poller spins (no eventfd wake-ups needed) or is about to sleep (wake-ups on). Returns completions waiting. */
  setSpinning(on: boolean): number;
  /**
   * Requests in flight worth a poller's spin: io_uring says 0 while a transfer
   * longer than SPIN_MAX_BYTES is in flight (see there); every request is in
   * stats().inFlight.
   */
  readonly inFlight: number;
  stats(): EngineStats;
  /** Release the engine once its requests in flight have completed (they still complete). */
  close(): void;
  /** Called when the engine goes from idle to busy (a poller may want to spin while I/O is in flight). */
  onBusy: (() => void) | null;
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([k, v]) => [v as number, k]));
/** The errno name of a negative result ("EIO" when unknown). */
export const errnoName = (result: number): string => ERRNO_NAMES.get(-result) ?? 'EIO';
const ERRNO = osConstants.errno as Record<string, number>;

/** Completion slots: parallel arrays and a free stack, so a request allocates nothing. */
class Slots {
  readonly targets: Array<IoTarget | null>;
  readonly tags: Int32Array;
  private readonly free: Int32Array;
  private top: number;

  constructor(readonly capacity: number) {
    this.targets = new Array<IoTarget | null>(capacity).fill(null);
    this.tags = new Int32Array(capacity);
    this.free = new Int32Array(capacity);
    for (let i = 0; i < capacity; i++) this.free[i] = capacity - 1 - i;
    this.top = capacity;
  }

  get used(): number {
    return this.capacity - this.top;
  }

  take(target: IoTarget, tag: number): number {
    if (this.top === 0) return -1;
    const slot = this.free[--this.top]!;
    this.targets[slot] = target;
    this.tags[slot] = tag;
    return slot;
  }

  /** Deliver a completion and free the slot first (the target may submit again at once). */
  complete(slot: number, result: number): void {
    const target = this.targets[slot]!;
    const tag = this.tags[slot]!;
    this.targets[slot] = null;
    this.free[this.top++] = slot;
    if (tracing) trace.mark(S.complete);
    target.ioDone(tag, result);
  }
}

/** A request waiting for a slot (only when more than `capacity` are in flight: not the hot path). */
interface Deferred {
  op: 0 | 1 | 2;
  fd: number;
  buf: Uint8Array;
  at: number;
  length: number;
  position: number;
  flags: number;
  target: IoTarget;
  tag: number;
}

const OP_READ = 0;
const OP_WRITE = 1;
const OP_SYNC = 2;

export interface UringOptions {
  /**
   * The longest a lone request may hold the event loop while this thread
   * polls the completion ring for it (µs; 0: never hold). No hold when the
   * loop already has I/O waiting, and a hold ends as soon as some arrives
   * (several clients at once overlap on the disk instead); after that, the
   * next CONTENDED_SKIP lone requests go without one. A hold that times out
   * (a device slower than the bound) makes that kind of request (read, write,
   * sync) go without for a while, doubling up to SLOW_SKIP_MAX lone requests
   * while it keeps timing out. Default 0; the data path's engine
   * (defaultEngine) uses DEFAULT_HOLD_US. Rings whose requests wait on
   * something other than a disk (the RBD doorbells) leave it at 0.
   */
  holdUs?: number;
  /**
   * Completions post at this thread's next system call (or when reap, ready
   * or a hold looks) instead of interrupting it with an IPI (COOP_TASKRUN,
   * where the kernel has it). Default false: with raw system calls it saved
   * 4–6 µs of a QD1 read in some runs and nothing in others, and on the
   * loaded 2-core machine no difference showed through the controller (#8).
   * STORVISOR_URING_COOP=1 turns it on for the data path's engine, to compare
   * on a quiet machine.
   */
  cooperative?: boolean;
}

/** The data path's bound (µs): a fast disk's read or sync write, not a slow one's (STORVISOR_ENGINE_HOLD_US overrides). */
export const DEFAULT_HOLD_US = 200;
/** hold() stopped (or never started) because the event loop had I/O waiting. */
const HOLD_LOOP_BUSY = 2;
/** Lone requests that go without a hold after one found other work waiting. */
const CONTENDED_SKIP = 32;
/** Lone requests of one kind that go without a hold after holds for it timed out: first, and at most. */
const SLOW_SKIP_MIN = 8;
const SLOW_SKIP_MAX = 1024;
/**
 * The longest transfer a poller spins for, or a lone request holds the loop for
 * (bytes). A longer one takes a millisecond or more of the disk (128 KiB at 150
 * MB/s: 0.9 ms), against a wake-up of some tens of µs: its completion comes
 * through the eventfd, and the thread (which, integrated, also reads the
 * clients' sockets) does not spin and sched_yield through it. A file server
 * filling a file (1 MiB writes, cut by the volume into 128 KiB pieces) spent
 * ~10 ms of CPU per MiB spinning so (issue #11), and its own hold timeouts
 * turned the holds of small writes off. While one is in flight, nothing is
 * spun for (see `inFlight`); otherwise transfers up to this size keep both.
 * An fdatasync counts as long whatever its length (see prep).
 */
export const SPIN_MAX_BYTES = 64 * 1024;

export class UringEngine implements IoEngine {
  readonly kind = 'io_uring' as const;
  private readonly ring: Ring;
  private readonly slots: Slots;
  private readonly cqes: Int32Array;
  private readonly deferred: Deferred[] = [];
  private submitQueued = false;
  private spinning = false;
  private referenced = false;
  onBusy: (() => void) | null = null;
  private readonly counters = { submitted: 0, completed: 0, submits: 0, reapedPolling: 0, reapedWoken: 0, reapedHeld: 0, holdTimeouts: 0, holdsYielded: 0, maxInFlight: 0 };
  /** The hold bound (µs; 0: off). */
  private readonly holdUs: number;
  /** The lone request submitted in this turn (its slot) and its kind, or -1: the microtask decides about a hold. */
  private loneSlot = -1;
  private loneOp = 0;
  /** Lone requests left to go without a hold: after one found other work waiting, and per kind (OP_*) after timeouts. */
  private holdSkip = 0;
  private readonly slowSkip = new Int32Array(3);
  private readonly slowBackoff = new Int32Array(3);
  /** The eventfd was switched off for a lone request; the microtask switches it back on. */
  private quiet = false;
  /** Per slot: a transfer longer than SPIN_MAX_BYTES; and how many of those are in flight. */
  private readonly long: Uint8Array;
  private longInFlight = 0;

  constructor(private readonly n: NativeAddon, entries = 256, maxInFlight = 1024, options: UringOptions = {}) {
    this.holdUs = Math.max(0, options.holdUs ?? 0);
    this.ring = n.ringCreate(entries, maxInFlight, options.cooperative ?? false);
    this.slots = new Slots(maxInFlight);
    this.long = new Uint8Array(maxInFlight);
    this.cqes = new Int32Array(2 * 256);
    n.watch(this.ring, this.onWake);
    n.ref(this.ring, false); // an idle engine does not keep the process alive
  }

  /**
   * Requests in flight worth a poller's spin: none while a long transfer is in
   * flight (SPIN_MAX_BYTES). The pieces of one large request are not all long
   * (a volume cuts at 128 KiB boundaries, so a 1 MiB write's first or last piece
   * may be 4 KiB), and a small request behind a long one waits for the disk
   * anyway.
   */
  get inFlight(): number {
    return this.longInFlight > 0 ? 0 : this.slots.used;
  }

  read(fd: number, buf: Uint8Array, at: number, length: number, position: number, target: IoTarget, tag: number): void {
    this.start(OP_READ, fd, buf, at, length, position, 0, target, tag);
  }

  write(fd: number, buf: Uint8Array, at: number, length: number, position: number, dsync: boolean, target: IoTarget, tag: number): void {
    this.start(OP_WRITE, fd, buf, at, length, position, dsync ? this.n.RWF_DSYNC : 0, target, tag);
  }

  datasync(fd: number, target: IoTarget, tag: number): void {
    this.start(OP_SYNC, fd, EMPTY, 0, 0, 0, 0, target, tag);
  }

  private start(op: 0 | 1 | 2, fd: number, buf: Uint8Array, at: number, length: number, position: number, flags: number, target: IoTarget, tag: number): void {
    const slot = this.slots.take(target, tag);
    if (slot < 0) {
      this.deferred.push({ op, fd, buf, at, length, position, flags, target, tag });
      return;
    }
    this.prep(op, fd, buf, at, length, position, flags, slot);
  }

  private prep(op: number, fd: number, buf: Uint8Array, at: number, length: number, position: number, flags: number, slot: number): void {
    const ring = this.ring;
    const n = this.n;
    let ok = op === OP_SYNC ? n.prepFsync(ring, fd, slot, true) : n.prepRw(ring, op, fd, buf, at, length, position, slot, flags);
    if (!ok) {
      // The submission queue is full: hand it over now and try again.
      this.submitNow();
      ok = op === OP_SYNC ? n.prepFsync(ring, fd, slot, true) : n.prepRw(ring, op, fd, buf, at, length, position, slot, flags);
      if (!ok) {
        this.slots.complete(slot, -ERRNO.EAGAIN!);
        return;
      }
    }
    this.counters.submitted++;
    const inFlight = this.slots.used;
    if (inFlight > this.counters.maxInFlight) this.counters.maxInFlight = inFlight;
    // An fdatasync is long too: with writes left in the page cache (write-back volumes)
    // it takes the disk a millisecond or more, and the controller's poller spun through
    // every one (560 µs of CPU per NBD WRITE + FLUSH at QD1, against 160 for a WRITE).
    const long = op === OP_SYNC || length > SPIN_MAX_BYTES;
    this.long[slot] = long ? 1 : 0;
    if (long) this.longInFlight++;
    if (inFlight === 1 && !long && this.holdUs > 0 && !this.spinning && !this.submitQueued) {
      // A lone request: to the disk at once (it works while the caller finishes its
      // callback); the microtask then decides whether to hold the loop for it.
      // Its eventfd signal would only wake the loop for nothing: off until then.
      n.notify(ring, false);
      this.quiet = true;
      this.submitNow();
      this.loneSlot = slot;
      this.loneOp = op;
      this.submitQueued = true;
      queueMicrotask(this.submitBound);
      return;
    }
    this.loneSlot = -1; // not lone any more: the loop must go on (and the poller may spin)
    this.markBusy();
    if (inFlight === 1 && !long && this.spinning && !this.submitQueued) {
      // The only request in flight while a poller spins (a guest at QD1): to
      // the disk at once. Nothing issued in this callback precedes it to batch
      // with, and the disk works while the rest of the poller's pass runs
      // (traced: the pass's tail held a guest's read miss back ~7 µs).
      this.submitNow();
      return;
    }
    if (!this.submitQueued) {
      // Everything issued by the current callback goes to the kernel in one system call.
      this.submitQueued = true;
      queueMicrotask(this.submitBound);
    }
  }

  private markBusy(): void {
    if (this.referenced) return;
    this.referenced = true;
    this.n.ref(this.ring, true); // requests in flight keep the loop alive
    this.onBusy?.();
  }

  private readonly submitBound = (): void => {
    this.submitQueued = false;
    const lone = this.loneSlot;
    const quiet = this.quiet;
    this.loneSlot = -1;
    this.quiet = false;
    this.submitNow();
    if (lone >= 0 && this.slots.targets[lone] !== null && this.slots.used === 1) this.hold(lone);
    if (quiet) {
      this.n.notify(this.ring, !this.spinning);
      // Completions that landed while the eventfd was off signalled nobody: reap them now.
      if (this.slots.used > 0 && this.n.ready(this.ring) > 0) this.reapAll(true);
    }
    // Still in flight (and no newer lone request deciding for itself): the loop and the poller take over.
    if (this.slots.used > 0 && this.loneSlot < 0) this.markBusy();
  };

  /** Poll the ring for the lone request in `slot` (native hold), when that pays and harms nobody. */
  private hold(slot: number): void {
    const op = this.loneOp;
    if (this.holdSkip > 0) {
      this.holdSkip--;
      return;
    }
    if (this.slowSkip[op]! > 0) {
      this.slowSkip[op]!--;
      return;
    }
    let why: number;
    if (tracing) {
      trace.mark(S.hold);
      why = this.n.hold(this.ring, 1, this.holdUs * 1000, HOLD_TIMES);
      if (!Number.isNaN(HOLD_TIMES[1]!)) trace.markAt(S.cqe, HOLD_TIMES[1]! / 1e6);
      trace.mark(S.held);
    } else why = this.n.hold(this.ring, 1, this.holdUs * 1000);
    // Other work is waiting on the loop: clients overlap, so let them overlap on the disk for a while.
    if (why === HOLD_LOOP_BUSY) this.holdSkip = CONTENDED_SKIP;
    this.reapAll(true);
    if (why === HOLD_LOOP_BUSY) {
      this.counters.holdsYielded++;
    } else if (this.slots.targets[slot] === null) {
      this.counters.reapedHeld++;
      this.slowBackoff[op] = 0;
    } else {
      // Slower than the bound: the loop has better things to do than wait for this kind of request.
      this.counters.holdTimeouts++;
      const backoff = Math.min(SLOW_SKIP_MAX, Math.max(SLOW_SKIP_MIN, 2 * this.slowBackoff[op]!));
      this.slowBackoff[op] = backoff;
      this.slowSkip[op] = backoff;
    }
  }

  private submitNow(): void {
    let r: number;
    if (tracing) {
      trace.mark(S.submit);
      r = this.n.submit(this.ring, SUBMIT_TIMES);
      if (r > 0) {
        trace.markAt(S.enter, SUBMIT_TIMES[0]! / 1e6);
        trace.markAt(S.entered, SUBMIT_TIMES[1]! / 1e6);
        trace.mark(S.submitted);
      }
    } else r = this.n.submit(this.ring);
    if (r > 0) this.counters.submits++;
    // EAGAIN/EBUSY: the kernel is short of resources; the SQEs stay queued and the next submit retries.
  }

  poll(): number {
    if (tracing && this.n.ready(this.ring) > 0) trace.mark(S.polled);
    return this.reapAll(true);
  }

  setSpinning(on: boolean): number {
    if (on === this.spinning) return 0;
    this.spinning = on;
    this.n.notify(this.ring, !on);
    // After re-enabling wake-ups, re-check: a completion that landed while they
    // were off signalled nobody, so the caller must not sleep past it.
    return on ? 0 : this.n.ready(this.ring);
  }

  private readonly onWake = (): void => {
    if (tracing) trace.mark(S.woken);
    this.reapAll(false);
  };

  private reapAll(polling: boolean): number {
    let total = 0;
    for (;;) {
      const k = this.n.reap(this.ring, this.cqes);
      if (k === 0) break;
      total += k;
      const cqes = this.cqes;
      const long = this.long;
      for (let i = 0; i < k; i++) {
        const slot = cqes[2 * i]!;
        if (long[slot] === 1) {
          long[slot] = 0;
          this.longInFlight--;
        }
        this.slots.complete(slot, cqes[2 * i + 1]!);
      }
    }
    if (total > 0) {
      this.counters.completed += total;
      if (polling) this.counters.reapedPolling += total;
      else this.counters.reapedWoken += total;
      while (this.deferred.length > 0 && this.slots.used < this.slots.capacity) {
        const d = this.deferred.shift()!;
        this.prep(d.op, d.fd, d.buf, d.at, d.length, d.position, d.flags, this.slots.take(d.target, d.tag));
      }
      if (this.slots.used === 0 && this.referenced) {
        this.referenced = false;
        this.n.ref(this.ring, false);
      }
    }
    return total;
  }

  stats(): EngineStats {
    return { engine: this.kind, ...this.counters, inFlight: this.slots.used };
  }

  private closing = false;

  close(): void {
    if (this.closing) return;
    this.closing = true;
    const finish = () => {
      if (this.slots.used > 0 || this.deferred.length > 0) {
        // Requests in flight write into their callers' memory until they complete: wait for them.
        setImmediate(() => {
          this.reapAll(true);
          finish();
        });
        return;
      }
      this.n.ringClose(this.ring);
    };
    finish();
  }
}

const EMPTY = new Uint8Array(0);
/** Tracing only: the native hold's spin start and completion-seen times (ns). */
const HOLD_TIMES = new Float64Array(2);
/** Tracing only: the native submit's system call start and end (ns). */
const SUBMIT_TIMES = new Float64Array(2);

/** The portable engine: Node's fs on the libuv thread pool, one pre-bound callback per slot. */
export class LibuvEngine implements IoEngine {
  readonly kind = 'libuv' as const;
  onBusy: (() => void) | null = null;
  private readonly targets: Array<IoTarget | null> = [];
  private readonly tags: number[] = [];
  private readonly callbacks: Array<(err: NodeJS.ErrnoException | null, n?: number) => void> = [];
  private readonly free: number[] = [];
  private used = 0;
  private readonly counters = { submitted: 0, completed: 0, submits: 0, reapedPolling: 0, reapedWoken: 0, reapedHeld: 0, holdTimeouts: 0, holdsYielded: 0, maxInFlight: 0 };

  get inFlight(): number {
    return this.used;
  }

  private take(target: IoTarget, tag: number): number {
    let slot = this.free.pop();
    if (slot === undefined) {
      slot = this.targets.length;
      const s = slot;
      this.targets.push(null);
      this.tags.push(0);
      this.callbacks.push((err, n) => this.done(s, err ? (typeof err.errno === 'number' ? -Math.abs(err.errno) : -ERRNO.EIO!) : (n ?? 0)));
    }
    this.targets[slot] = target;
    this.tags[slot] = tag;
    this.counters.submitted++;
    if (++this.used > this.counters.maxInFlight) this.counters.maxInFlight = this.used;
    return slot;
  }

  private done(slot: number, result: number): void {
    const target = this.targets[slot]!;
    const tag = this.tags[slot]!;
    this.targets[slot] = null;
    this.free.push(slot);
    this.used--;
    this.counters.completed++;
    this.counters.reapedWoken++;
    target.ioDone(tag, result);
  }

  read(fd: number, buf: Uint8Array, at: number, length: number, position: number, target: IoTarget, tag: number): void {
    const slot = this.take(target, tag);
    read(fd, buf, at, length, position, this.callbacks[slot]!);
  }

  write(fd: number, buf: Uint8Array, at: number, length: number, position: number, _dsync: boolean, target: IoTarget, tag: number): void {
    // Durability comes from the descriptor here: FileBackend opens it O_DSYNC for this engine.
    const slot = this.take(target, tag);
    write(fd, buf, at, length, position, this.callbacks[slot]!);
  }

  datasync(fd: number, target: IoTarget, tag: number): void {
    const slot = this.take(target, tag);
    const cb = this.callbacks[slot]!;
    fdatasync(fd, (err) => cb(err));
  }

  poll(): number {
    return 0; // completions arrive as libuv callbacks
  }

  setSpinning(): number {
    return 0;
  }

  stats(): EngineStats {
    return { engine: this.kind, ...this.counters, inFlight: this.used };
  }

  close(): void {
    // Nothing to release: requests in flight complete on the pool by themselves.
  }
}

let engine: IoEngine | undefined;
let engineNote = '';

/**
 * This thread's engine, created on first use: io_uring when the addon is built
 * and the kernel allows it, else libuv. STORVISOR_ENGINE=libuv|io_uring forces one
 * (io_uring forced but unavailable is an error, not a silent fallback).
 */
export function defaultEngine(): IoEngine {
  if (engine) return engine;
  const want = process.env.STORVISOR_ENGINE;
  if (want !== undefined && want !== 'libuv' && want !== 'io_uring') {
    throw invalidArgument(`STORVISOR_ENGINE must be io_uring or libuv (got ${JSON.stringify(want)})`);
  }
  if (want === 'libuv') {
    engineNote = 'libuv engine: forced by STORVISOR_ENGINE=libuv';
    return (engine = new LibuvEngine());
  }
  if (!native) {
    if (want === 'io_uring') throw notSupported(`STORVISOR_ENGINE=io_uring, but ${nativeUnavailable}`);
    engineNote = `libuv engine: ${nativeUnavailable}`;
    return (engine = new LibuvEngine());
  }
  const hold = process.env.STORVISOR_ENGINE_HOLD_US;
  const holdUs = hold === undefined || hold === '' ? DEFAULT_HOLD_US : Number(hold);
  if (!Number.isFinite(holdUs) || holdUs < 0) throw invalidArgument(`STORVISOR_ENGINE_HOLD_US must be a number of microseconds >= 0 (got ${JSON.stringify(hold)})`);
  try {
    const cooperative = process.env.STORVISOR_URING_COOP === '1';
    engine = new UringEngine(native, 256, 1024, { holdUs, cooperative });
    engineNote = (holdUs > 0 ? `io_uring engine (a lone request holds the loop up to ${holdUs} µs)` : 'io_uring engine') + (cooperative ? ', cooperative task running' : '');
  } catch (err) {
    if (want === 'io_uring') throw err;
    engineNote = `libuv engine: io_uring refused (${(err as Error).message})`;
    engine = new LibuvEngine();
  }
  return engine;
}

/** Which engine runs and why (for the start-up log and /status). */
export function engineDescription(): string {
  defaultEngine();
  return engineNote;
}
