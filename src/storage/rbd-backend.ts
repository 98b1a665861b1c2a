import { closeSync, readSync } from 'node:fs';
import { hostname } from 'node:os';
import { allocAligned, type AlignedSlab } from './aligned.ts';
import { PromiseTarget, backendError, type BackendStats, type StorageBackend } from './backend.ts';
import { LibuvEngine, type IoEngine, type IoTarget } from './engine.ts';
import { native, type FdWatch } from '../native/addon.ts';
import {
  rbdLib,
  rbdUnavailable,
  cString,
  offThread,
  RBD_LOCK_MODE_EXCLUSIVE,
  RBD_FEATURE_LAYERING,
  RBD_FEATURE_EXCLUSIVE_LOCK,
  EVENT_TYPE_EVENTFD,
  EFD_CLOEXEC,
  type Ptr,
  type RbdLib,
} from './rbd-lib.ts';
import { rbdFailed, rbdLocked, rbdUnavailableError, invalidArgument } from '../util/errors.ts';

/**
 * A volume's blocks in a Ceph RBD image (the second backend beside FileBackend,
 * behind the same StorageBackend interface, so the Volume's cache, locking and
 * every function run on it unchanged).
 *
 * Durability: librbd's cache is off (`rbd_cache=false`), so an aio write
 * completes only once the OSDs have it; FLUSH still maps to rbd_aio_flush.
 *
 * Completions without a hop per request: librbd completes requests on its own
 * threads. Completions are created without a callback, and the image is given
 * an eventfd (rbd_set_image_notification): librbd queues each finished request
 * in its own completion list and bumps the eventfd. The event loop watches
 * that eventfd (the addon's fdWatch: one epoll registration for the image's
 * life, no system call to arm it per request), and one wake-up drains every
 * completion with rbd_poll_io_events, however many arrived. Nobody spins for
 * an RBD request: it takes hundreds of µs, and on a shared machine a spinner
 * takes the core librbd's threads and the OSD need (measured: see #17 and
 * bench/rbd.ts). Without the addon, a libuv read of the eventfd does it.
 *
 * Submission without a hop: `rbd_non_blocking_aio=false`, so librbd dispatches
 * a request in the calling thread instead of posting it to its io_context
 * thread first (fio's rbd engine pays that hop; measured: about 40 µs of
 * librbd thread CPU per request less, for about 20 more on this thread).
 * What could then block the caller is the objecter's throttle (1024 object
 * operations or 100 MiB in flight per client); requests beyond this backend's
 * own, lower bounds (MAX_IN_FLIGHT_OPS, MAX_IN_FLIGHT_BYTES) wait here in
 * order, so the event loop never blocks in librbd.
 *
 * Submission in batches: requests started in one turn of the event loop (the
 * NBD requests of one socket read, the completions of one drain) are handed to
 * librbd back to back on the next tick, not one by one between the NBD and
 * volume work of each. Every request librbd dispatches ends in the messenger's
 * send queue and wakes its worker thread unless a wake is already pending; back
 * to back, one wake serves several. Measured at 4 KiB read QD32 through the
 * export (two pairs of runs on a loaded machine): msgr-worker sleeps per
 * request 0.35-0.51 -> 0.25, its CPU 44-46 -> 31-37 µs per request.
 * STORVISOR_RBD_BATCH=0 submits each request at once, to compare.
 *
 * Exclusive lock: see openImage(). One controller writes an image; another
 * refuses with who holds it; `takeover` breaks a dead holder's lock and
 * blocklists it, so anything it still had in flight can never land later.
 */
export interface RbdLocation {
  /** Ceph config file of the cluster (mon addresses, auth). */
  conf: string;
  /** Ceph user, without the `client.` prefix. */
  user: string;
  pool: string;
  image: string;
  /**
   * Seconds before a request the cluster does not answer fails with ETIMEDOUT
   * (rados_osd_op_timeout); 0 waits for ever. Also bounds connecting.
   */
  timeoutSec: number;
}

/** Who holds an image: stored in the image's metadata by the holder when it takes the lock. */
export interface RbdHolder {
  controller: string;
  host: string;
  pid: number;
  /** The holder's RADOS client address: the lock owner and what takeover blocklists. */
  address: string;
  since: string;
}

