import { invalidArgument, notSupported } from '../util/errors.ts';
import { read, write, fdatasync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { native, nativeUnavailable, type NativeAddon, type Ring } from '../native/addon.ts';

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
  private readonly counters = { submitted: 0, completed: 0, submits: 0, reapedPolling: 0, reapedWoken: 0, maxInFlight: 0 };

  constructor(private readonly n: NativeAddon, entries = 256, maxInFlight = 1024) {
    this.ring = n.ringCreate(entries, maxInFlight);
    this.slots = new Slots(maxInFlight);
    this.cqes = new Int32Array(2 * 256);
    n.watch(this.ring, this.onWake);
    n.ref(this.ring, false); // an idle engine does not keep the process alive
  }

  get inFlight(): number {
    return this.slots.used;
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
    if (!this.referenced) {
      this.referenced = true;
      n.ref(ring, true); // requests in flight keep the loop alive
      this.onBusy?.();
    }
    if (!this.submitQueued) {
      // Everything issued by the current callback goes to the kernel in one system call.
      this.submitQueued = true;
      queueMicrotask(this.submitBound);
    }
  }

  private readonly submitBound = (): void => {
    this.submitQueued = false;
    this.submitNow();
  };

  private submitNow(): void {
    const r = this.n.submit(this.ring);
    if (r > 0) this.counters.submits++;
    // EAGAIN/EBUSY: the kernel is short of resources; the SQEs stay queued and the next submit retries.
  }

  poll(): number {
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
    this.reapAll(false);
  };

  private reapAll(polling: boolean): number {
    let total = 0;
    for (;;) {
      const k = this.n.reap(this.ring, this.cqes);
      if (k === 0) break;
      total += k;
      const cqes = this.cqes;
      for (let i = 0; i < k; i++) this.slots.complete(cqes[2 * i]!, cqes[2 * i + 1]!);
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

/** The portable engine: Node's fs on the libuv thread pool, one pre-bound callback per slot. */
export class LibuvEngine implements IoEngine {
  readonly kind = 'libuv' as const;
  onBusy: (() => void) | null = null;
  private readonly targets: Array<IoTarget | null> = [];
  private readonly tags: number[] = [];
  private readonly callbacks: Array<(err: NodeJS.ErrnoException | null, n?: number) => void> = [];
  private readonly free: number[] = [];
  private used = 0;
  private readonly counters = { submitted: 0, completed: 0, submits: 0, reapedPolling: 0, reapedWoken: 0, maxInFlight: 0 };

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
  try {
    engine = new UringEngine(native);
    engineNote = 'io_uring engine';
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
