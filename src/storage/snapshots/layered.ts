import { constants as osConstants } from 'node:os';
import type { FileBackend, BackendStats } from '../backend.ts';
import { BLOCK } from '../block-cache.ts';
import type { IoTarget } from '../../block/types.ts';
import type { VolumeBackend } from '../volume.ts';
import { errnoOf, notFound, readOnly } from '../../util/errors.ts';
import type { BlockMap } from './block-map.ts';

/**
 * The backend of a volume that has snapshots or is a clone: the volume's own
 * image (`raw`, identity-mapped: block b at b * 4096) plus the layers around it.
 *
 * Snapshots are copy-on-write deltas, oldest first in `chain`. Snapshot k
 * reads block b from the first snapshot j >= k whose map has b, else from the
 * volume's current content. A write to block b that no snapshot from the
 * newest live one up holds first copies the current content into the newest
 * live snapshot's delta, makes its bit durable, waits for snapshot reads of b
 * already on their way to the current content, and only then writes b. Only
 * the newest snapshot is ever written, so a write costs the same whatever the
 * number of snapshots: one read, one data write and one map write the first
 * time a block changes after a snapshot, nothing after that.
 *
 * A clone (`own` set) is redirect-on-write over a parent snapshot: block b is
 * in the clone's image once its bit in `own` is set, in the parent snapshot
 * before. A write lands in the image (O_DSYNC), then its bit is made durable,
 * then it is acknowledged; a crash in between leaves the bit clear and the
 * block reads the parent's data, as if the write had never been issued.
 *
 * Every step of both paths is durable before the next begins, so kill -9 at
 * any point leaves each block with either its old or its new content. The
 * one step that may wait for a flush (writeUnsynced) is the last: the
 * volume's own data, once no layer's map points past it.
 */
export interface SnapLayer {
  name: string;
  size: number;
  createdAt: string;
  delta: FileBackend;
  map: BlockMap;
  /** Being deleted: still read through, never written by a copy-on-write. */
  deleting: boolean;
  /** Reads of `delta` in flight (the files close once they drain). */
  reads: number;
  drained: Array<() => void>;
}

export interface LayerCounters {
  /** Copy-on-write runs: one read of the current content, one delta write, one map update each. */
  cowRuns: number;
  cowBlocks: number;
  cowReads: number;
  cowWrites: number;
  /** Writes that waited for snapshot reads of their blocks to finish. */
  cowWaits: number;
  parentReads: number;
  snapshotReads: number;
}

const SCRATCH_BUFFERS = 8;
const SCRATCH_BYTES = 128 * 1024;
const ERRNO = osConstants.errno as Record<string, number>;
export const resultOf = (err: unknown): number => -(ERRNO[errnoOf(err)] ?? 5);

export class LayeredBackend implements VolumeBackend {
  readonly chain: SnapLayer[] = [];
  own: BlockMap | null = null;
  parent: { head: LayeredBackend; snap: SnapLayer } | null = null;
  readonly counters: LayerCounters = { cowRuns: 0, cowBlocks: 0, cowReads: 0, cowWrites: 0, cowWaits: 0, parentReads: 0, snapshotReads: 0 };
  /** Holders: the volume and snapshot views opened on it, and clones reading it. */
  refs = 0;
  private readonly locks = new Map<number, Array<() => void>>();
  /** Snapshot reads in flight on the current content, per block (a copy-on-write waits for them). */
  private readonly currentReaders = new Map<number, number>();
  private readerWaiters: Array<{ first: number; count: number; resolve: () => void }> = [];
  /** Writes in flight per epoch; a new snapshot starts an epoch and waits for the older ones. */
  private epoch = 0;
  private readonly inEpoch = new Map<number, number>();
  private barriers: Array<{ upTo: number; resolve: () => void }> = [];
  private parentInFlight = 0;
  private parentDrained: Array<() => void> = [];
  private readonly scratch: Buffer[] = [];
  private scratchMade = 0;
  private scratchWaiters: Array<(b: Buffer) => void> = [];

