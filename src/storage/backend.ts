import { openSync, closeSync, fstatSync, ftruncate, constants } from 'node:fs';
import { dirname } from 'node:path';
import { allocAligned, directProbeFd, PROBE_BYTES, type AlignedSlab } from './aligned.ts';
import { StorvisorError, errnoOf, backendFailure } from '../util/errors.ts';
import { punchHole } from '../native/libc.ts';
import { defaultEngine, errnoName, type IoEngine, type IoTarget } from './engine.ts';

/**
 * One volume's file on the I/O engine (engine.ts): opened O_DIRECT (no double
 * caching: the block cache above is the only cache) and O_DSYNC (a completed
 * write is durable, so the sync write path needs no separate flush).
 *
 * Two ways in: `readTo`/`writeFrom` report to a target object (the hot path:
 * pooled operations, no promise or closure per request), and `read`/`write`
 * return promises for everything else. Short transfers are continued, a read
 * past the end of the file reads zeroes.
 *
 * On filesystems without O_DIRECT (tmpfs) it falls back to buffered I/O with
 * O_DSYNC, says so once, and keeps the same durability.
 * writeUnsynced (a plain write from a guest's write-back queue or an NBD client,
 * made durable by its flush) goes through a second, buffered descriptor without
 * O_DSYNC: see unsyncedFd.
 */
export interface BackendStats {
  reads: number;
  writes: number;
  bytesRead: number;
  bytesWritten: number;
  /** Of `writes`, those left to a later datasync (writeUnsynced); the rest were durable when they completed. */
  unsyncedWrites: number;
  /** fdatasyncs issued (concurrent datasync calls share them). */
  syncs: number;
  inFlight: number;
  maxInFlight: number;
  errors: number;
}

/**
 * What a Volume needs from the store under it: FileBackend (a file on the I/O
 * engine) and RbdBackend (src/storage/rbd-backend.ts, a Ceph RBD image).
 */
export interface StorageBackend {
  readonly stats: BackendStats;
  /** No host page cache under it (buffers from `alloc` can take reads straight into cache slots). */
  readonly direct: boolean;
  alloc(size: number): AlignedSlab;
  readTo(buf: Uint8Array, at: number, length: number, position: number, target: IoTarget, tag: number): void;
  read(buf: Uint8Array, at: number, length: number, position: number): Promise<void>;
  write(buf: Uint8Array, at: number, length: number, position: number): Promise<void>;
  /**
   * write() without the per-write sync: durable only after a datasync() that
   * starts once it has completed. Optional: a Volume then uses write().
   */
  writeUnsynced?(buf: Uint8Array, at: number, length: number, position: number): Promise<void>;
  /**
   * write() without a promise: target.ioDone(tag, 0 or -errno). `unsynced`: as
   * writeUnsynced (ignored by a backend without it: the write is then durable).
   * Optional: a Volume then uses write().
   */
  writeFrom?(buf: Uint8Array, at: number, length: number, position: number, target: IoTarget, tag: number, unsynced?: boolean): void;
  datasync(): Promise<void>;
  /** Deallocate a range; false when it cannot (the caller writes zeroes). `mustZero`: it must read back as zeroes. */
  punchHole(position: number, length: number, mustZero?: boolean): boolean | Promise<boolean>;
  truncate(size: number): Promise<void>;
  close(): void | Promise<void>;
}

/** One read or write in progress; pooled per backend. */
class BackendOp implements IoTarget {
  buf: Uint8Array = EMPTY;
  at = 0;
  length = 0;
  position = 0;
  done = 0;
  isWrite = false;
  /** A write through the descriptor without O_DSYNC (writeUnsynced). */
  unsynced = false;
  target: IoTarget | null = null;
  tag = 0;

  constructor(private readonly backend: FileBackend) {}

  ioDone(_tag: number, result: number): void {
    this.backend.opDone(this, result);
  }
}

/** Adapts a completion to a promise (for callers off the hot path); `what` names the operation in an error. */
export class PromiseTarget implements IoTarget {
  constructor(
    private readonly resolve: () => void,
    private readonly reject: (err: Error) => void,
    private readonly what: string,
  ) {}

  ioDone(_tag: number, result: number): void {
    if (result >= 0) this.resolve();
    else this.reject(backendError(result, this.what));
  }
}

const EMPTY = new Uint8Array(0);