const HOLDER_KEY = 'storvisor.holder';
const MAX_POLL = 64;
/**
 * Bounds on what one image has in flight in librbd, in object operations
 * (a request touching k objects counts k) and bytes: well under the objecter's
 * throttle (objecter_inflight_ops 1024, objecter_inflight_op_bytes 100 MiB),
 * which would block the calling thread. Beyond them requests queue here, in order.
 */
export const MAX_IN_FLIGHT_OPS = 512;
export const MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024;
const EMPTY = new Uint8Array(0);
const ERR_NOT_FOUND = -2;
/** Requests started in one turn go to librbd together on the next tick (STORVISOR_RBD_BATCH=0: each at once, to compare). */
const BATCH = process.env.STORVISOR_RBD_BATCH !== '0';

function need(): RbdLib {
  const l = rbdLib();
  if (!l) throw rbdUnavailableError(rbdUnavailable());
  return l;
}

export function describeLocation(loc: RbdLocation): string {
  return `rbd ${loc.pool}/${loc.image}`;
}

/** A connected cluster handle plus an I/O context on the image's pool (one per open image). */
class Session {
  private constructor(
    readonly l: RbdLib,
    readonly cluster: Ptr,
    readonly io: Ptr,
    readonly address: string,
  ) {}

  static async connect(loc: RbdLocation): Promise<Session> {
    const l = need();
    const what = describeLocation(loc);
    const out: Ptr[] = [null as unknown as Ptr];
    let r = l.rados_create2(out, 'ceph', `client.${loc.user}`, 0);
    if (r < 0) throw rbdFailed(`${what}: rados_create2 (user client.${loc.user})`, r);
    const cluster = out[0]!;
    try {
      r = await offThread(l.rados_conf_read_file, cluster, loc.conf);
      if (r < 0) throw rbdFailed(`${what}: reading ceph config ${loc.conf}`, r);
      const t = String(loc.timeoutSec);
      const settings: Array<[string, string]> = [
        ['rbd_cache', 'false'], // a completed write is on the OSDs: acknowledged = durable
        ['rbd_blocklist_on_break_lock', 'true'],
        ['client_mount_timeout', String(Math.max(1, loc.timeoutSec || 30))],
        ['rados_mon_op_timeout', String(Math.max(1, loc.timeoutSec || 30))],
        ['rados_osd_op_timeout', t],
        ['log_to_stderr', 'false'],
        ['err_to_stderr', 'false'],
        // Dispatch aio in the caller's thread: no hop to librbd's io_context thread per request (see the top).
        ['rbd_non_blocking_aio', 'false'],
      ];
      for (const [k, v] of settings) {
        r = l.rados_conf_set(cluster, k, v);
        if (r < 0) throw rbdFailed(`${what}: setting ${k}=${v}`, r);
      }
      r = await offThread(l.rados_connect, cluster);
      if (r < 0) throw rbdFailed(`${what}: connecting to the cluster of ${loc.conf} as client.${loc.user}`, r);
      const io: Ptr[] = [null as unknown as Ptr];
      r = await offThread(l.rados_ioctx_create, cluster, loc.pool, io);
      if (r < 0) throw rbdFailed(`${what}: opening pool '${loc.pool}'`, r);
      // This client's address: the lock owner others see, and what a takeover blocklists.
      const out = new BigUint64Array(1);
      r = l.rados_getaddrs(cluster, out);
      let address = '';
      if (r === 0 && out[0] !== 0n) {
        address = cString(l, Number(out[0]));
        l.rados_buffer_free(Number(out[0]));
      }
      return new Session(l, cluster, io[0]!, address);
    } catch (err) {
      await offThread(l.rados_shutdown, cluster).catch(() => {});
      throw err;
    }
  }

  async close(): Promise<void> {
    this.l.rados_ioctx_destroy(this.io);
    await offThread(this.l.rados_shutdown, this.cluster);
  }
}