  constructor(
    readonly name: string,
    readonly raw: VolumeBackend,
    private readonly onClose: (b: LayeredBackend) => void,
  ) {
    this.writeUnsynced = raw.writeUnsynced !== undefined ? (buf, at, length, position) => this.writeLayered(buf, at, length, position, true) : undefined;
  }

  // ---- VolumeBackend (the volume's current content) ----------------------------

  get direct(): boolean {
    return this.raw.direct;
  }
  get stats(): BackendStats {
    return this.raw.stats;
  }
  alloc(size: number) {
    return this.raw.alloc(size);
  }

  readTo(buf: Uint8Array, at: number, length: number, position: number, target: IoTarget, tag: number): void {
    if (this.own === null) return this.raw.readTo(buf, at, length, position, target, tag);
    this.readCurrent(buf, at, position / BLOCK, length / BLOCK).then(
      () => target.ioDone(tag, 0),
      (err) => target.ioDone(tag, resultOf(err)),
    );
  }

  read(buf: Uint8Array, at: number, length: number, position: number): Promise<void> {
    if (this.own === null) return this.raw.read(buf, at, length, position);
    return this.readCurrent(buf, at, position / BLOCK, length / BLOCK);
  }

  /** Whole blocks only (the volume reads and writes whole blocks): durable on resolve. */
  write(buf: Uint8Array, at: number, length: number, position: number): Promise<void> {
    return this.writeLayered(buf, at, length, position, false);
  }

  /**
   * write(), with the image's data left to the next datasync where no layer
   * depends on it (present when the image's backend has writeUnsynced). The
   * copy-on-write before it is durable as ever, so the snapshot keeps the old
   * data whatever becomes of the new. A clone's first write of a block stays
   * durable before its bit (a bit set over data still in the page cache could
   * reach the disk first, and a power loss would expose the image's stale
   * block instead of the parent's); once the bit is set, its later writes
   * are unsynced too. Kill -9 loses none of them: the page cache has them.
   */
  readonly writeUnsynced: ((buf: Uint8Array, at: number, length: number, position: number) => Promise<void>) | undefined;

  private async writeLayered(buf: Uint8Array, at: number, length: number, position: number, unsynced: boolean): Promise<void> {
    const first = position / BLOCK;
    const count = length / BLOCK;
    const epoch = this.epoch;
    this.inEpoch.set(epoch, (this.inEpoch.get(epoch) ?? 0) + 1);
    try {
      await this.lock(first, count);
      try {
        await this.copyOnWrite(first, count);
        const own = this.own;
        const owned = own === null || own.hasAll(first, count);
        if (unsynced && owned) await this.raw.writeUnsynced!(buf, at, length, position);
        else await this.raw.write(buf, at, length, position);
        if (!owned) await own.set(first, count);
      } finally {
        this.unlock(first, count);
      }
    } finally {
      this.writeDone(epoch);
    }
  }

  datasync(): Promise<void> {
    return this.raw.datasync();
  }

  /** Holes cannot be punched under a snapshot or in a clone (the old data is still needed, or the parent would show). */
  punchHole(position: number, length: number, mustZero?: boolean): boolean | Promise<boolean> {
    if (this.own !== null || this.chain.length > 0) return false;
    return this.raw.punchHole(position, length, mustZero);
  }

  truncate(size: number): Promise<void> {
    if (this.own !== null || this.chain.length > 0) return Promise.reject(readOnly(`the size of volume ${this.name}, which has snapshots or is a clone,`));
    return this.raw.truncate(size);
  }

  /** One holder is done (see Snapshots.release). */
  close(): void {
    this.onClose(this);
  }

  // ---- reading layers -----------------------------------------------------------

  /** The current content of blocks [first, +count) into buf[at..]. */
  readCurrent(buf: Uint8Array, at: number, first: number, count: number): Promise<void> {
    const own = this.own;
    if (own === null) return this.raw.read(buf, at, count * BLOCK, first * BLOCK);
    const parts: Promise<void>[] = [];
    let b = first;
    while (b < first + count) {
      const mine = own.has(b);
      let e = b + 1;
      while (e < first + count && own.has(e) === mine) e++;
      const off = at + (b - first) * BLOCK;
      parts.push(mine ? this.raw.read(buf, off, (e - b) * BLOCK, b * BLOCK) : this.readParent(buf, off, b, e - b));
      b = e;
    }
    return parts.length === 1 ? parts[0]! : Promise.all(parts).then(() => undefined);
  }