interface SyncWaiters {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** An errno result as a StorvisorError that keeps the errno (ENOSPC must reach the client as ENOSPC) and no host path. */
export function backendError(result: number, what: string): StorvisorError {
  const name = errnoName(result);
  return backendFailure(name, errnoOf({ code: name }), `${what}: ${name}`);
}

export class FileBackend implements StorageBackend {
  readonly stats: BackendStats = {
    reads: 0,
    writes: 0,
    bytesRead: 0,
    bytesWritten: 0,
    unsyncedWrites: 0,
    syncs: 0,
    inFlight: 0,
    maxInFlight: 0,
    errors: 0,
  };
  private closed = false;
  private readonly pool: BackendOp[] = [];
  /** An fdatasync in progress, and the callers waiting for the one after it (see datasync). */
  private syncRunning = false;
  private syncNext: SyncWaiters | null = null;

  private constructor(
    readonly path: string,
    private readonly fd: number,
    /** An O_DIRECT descriptor of a probe file when I/O bypasses the page cache (buffers must come from `alloc`). */
    private readonly probeFd: number | undefined,
    readonly readOnly: boolean,
    private readonly engine: IoEngine,
    /** The same file without O_DSYNC, for writeUnsynced (-1 when read-only). */
    private readonly fdUnsynced: number,
  ) {}

  /** Open an existing file. `direct` false forces buffered I/O. */
  static open(path: string, opts: { direct?: boolean; readOnly?: boolean; log?: (m: string) => void; engine?: IoEngine } = {}): FileBackend {
    const engine = opts.engine ?? defaultEngine();
    const base = (opts.readOnly ? constants.O_RDONLY : constants.O_RDWR | constants.O_DSYNC);
    if (opts.direct !== false && constants.O_DIRECT) {
      let fd: number | undefined;
      try {
        fd = openSync(path, base | constants.O_DIRECT);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
      }
      if (fd !== undefined) {
        const probeFd = directProbeFd(dirname(path));
        if (probeFd !== undefined && allocAligned(PROBE_BYTES, probeFd).aligned) {
          return new FileBackend(path, fd, probeFd, opts.readOnly ?? false, engine, unsyncedFd(path, opts.readOnly));
        }
        closeSync(fd);
      }
      opts.log?.(`${path}: O_DIRECT is not available here; using buffered I/O with O_DSYNC`);
    }
    return new FileBackend(path, openSync(path, base), undefined, opts.readOnly ?? false, engine, unsyncedFd(path, opts.readOnly));
  }

  /** Memory usable for I/O on this backend (aligned when direct). */
  alloc(size: number): AlignedSlab {
    return allocAligned(size, this.probeFd);
  }

  get direct(): boolean {
    return this.probeFd !== undefined;
  }

  get engineKind(): string {
    return this.engine.kind;
  }

  /**
   * Read exactly `length` bytes at `position` into buf[at..]; then
   * target.ioDone(tag, 0), or a negative errno. Bytes past the end of the file read as zeroes.
   */
  readTo(buf: Uint8Array, at: number, length: number, position: number, target: IoTarget, tag: number): void {
    this.startOp(false, buf, at, length, position, target, tag);
  }

  /**
   * Write exactly `length` bytes; durable when target.ioDone(tag, 0) is called
   * (O_DSYNC), or with `unsynced` through the buffered descriptor (writeUnsynced).
   */
  writeFrom(buf: Uint8Array, at: number, length: number, position: number, target: IoTarget, tag: number, unsynced = false): void {
    this.startOp(true, buf, at, length, position, target, tag, unsynced && this.fdUnsynced >= 0);
  }

  /** Write without O_DSYNC, buffered: durable after a datasync() begun once this has completed (fdatasync covers the file, whichever descriptor wrote). */
  writeUnsynced(buf: Uint8Array, at: number, length: number, position: number): Promise<void> {
    if (this.fdUnsynced < 0) return this.write(buf, at, length, position);
    return new Promise((resolve, reject) => {
      this.startOp(true, buf, at, length, position, new PromiseTarget(resolve, reject, `write [${position}, +${length})`), 0, true);
    });
  }

  read(buf: Uint8Array, at: number, length: number, position: number): Promise<void> {
    return new Promise((resolve, reject) =>
      this.readTo(buf, at, length, position, new PromiseTarget(resolve, reject, `read [${position}, +${length})`), 0));
  }

  write(buf: Uint8Array, at: number, length: number, position: number): Promise<void> {
    return new Promise((resolve, reject) =>
      this.writeFrom(buf, at, length, position, new PromiseTarget(resolve, reject, `write [${position}, +${length})`), 0));
  }