/** Create image `loc` of `size` bytes (layering + exclusive-lock), or adopt it if it exists. Returns its size. */
export async function createImage(loc: RbdLocation, size: number): Promise<{ size: number; created: boolean }> {
  const s = await Session.connect(loc);
  try {
    const l = s.l;
    const order = [0];
    const r = await offThread(l.rbd_create2, s.io, loc.image, size, RBD_FEATURE_LAYERING | RBD_FEATURE_EXCLUSIVE_LOCK, order);
    if (r === -17) {
      const img = await openRaw(s, loc);
      try {
        const sz = [0];
        await offThread(l.rbd_get_size, img, sz);
        return { size: sz[0]!, created: false };
      } finally {
        await offThread(l.rbd_close, img);
      }
    }
    if (r < 0) throw rbdFailed(`${describeLocation(loc)}: creating the image (${size} bytes)`, r);
    return { size, created: true };
  } finally {
    await s.close();
  }
}

/** Remove the image (nobody may have it open). */
export async function removeImage(loc: RbdLocation): Promise<void> {
  const s = await Session.connect(loc);
  try {
    const r = await offThread(s.l.rbd_remove, s.io, loc.image);
    if (r < 0 && r !== ERR_NOT_FOUND) throw rbdFailed(`${describeLocation(loc)}: removing the image`, r);
  } finally {
    await s.close();
  }
}

async function openRaw(s: Session, loc: RbdLocation): Promise<Ptr> {
  const out: Ptr[] = [null as unknown as Ptr];
  const r = await offThread(s.l.rbd_open, s.io, loc.image, out, null);
  if (r < 0) throw rbdFailed(`${describeLocation(loc)}: opening the image`, r);
  return out[0]!;
}

/** The current exclusive lock owners (RADOS client addresses). */
async function lockOwners(l: RbdLib, img: Ptr): Promise<string[]> {
  const mode = [0];
  const owners = new BigUint64Array(8);
  const max = [owners.length];
  const r = await offThread(l.rbd_lock_get_owners, img, mode, owners, max);
  if (r === ERR_NOT_FOUND) return [];
  if (r < 0) throw rbdFailed('listing the lock owners', r);
  const n = max[0]!;
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(cString(l, Number(owners[i])));
  l.rbd_lock_get_owners_cleanup(owners, n);
  return out;
}

async function readHolder(l: RbdLib, img: Ptr): Promise<RbdHolder | undefined> {
  const buf = Buffer.alloc(4096);
  const len = [buf.length];
  const r = await offThread(l.rbd_metadata_get, img, HOLDER_KEY, buf, len);
  if (r < 0) return undefined;
  try {
    const raw = buf.subarray(0, Math.min(buf.length, len[0]!));
    const nul = raw.indexOf(0);
    return JSON.parse(raw.subarray(0, nul < 0 ? raw.length : nul).toString('utf8')) as RbdHolder;
  } catch {
    return undefined;
  }
}

function describeHolder(owner: string, h: RbdHolder | undefined): string {
  if (!h || h.address !== owner) return `RADOS client ${owner} (not a storvisor controller, or one that left no record)`;
  return `storvisor controller ${h.controller} on host ${h.host} (pid ${h.pid}, client ${owner}, holding it since ${h.since})`;
}

export interface OpenOptions {
  /** This controller's identity (stable across restarts of the same data directory). */
  controller: string;
  /** Break a foreign holder's lock and blocklist it (the explicit takeover). */
  takeover?: boolean;
  engine?: IoEngine;
  log?: (m: string) => void;
  /** The volume name, for messages. */
  volume: string;
}

/**
 * Open the image and take its exclusive lock. A lock held by another client is
 * never broken implicitly (librbd would break the lock of a holder that looks
 * dead by itself): this refuses, naming the holder, unless
 * - `takeover` is set: the holder is blocklisted (its requests still in flight
 *   are fenced off at the OSDs) and its lock broken, then ours taken; or
 * - the holder is this same controller (same identity and host) in an earlier
 *   life: the caller holds the data directory's lock, so that process is dead,
 *   and its lock is broken the same way.
 */