  private async readParent(buf: Uint8Array, at: number, first: number, count: number): Promise<void> {
    const p = this.parent!;
    this.parentInFlight++;
    this.counters.parentReads++;
    try {
      await p.head.readSnapshot(p.snap, buf, at, first, count);
    } finally {
      if (--this.parentInFlight === 0) for (const w of this.parentDrained.splice(0)) w();
    }
  }

  /** Snapshot `snap`'s blocks [first, +count) into buf[at..]. */
  readSnapshot(snap: SnapLayer, buf: Uint8Array, at: number, first: number, count: number): Promise<void> {
    const k = this.chain.indexOf(snap);
    if (k < 0) return Promise.reject(notFound(`snapshot ${this.name}@${snap.name}`));
    this.counters.snapshotReads++;
    const parts: Promise<void>[] = [];
    let b = first;
    // Decided synchronously, so a copy-on-write that starts later sees the readers it must wait for.
    while (b < first + count) {
      const src = this.sourceOf(k, b);
      let e = b + 1;
      while (e < first + count && this.sourceOf(k, e) === src) e++;
      const off = at + (b - first) * BLOCK;
      parts.push(src >= 0 ? this.readDelta(this.chain[src]!, buf, off, b, e - b) : this.readCurrentGuarded(buf, off, b, e - b));
      b = e;
    }
    return parts.length === 1 ? parts[0]! : Promise.all(parts).then(() => undefined);
  }

  /** Which snapshot (index) holds block b for snapshot k; -1 for the current content. */
  private sourceOf(k: number, b: number): number {
    const chain = this.chain;
    for (let j = k; j < chain.length; j++) if (chain[j]!.map.has(b)) return j;
    return -1;
  }

  private async readDelta(s: SnapLayer, buf: Uint8Array, at: number, first: number, count: number): Promise<void> {
    s.reads++;
    try {
      await s.delta.read(buf, at, count * BLOCK, first * BLOCK);
    } finally {
      if (--s.reads === 0) for (const w of s.drained.splice(0)) w();
    }
  }

  private async readCurrentGuarded(buf: Uint8Array, at: number, first: number, count: number): Promise<void> {
    const readers = this.currentReaders;
    for (let b = first; b < first + count; b++) readers.set(b, (readers.get(b) ?? 0) + 1);
    try {
      await this.readCurrent(buf, at, first, count);
    } finally {
      let freed = false;
      for (let b = first; b < first + count; b++) {
        const n = readers.get(b)! - 1;
        if (n === 0) {
          readers.delete(b);
          freed = true;
        } else readers.set(b, n);
      }
      if (freed && this.readerWaiters.length > 0) this.wakeReaderWaiters();
    }
  }

  private wakeReaderWaiters(): void {
    this.readerWaiters = this.readerWaiters.filter((w) => {
      if (this.readersOn(w.first, w.count)) return true;
      w.resolve();
      return false;
    });
  }

  private readersOn(first: number, count: number): boolean {
    if (this.currentReaders.size === 0) return false;
    for (let b = first; b < first + count; b++) if (this.currentReaders.has(b)) return true;
    return false;
  }

  // ---- copy-on-write ---------------------------------------------------------------

  /** Index of the newest snapshot that is not being deleted, -1 if none. */
  private topLive(): number {
    for (let j = this.chain.length - 1; j >= 0; j--) if (!this.chain[j]!.deleting) return j;
    return -1;
  }

  /** Whether block b is held by some snapshot from index t up (then no copy is needed). */
  private heldFrom(t: number, b: number): boolean {
    for (let j = t; j < this.chain.length; j++) if (this.chain[j]!.map.has(b)) return true;
    return false;
  }