  /**
   * Every write completed before this call durable (fdatasync covers the file,
   * whichever descriptor wrote). Concurrent callers share syncs: one runs at a
   * time, and a call made while one runs waits for the next, which every call
   * made meanwhile joins (a sync already running may have begun before their
   * writes completed, so it cannot answer for them). At depth, N flushes cost
   * about two fdatasyncs, not N.
   */
  datasync(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.syncNext !== null) return this.syncNext.promise;
    if (!this.syncRunning) return this.startSync(null);
    let resolve!: () => void;
    let reject!: (err: Error) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.syncNext = { promise, resolve, reject };
    return promise;
  }

  private startSync(joined: SyncWaiters | null): Promise<void> {
    this.syncRunning = true;
    this.stats.syncs++;
    const p = new Promise<void>((resolve, reject) => {
      this.engine.datasync(this.fd, new PromiseTarget(resolve, reject, 'fdatasync'), 0);
    });
    const next = (): void => {
      this.syncRunning = false;
      const waiting = this.syncNext;
      this.syncNext = null;
      if (waiting === null) return;
      if (this.closed) return waiting.resolve();
      this.startSync(waiting);
    };
    p.then(next, next);
    if (joined !== null) p.then(joined.resolve, joined.reject);
    return p;
  }

  private startOp(isWrite: boolean, buf: Uint8Array, at: number, length: number, position: number, target: IoTarget, tag: number, unsynced = false): void {
    const op = this.pool.pop() ?? new BackendOp(this);
    op.unsynced = unsynced;
    op.buf = buf;
    op.at = at;
    op.length = length;
    op.position = position;
    op.done = 0;
    op.isWrite = isWrite;
    op.target = target;
    op.tag = tag;
    const s = this.stats;
    if (++s.inFlight > s.maxInFlight) s.maxInFlight = s.inFlight;
    this.issue(op);
  }

  private issue(op: BackendOp): void {
    const done = op.done;
    if (op.isWrite) this.engine.write(op.unsynced ? this.fdUnsynced : this.fd, op.buf, op.at + done, op.length - done, op.position + done, false, op, 0);
    else this.engine.read(this.fd, op.buf, op.at + done, op.length - done, op.position + done, op, 0);
  }

  /** @internal An engine completion of `op`: continue a short transfer, or finish. */
  opDone(op: BackendOp, result: number): void {
    if (result > 0 && op.done + result < op.length) {
      op.done += result;
      this.issue(op);
      return;
    }
    if (result === 0 && op.done < op.length) {
      if (op.isWrite) result = -5; // EIO: a write that makes no progress
      else op.buf.fill(0, op.at + op.done, op.at + op.length); // end of file
    }
    const s = this.stats;
    s.inFlight--;
    if (result < 0) s.errors++;
    else if (op.isWrite) {
      s.writes++;
      if (op.unsynced) s.unsyncedWrites++;
      s.bytesWritten += op.length;
    } else {
      s.reads++;
      s.bytesRead += op.length;
    }
    const target = op.target!;
    const tag = op.tag;
    op.target = null;
    op.buf = EMPTY;
    this.pool.push(op);
    target.ioDone(tag, result < 0 ? result : 0);
  }

  /** Deallocate a range (reads back as zeroes). False when the filesystem cannot punch holes. */
  punchHole(position: number, length: number): boolean {
    return punchHole(this.fd, position, length);
  }

  size(): number {
    return fstatSync(this.fd).size;
  }

  truncate(size: number): Promise<void> {
    return new Promise((resolve, reject) => ftruncate(this.fd, size, (err) => (err ? reject(err) : resolve())));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
    if (this.fdUnsynced >= 0) closeSync(this.fdUnsynced);
  }
}

/**
 * The file opened again for writes that a flush makes durable (writeUnsynced);
 * -1 for a read-only backend. Buffered, not O_DIRECT: such a write completes
 * once in the page cache, as a function's write on a file does integrated, and
 * the flush's fdatasync writes it out (a guest's log at everysec waited for the
 * disk on every batch through O_DIRECT: 0.53 of integrated at SET -P 1, 0.91
 * buffered). Coherent with the O_DIRECT descriptor: a direct read or write of a
 * range first writes back (and a direct write then drops) its cached pages, and
 * the volume's block locks keep the two from overlapping in flight. The page
 * cache is the kernel's to bound (dirty_ratio) and to reclaim.
 */
function unsyncedFd(path: string, readOnly: boolean | undefined): number {
  return readOnly ? -1 : openSync(path, constants.O_RDWR);
}