export async function openRbd(loc: RbdLocation, opts: OpenOptions): Promise<RbdBackend> {
  const s = await Session.connect(loc);
  const l = s.l;
  let img: Ptr | undefined;
  let efd = -1;
  try {
    img = await openRaw(s, loc);
    const what = `volume ${opts.volume} (${describeLocation(loc)})`;
    const feats = [0];
    let r = await offThread(l.rbd_get_features, img, feats);
    if (r < 0) throw rbdFailed(`${what}: reading its features`, r);
    if ((feats[0]! & RBD_FEATURE_EXCLUSIVE_LOCK) === 0) {
      r = await offThread(l.rbd_update_features, img, RBD_FEATURE_EXCLUSIVE_LOCK, 1);
      if (r < 0) throw rbdFailed(`${what}: enabling the exclusive-lock feature`, r);
      opts.log?.(`${what}: exclusive-lock feature enabled`);
    }
    const owners = (await lockOwners(l, img)).filter((o) => o !== s.address);
    if (owners.length > 0) {
      const holder = await readHolder(l, img);
      const ours = holder !== undefined && holder.controller === opts.controller && holder.host === hostname() && holder.address === owners[0];
      if (!opts.takeover && !ours) {
        throw rbdLocked(
          `${what} is locked by ${describeHolder(owners[0]!, holder)}; ` +
            `if that controller is dead, take the volume over here with 'storvisor volume takeover ${opts.volume}'`,
        );
      }
      for (const owner of owners) {
        // Fence first: once blocklisted, nothing the old holder still has in flight can reach the OSDs.
        r = await offThread(l.rados_blocklist_add, s.cluster, owner, 0);
        if (r < 0) throw rbdFailed(`${what}: blocklisting the old holder ${owner}`, r);
        r = await offThread(l.rbd_lock_break, img, RBD_LOCK_MODE_EXCLUSIVE, owner);
        if (r < 0 && r !== ERR_NOT_FOUND) throw rbdFailed(`${what}: breaking the lock of ${owner}`, r);
        opts.log?.(`${what}: ${ours ? 'stale lock of this controller' : 'lock of ' + describeHolder(owner, holder)} broken; ${owner} blocklisted`);
      }
    }
    r = await offThread(l.rbd_lock_acquire, img, RBD_LOCK_MODE_EXCLUSIVE);
    if (r < 0) {
      const now = await lockOwners(l, img).catch(() => []);
      if (now.length > 0) throw rbdLocked(`${what} is locked by ${describeHolder(now[0]!, await readHolder(l, img))}`);
      throw rbdFailed(`${what}: taking the exclusive lock`, r);
    }
    const holder: RbdHolder = { controller: opts.controller, host: hostname(), pid: process.pid, address: s.address, since: new Date().toISOString() };
    r = await offThread(l.rbd_metadata_set, img, HOLDER_KEY, JSON.stringify(holder));
    if (r < 0) throw rbdFailed(`${what}: recording this controller as the holder`, r);
    const size = [0];
    r = await offThread(l.rbd_get_size, img, size);
    if (r < 0) throw rbdFailed(`${what}: reading its size`, r);
    const info = Buffer.alloc(RBD_IMAGE_INFO_BYTES);
    r = await offThread(l.rbd_stat, img, info, info.length);
    if (r < 0) throw rbdFailed(`${what}: reading its object size`, r);
    const objectSize = Number(info.readBigUInt64LE(8)) || 4 << 20;
    // Non-blocking for the addon's watch (it drains the counter until EAGAIN); blocking for a libuv read (a pool thread parks on it).
    const watched = opts.engine === undefined && native !== null;
    efd = watched ? native!.eventfdCreate() : l.eventfd(0, EFD_CLOEXEC);
    if (efd < 0) throw rbdFailed(`${what}: eventfd`, -24);
    r = l.rbd_set_image_notification(img, efd, EVENT_TYPE_EVENTFD);
    if (r < 0) throw rbdFailed(`${what}: setting the completion eventfd`, r);
    return new RbdBackend(loc, s, img, efd, size[0]!, objectSize, watched ? null : (opts.engine ?? doorbellEngine()));
  } catch (err) {
    if (efd >= 0) closeSync(efd);
    if (img) await offThread(l.rbd_close, img).catch(() => {});
    await s.close().catch(() => {});
    throw err;
  }
}