  private async copyOnWrite(first: number, count: number): Promise<void> {
    const t = this.topLive();
    if (t < 0) return;
    const snap = this.chain[t]!;
    const end = Math.min(first + count, Math.ceil(snap.size / BLOCK));
    let b = first;
    let copied = false;
    while (b < end) {
      if (this.heldFrom(t, b)) {
        b++;
        continue;
      }
      let e = b + 1;
      while (e < end && !this.heldFrom(t, e)) e++;
      await this.copyRun(snap, b, e - b);
      copied = true;
      b = e;
    }
    if (copied && this.readersOn(first, count)) {
      this.counters.cowWaits++;
      await new Promise<void>((resolve) => this.readerWaiters.push({ first, count, resolve }));
    }
  }

  private async copyRun(snap: SnapLayer, first: number, count: number): Promise<void> {
    const buf = await this.getScratch();
    try {
      this.counters.cowRuns++;
      this.counters.cowBlocks += count;
      this.counters.cowReads++;
      await this.readCurrent(buf, 0, first, count);
      this.counters.cowWrites++;
      await snap.delta.write(buf, 0, count * BLOCK, first * BLOCK);
    } finally {
      this.putScratch(buf);
    }
    // The old data is durable in the delta: from here on the snapshot reads it from there.
    await snap.map.set(first, count);
  }

  private getScratch(): Promise<Buffer> | Buffer {
    const b = this.scratch.pop();
    if (b) return b;
    if (this.scratchMade < SCRATCH_BUFFERS) {
      this.scratchMade++;
      return this.raw.alloc(SCRATCH_BYTES).buf;
    }
    return new Promise((resolve) => this.scratchWaiters.push(resolve));
  }

  private putScratch(b: Buffer): void {
    const w = this.scratchWaiters.shift();
    if (w) w(b);
    else this.scratch.push(b);
  }

  // ---- locks and barriers ------------------------------------------------------------

  /** Per-block locks (ascending order): writes against flattening. The volume above already orders its own writes. */
  async lock(first: number, count: number): Promise<void> {
    for (let b = first; b < first + count; b++) {
      const queue = this.locks.get(b);
      if (!queue) {
        this.locks.set(b, []);
        continue;
      }
      await new Promise<void>((resolve) => queue.push(resolve));
    }
  }

  unlock(first: number, count: number): void {
    for (let b = first; b < first + count; b++) {
      const queue = this.locks.get(b)!;
      const next = queue.shift();
      if (next) next();
      else this.locks.delete(b);
    }
  }

  private writeDone(epoch: number): void {
    const n = this.inEpoch.get(epoch)! - 1;
    if (n === 0) this.inEpoch.delete(epoch);
    else this.inEpoch.set(epoch, n);
    if (n === 0 && this.barriers.length > 0) {
      this.barriers = this.barriers.filter((w) => {
        if (this.writesUpTo(w.upTo)) return true;
        w.resolve();
        return false;
      });
    }
  }

  private writesUpTo(epoch: number): boolean {
    for (const e of this.inEpoch.keys()) if (e <= epoch) return true;
    return false;
  }

  /**
   * Start a new epoch and resolve once every write begun before it has
   * finished: after a change to the chain, no write still follows the old one.
   */
  barrier(): Promise<void> {
    const upTo = this.epoch++;
    if (!this.writesUpTo(upTo)) return Promise.resolve();
    return new Promise((resolve) => this.barriers.push({ upTo, resolve }));
  }

  /** Resolve once no read of the parent is in flight. */
  parentIdle(): Promise<void> {
    if (this.parentInFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.parentDrained.push(resolve));
  }

  // ---- maintenance ------------------------------------------------------------------

  /**
   * Copy every block of `snap` that the snapshot just older than it lacks into
   * that one (snapshot deletion: the older snapshot read them through `snap`).
   * Idempotent: a crash in the middle is finished by running it again.
   */
  async mergeDown(snap: SnapLayer, buf: Buffer): Promise<number> {
    const k = this.chain.indexOf(snap);
    if (k <= 0) return 0;
    const older = this.chain[k - 1]!;
    const blocks = Math.ceil(snap.size / BLOCK);
    const runMax = buf.length / BLOCK;
    let moved = 0;
    for (let b = 0; b < blocks; ) {
      if (!snap.map.has(b) || older.map.has(b)) {
        b++;
        continue;
      }
      let e = b + 1;
      while (e < blocks && e - b < runMax && snap.map.has(e) && !older.map.has(e)) e++;
      await snap.delta.read(buf, 0, (e - b) * BLOCK, b * BLOCK);
      await older.delta.write(buf, 0, (e - b) * BLOCK, b * BLOCK);
      await older.map.set(b, e - b);
      moved += e - b;
      b = e;
    }
    return moved;
  }