let bells: IoEngine | undefined;

/**
 * Without the addon (no fdWatch): the eventfd is read through libuv, one pool
 * thread parked on it per busy image. Not the poller's engine: the poller spins
 * while its engine has requests in flight, which pays off for a disk that
 * answers in microseconds, not for an RBD request of hundreds.
 */
function doorbellEngine(): IoEngine {
  return (bells ??= new LibuvEngine());
}

/** sizeof(rbd_image_info_t) is 160 on LP64; librbd refuses a smaller buffer, a larger one is fine. */
const RBD_IMAGE_INFO_BYTES = 256;
const noop = (): void => {};

const OP_READ = 0;
const OP_WRITE = 1;
const OP_FLUSH = 2;
const OP_ZEROES = 3;
const OP_DISCARD = 4;

/**
 * Settles a read()/write() promise; the error's message (`rbd write [pos, +len)`)
 * is only built when it fails, not formatted for every request on the Volume's
 * write path.
 */
class Settle implements IoTarget {
  constructor(
    private readonly resolve: () => void,
    private readonly reject: (err: Error) => void,
    private readonly op: number,
    private readonly position: number,
    private readonly length: number,
  ) {}

  ioDone(_tag: number, result: number): void {
    if (result >= 0) this.resolve();
    else this.reject(backendError(result, `rbd ${this.op === OP_READ ? 'read' : 'write'} [${this.position}, +${this.length})`));
  }
}

/** Wakes the backend when its eventfd read completes on the (fallback) engine. */
class Doorbell implements IoTarget {
  constructor(private readonly backend: RbdBackend) {}
  ioDone(_tag: number, result: number): void {
    this.backend.rang(result);
  }
}

/** A request waiting for room under the in-flight bounds (made only when the bounds are reached). */
interface Waiting {
  op: number;
  buf: Uint8Array;
  at: number;
  length: number;
  position: number;
  target: IoTarget;
  tag: number;
}

export class RbdBackend implements StorageBackend {
  readonly stats: BackendStats = { reads: 0, writes: 0, bytesRead: 0, bytesWritten: 0, unsyncedWrites: 0, syncs: 0, inFlight: 0, maxInFlight: 0, errors: 0 };
  /**
   * For the CPU-per-op picture: event-loop wake-ups by the eventfd, completions
   * drained, librbd calls made (koffi), requests that waited for the in-flight bounds.
   */
  readonly rbdCounters = { wakeups: 0, drained: 0, submitErrors: 0, libCalls: 0, waited: 0, batches: 0 };
  readonly readOnly = false;
  readonly direct = true;
  readonly kind = 'rbd';
  private closed = false;
  // Request slots: parallel arrays and a free stack (the completion's argument is the slot number).
  private targets: Array<IoTarget | null> = [];
  private tags: number[] = [];
  private ops: number[] = [];
  private lengths: number[] = [];
  private objectOps: number[] = [];
  private bufs: Array<Uint8Array> = [];
  private positions: number[] = [];
  private addrs: number[] = [];
  /** Slots started this turn, not yet handed to librbd (flushBatch). */
  private readonly batch: number[] = [];
  private readonly free: number[] = [];
  private used = 0;
  private usedOps = 0;
  private usedBytes = 0;
  private readonly waiting: Waiting[] = [];
  private armed = false;
  private readonly watch: FdWatch | null = null;
  /** Holds the event loop open while requests are in flight (the watch itself does not). */
  private readonly keepAlive: NodeJS.Timeout;
  private readonly doorbell = new Doorbell(this);
  private readonly bell = Buffer.alloc(8);
  private readonly compOut = new BigUint64Array(1);
  private readonly compOut32 = new Uint32Array(this.compOut.buffer);
  private readonly comps = new BigUint64Array(MAX_POLL);
  private readonly comps32 = new Uint32Array(this.comps.buffer);
  private readonly addresses = new WeakMap<Uint8Array, number>();
  private readonly l: RbdLib;

  /** @internal use openRbd */
  constructor(
    readonly location: RbdLocation,
    private readonly session: Session,
    private readonly image: Ptr,
    private readonly efd: number,
    private imageSize: number,
    /** Bytes per RADOS object (a request's object operations count against MAX_IN_FLIGHT_OPS). */
    readonly objectSize: number,
    /** null: the addon watches the (non-blocking) eventfd; else the engine reads the (blocking) one. */
    private readonly engine: IoEngine | null,
  ) {
    this.l = session.l;
    if (engine === null) this.watch = native!.fdWatch(efd, () => this.rang(0));
    this.keepAlive = setInterval(noop, 0x7fffffff);
    this.keepAlive.unref();
  }

  get address(): string {
    return this.session.address;
  }

  get engineKind(): string {
    return this.engine === null ? 'rbd+eventfd' : `rbd+${this.engine.kind}`;
  }

  alloc(size: number): AlignedSlab {
    return allocAligned(size);
  }

  size(): number {
    return this.imageSize;
  }

  readTo(buf: Uint8Array, at: number, length: number, position: number, target: IoTarget, tag: number): void {
    this.submit(OP_READ, buf, at, length, position, target, tag);
  }

  writeFrom(buf: Uint8Array, at: number, length: number, position: number, target: IoTarget, tag: number): void {
    this.submit(OP_WRITE, buf, at, length, position, target, tag);
  }

  /** The Volume's write path comes here for every write: one promise, one target, no message unless it fails. */
  read(buf: Uint8Array, at: number, length: number, position: number): Promise<void> {
    return new Promise((resolve, reject) => this.readTo(buf, at, length, position, new Settle(resolve, reject, OP_READ, position, length), 0));
  }

  write(buf: Uint8Array, at: number, length: number, position: number): Promise<void> {
    return new Promise((resolve, reject) => this.writeFrom(buf, at, length, position, new Settle(resolve, reject, OP_WRITE, position, length), 0));
  }

  /** rbd_aio_flush: with the cache off every completed write is durable already; this orders discards and resizes too. */
  datasync(): Promise<void> {
    this.stats.syncs++;
    if (this.closed) return Promise.resolve();
    return new Promise((resolve, reject) => this.submit(OP_FLUSH, EMPTY, 0, 0, 0, new PromiseTarget(resolve, reject, 'rbd flush'), 0));
  }

  /**
   * Deallocate [position, +length): rbd_aio_write_zeroes when the range must read
   * back as zeroes (WRITE_ZEROES), rbd_aio_discard when it is advisory (TRIM).
   */
  punchHole(position: number, length: number, mustZero = true): Promise<boolean> {
    return new Promise((resolve, reject) =>
      this.submit(mustZero ? OP_ZEROES : OP_DISCARD, EMPTY, 0, length, position, new PromiseTarget(() => resolve(true), reject, mustZero ? 'rbd write zeroes' : 'rbd discard'), 0),
    );
  }

  async truncate(size: number): Promise<void> {
    const r = await offThread(this.l.rbd_resize, this.image, size);
    if (r < 0) throw rbdFailed(`${describeLocation(this.location)}: resizing to ${size} bytes`, r);
    this.imageSize = size;
  }

  /** Requests waiting for room under the in-flight bounds (for tests and status). */
  get queued(): number {
    return this.waiting.length;
  }

  private addressOf(buf: Uint8Array): number {
    let a = this.addresses.get(buf);
    if (a === undefined) {
      a = this.l.address(buf);
      this.addresses.set(buf, a);
    }
    return a;
  }

  /** Object operations a request costs the objecter (a flush: one). */
  private objectOpsOf(op: number, position: number, length: number): number {
    if (op === OP_FLUSH || length === 0) return 1;
    const o = this.objectSize;
    return Math.floor((position + length - 1) / o) - Math.floor(position / o) + 1;
  }