  /**
   * Copy every block of the parent that the clone has not written into the
   * clone's image (all-zero runs become holes), so it no longer needs the parent.
   * Runs beside the clone's own writes: each run holds the blocks' locks.
   */
  async fill(buf: Buffer): Promise<number> {
    const own = this.own!;
    const blocks = own.blocks;
    const runMax = buf.length / BLOCK;
    let copied = 0;
    for (let c = 0; c < blocks; c += runMax) {
      const n = Math.min(runMax, blocks - c);
      if (own.hasAll(c, n)) continue;
      await this.lock(c, n);
      try {
        let zeroed = false;
        for (let b = c; b < c + n; ) {
          if (own.has(b)) {
            b++;
            continue;
          }
          let e = b + 1;
          while (e < c + n && !own.has(e)) e++;
          const view = buf.subarray(0, (e - b) * BLOCK);
          await this.readParent(view, 0, b, e - b);
          // The image may hold an unacknowledged write from before a crash: never leave it visible.
          if (view.every((v) => v === 0) && (await this.raw.punchHole(b * BLOCK, (e - b) * BLOCK, true))) zeroed = true;
          else await this.raw.write(view, 0, (e - b) * BLOCK, b * BLOCK);
          copied += e - b;
          b = e;
        }
        if (zeroed) await this.raw.datasync(); // holes durable before the bits that expose them
        await own.set(c, n);
      } finally {
        this.unlock(c, n);
      }
    }
    return copied;
  }

  /** Resolve once no read of `snap`'s delta is in flight. */
  static idle(snap: SnapLayer): Promise<void> {
    if (snap.reads === 0) return Promise.resolve();
    return new Promise((resolve) => snap.drained.push(resolve));
  }

  /** The same read path for a read-only view of snapshot `snap` (a Volume over it). */
  view(snap: SnapLayer, onClose: () => void): VolumeBackend {
    return new SnapshotView(this, snap, onClose);
  }
}

const ZERO_STATS = (): BackendStats => ({ reads: 0, writes: 0, bytesRead: 0, bytesWritten: 0, unsyncedWrites: 0, syncs: 0, inFlight: 0, maxInFlight: 0, errors: 0 });

/** A snapshot as a read-only backend: what a Volume opened on `vol@snap` reads through. */
class SnapshotView implements VolumeBackend {
  readonly stats = ZERO_STATS();
  private closed = false;

  constructor(
    private readonly head: LayeredBackend,
    private readonly snap: SnapLayer,
    private readonly onClose: () => void,
  ) {}

  get direct(): boolean {
    return this.head.raw.direct;
  }
  alloc(size: number) {
    return this.head.raw.alloc(size);
  }

  readTo(buf: Uint8Array, at: number, length: number, position: number, target: IoTarget, tag: number): void {
    this.stats.reads++;
    this.stats.bytesRead += length;
    this.head.readSnapshot(this.snap, buf, at, position / BLOCK, length / BLOCK).then(
      () => target.ioDone(tag, 0),
      (err) => {
        this.stats.errors++;
        target.ioDone(tag, resultOf(err));
      },
    );
  }

  read(buf: Uint8Array, at: number, length: number, position: number): Promise<void> {
    return this.head.readSnapshot(this.snap, buf, at, position / BLOCK, length / BLOCK);
  }

  write(): Promise<void> {
    return Promise.reject(readOnly(`snapshot ${this.head.name}@${this.snap.name}`));
  }
  datasync(): Promise<void> {
    return Promise.resolve();
  }
  punchHole(): boolean {
    return false;
  }
  truncate(): Promise<void> {
    return Promise.reject(readOnly(`snapshot ${this.head.name}@${this.snap.name}`));
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose();
  }
}