  private submit(op: number, buf: Uint8Array, at: number, length: number, position: number, target: IoTarget, tag: number): void {
    if (this.closed) {
      process.nextTick(() => target.ioDone(tag, -108)); // ESHUTDOWN
      return;
    }
    const objectOps = this.objectOpsOf(op, position, length);
    const bytes = op === OP_READ || op === OP_WRITE ? length : 0;
    // In order: once one request waits, every later one (a flush above all) waits behind it.
    if (this.waiting.length > 0 || (this.used > 0 && (this.usedOps + objectOps > MAX_IN_FLIGHT_OPS || this.usedBytes + bytes > MAX_IN_FLIGHT_BYTES))) {
      this.waiting.push({ op, buf, at, length, position, target, tag });
      this.rbdCounters.waited++;
      return;
    }
    this.start(op, buf, at, length, position, target, tag, objectOps, bytes);
  }

  private start(op: number, buf: Uint8Array, at: number, length: number, position: number, target: IoTarget, tag: number, objectOps: number, bytes: number): void {
    let slot = this.free.pop();
    if (slot === undefined) {
      slot = this.targets.length;
      this.targets.push(null);
      this.tags.push(0);
      this.ops.push(0);
      this.lengths.push(0);
      this.objectOps.push(0);
      this.bufs.push(EMPTY);
      this.positions.push(0);
      this.addrs.push(0);
    }
    this.targets[slot] = target;
    this.tags[slot] = tag;
    this.ops[slot] = op;
    this.lengths[slot] = length;
    this.objectOps[slot] = objectOps;
    this.bufs[slot] = buf; // keeps the memory alive while librbd uses it
    if (this.used++ === 0) this.keepAlive.ref();
    this.usedOps += objectOps;
    this.usedBytes += bytes;
    const s = this.stats;
    if (++s.inFlight > s.maxInFlight) s.maxInFlight = s.inFlight;
    this.positions[slot] = position;
    this.addrs[slot] = op === OP_READ || op === OP_WRITE ? this.addressOf(buf) + at : 0;
    if (!BATCH) {
      this.issue(slot);
      if (this.engine !== null && !this.armed) this.arm();
      return;
    }
    this.batch.push(slot);
    if (this.batch.length === 1) process.nextTick(this.flushBatch);
  }

  /** Hand the requests started this turn to librbd, back to back (see the top: one wake of the messenger for many). */
  private readonly flushBatch = (): void => {
    const batch = this.batch;
    this.rbdCounters.batches++;
    for (let i = 0; i < batch.length; i++) this.issue(batch[i]!);
    batch.length = 0;
    if (this.engine !== null && !this.armed && this.used > 0) this.arm();
  };

  /** One request into librbd; a refused one completes with its error on the next tick. */
  private issue(slot: number): void {
    const l = this.l;
    const op = this.ops[slot]!;
    const position = this.positions[slot]!;
    const length = this.lengths[slot]!;
    let r = l.rbd_aio_create_completion(slot, null, this.compOut);
    let comp = 0;
    if (r === 0) {
      comp = this.compOut32[0]! + this.compOut32[1]! * 0x100000000;
      const img = this.image;
      switch (op) {
        case OP_READ:
          r = l.rbd_aio_read(img, position, length, this.addrs[slot]!, comp);
          break;
        case OP_WRITE:
          r = l.rbd_aio_write(img, position, length, this.addrs[slot]!, comp);
          break;
        case OP_FLUSH:
          r = l.rbd_aio_flush(img, comp);
          break;
        case OP_ZEROES:
          r = l.rbd_aio_write_zeroes(img, position, length, comp, 0, 0);
          break;
        default:
          r = l.rbd_aio_discard(img, position, length, comp);
      }
      this.rbdCounters.libCalls += 2;
    }
    if (r < 0) {
      // Not queued: no completion will come for it.
      if (comp !== 0) l.rbd_aio_release(comp);
      this.rbdCounters.submitErrors++;
      process.nextTick(() => this.finish(slot, r));
    }
  }

  /** Fallback engine: put one read of the eventfd on it; it completes when librbd has finished something. */
  private arm(): void {
    this.armed = true;
    // An eventfd ignores the offset: io_uring takes 0, libuv's fs.read needs -1 (read(), not pread()).
    this.engine!.read(this.efd, this.bell, 0, 8, this.engine!.kind === 'io_uring' ? 0 : -1, this.doorbell, 0);
  }

  /** @internal The eventfd was written (the watch drained it; the engine's read consumed it): drain every completion. */
  rang(result: number): void {
    this.armed = false;
    this.rbdCounters.wakeups++;
    if (result < 0 && result !== -4 && result !== -11) {
      // The eventfd read itself failed: fall back to reading it in place once (never lose completions).
      try {
        readSync(this.efd, this.bell, 0, 8, null);
      } catch {
        /* nothing to read: completions are polled below anyway */
      }
    }
    this.drain();
    if (this.engine !== null && this.used > 0 && !this.armed) this.arm();
  }

  private drain(): void {
    const l = this.l;
    const comps32 = this.comps32;
    for (;;) {
      const n = l.rbd_poll_io_events(this.image, this.comps, MAX_POLL);
      this.rbdCounters.libCalls += 1 + 3 * Math.max(0, n);
      if (n <= 0) return;
      this.rbdCounters.drained += n;
      for (let i = 0; i < n; i++) {
        const c = comps32[2 * i]! + comps32[2 * i + 1]! * 0x100000000;
        const slot = l.rbd_aio_get_arg(c);
        const ret = l.rbd_aio_get_return_value(c);
        l.rbd_aio_release(c);
        this.finish(slot, ret);
      }
      if (n < MAX_POLL) return;
    }
  }

  private finish(slot: number, ret: number): void {
    const target = this.targets[slot]!;
    const tag = this.tags[slot]!;
    const op = this.ops[slot]!;
    const length = this.lengths[slot]!;
    this.targets[slot] = null;
    this.bufs[slot] = EMPTY;
    this.free.push(slot);
    this.usedOps -= this.objectOps[slot]!;
    if (op === OP_READ || op === OP_WRITE) this.usedBytes -= length;
    if (--this.used === 0) this.keepAlive.unref();
    const s = this.stats;
    s.inFlight--;
    if (ret < 0) s.errors++;
    else if (op === OP_READ) {
      s.reads++;
      s.bytesRead += length;
    } else if (op === OP_WRITE) {
      s.writes++;
      s.bytesWritten += length;
    }
    if (this.waiting.length > 0) this.startWaiting();
    target.ioDone(tag, ret < 0 ? ret : 0);
  }

  /** Start waiting requests, in order, while they fit under the bounds. */
  private startWaiting(): void {
    const w = this.waiting;
    let k = 0;
    while (k < w.length) {
      const q = w[k]!;
      const objectOps = this.objectOpsOf(q.op, q.position, q.length);
      const bytes = q.op === OP_READ || q.op === OP_WRITE ? q.length : 0;
      if (this.used > 0 && (this.usedOps + objectOps > MAX_IN_FLIGHT_OPS || this.usedBytes + bytes > MAX_IN_FLIGHT_BYTES)) break;
      k++;
      if (this.closed) process.nextTick(() => q.target.ioDone(q.tag, -108));
      else this.start(q.op, q.buf, q.at, q.length, q.position, q.target, q.tag, objectOps, bytes);
    }
    if (k > 0) w.splice(0, k);
  }

  /** Release the lock and the image; every request has completed by then (the Volume waits for them). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Requests that are still out (a caller that did not wait) complete first: their memory is in use.
    while (this.used > 0) await new Promise((r) => setTimeout(r, 5));
    for (const q of this.waiting.splice(0)) q.target.ioDone(q.tag, -108); // never started: ESHUTDOWN
    const l = this.l;
    await offThread(l.rbd_lock_release, this.image).catch(() => {});
    const r = await offThread(l.rbd_close, this.image);
    if (this.watch) native!.watchClose(this.watch);
    clearInterval(this.keepAlive);
    closeSync(this.efd);
    await this.session.close();
    if (r < 0) throw rbdFailed(`${describeLocation(this.location)}: closing the image`, r);
  }
}

/** Check an RbdLocation from a config or a manifest. */
export function checkLocation(loc: RbdLocation): void {
  for (const k of ['conf', 'user', 'pool', 'image'] as const) {
    if (typeof loc[k] !== 'string' || loc[k] === '') throw invalidArgument(`rbd.${k} must be a non-empty string`);
  }
}
