import { capabilitiesOf } from '../../../block/device.ts';
import type { BlockDevice } from '../../../block/types.ts';
import { dbLogFailed, ioError, noSpace, type StorvisorError } from '../../../util/errors.ts';
import { Op, type Mutation, type OpCode } from '../store/mutations.ts';
import type { SnapshotSink, SnapshotSource, SnapshotStats } from '../store/snapshot.ts';

/** Mutations that can only make the data set smaller: 1 at their op code (a table, not a Set probe per append). */
const SHRINKING = new Uint8Array(256);
for (const op of [Op.Del, Op.LPop, Op.RPop, Op.HDel, Op.SRem, Op.ZRem, Op.ZPopMin, Op.FlushDb] as OpCode[]) SHRINKING[op] = 1;
import { readTailBlock, type LogPosition } from './recovery.ts';
import { LOG_VERSION, chainSeed, encodeRecord, encodeSuperblock, encodedRecordMutation, encodedRecordSize, recordSize, regionOffset, type Superblock } from './format.ts';

export type AppendFsync = 'always' | 'everysec';


/**
 * Bytes of writes a compaction keeps in memory to carry into the new region. Past
 * it, writes wait for the flip (a stall, but bounded memory): a guest's Buffers are
 * limited, and writes faster than the snapshot is built would otherwise hold up to
 * a whole region.
 */
export const CARRY_MAX_BYTES = 32 * 1024 * 1024;
/**
 * Bytes of queued (encoded, not yet written) records past which new writes
 * wait for the log: everysec acknowledges before the write, so without it one
 * client pipelining large SETs could queue without end. The log's own memory
 * is then at most this twice (the batch being written and the next one being
 * encoded, each ending with one record past the bound) plus CARRY_MAX_BYTES
 * during a compaction; queued records hold no other memory (no socket chunk,
 * no Mutation: they are encoded as they are appended).
 */
export const QUEUE_MAX_BYTES = 16 * 1024 * 1024;
/**
 * everysec writes the queue once it holds this many bytes, or once its oldest
 * record has waited EVERYSEC_WRITE_MS, instead of at every event-loop turn:
 * each write is a round trip to the device (on a FileBlockDevice a hand-off to
 * the thread pool and a wake-up back, on a guest a queue request), and at -P1
 * a turn's batch is a few dozen small SETs, so per-turn writes cost a SET more
 * than its own encoding. everysec promises at most about a second of loss; the
 * window adds at most EVERYSEC_WRITE_MS to it (a process killed loses what is
 * not written yet, a host crash what is not flushed yet: each second's flush
 * follows a write of everything queued).
 */
export const EVERYSEC_WRITE_BYTES = 512 * 1024;
export const EVERYSEC_WRITE_MS = 20;
/**
 * `always` group commit across connections. With one write in flight, 50
 * clients at -P1 split into two cohorts that never merge: one waits for the
 * write in flight while the other fills the next batch (24 records per write,
 * where redis-server, whose fsync blocks its loop, gathers 46). The gather
 * merges them: once a batch is durable, the next write waits (at most
 * GATHER_MS) until the queue also holds as many records as that batch
 * released. That pays only while the device is the bottleneck: the two
 * cohorts overlap the write of one with the processing of the other, and the
 * merged cohort cannot, so merging wins only when the released writers come
 * back faster than a write takes (two cohorts: 25 records per write time L;
 * merged: 50 per L + return time R; better iff R < L). When the main thread
 * is busy (R, which includes executing the returning commands, exceeds L) or
 * the writers do not come back (the bound passes), gathering is off for the
 * next GATHER_SKIP batches, twice as many after each such gather in a row (up
 * to GATHER_SKIP_MAX): a probe every few hundred batches at most. A gather
 * that holds GATHER_MAX_BYTES ends at once.
 */
export const GATHER_MS = 2;
const GATHER_SKIP = 8;
const GATHER_SKIP_MAX = 256;
const GATHER_MAX_BYTES = 1024 * 1024;

/**
 * The gather of `always` group commit (see GATHER_MS), shared by the log and
 * the bench's RESP floor (which must commit the same way to be its ceiling).
 */
export class CommitGather {
  /** Gathers begun; those that ended at their bound; those that did not pay (their writers came back slower than a write). */
  readonly counters = { gathers: 0, timeouts: 0, slow: 0 };
  private timer: NodeJS.Timeout | null = null;
  private target = 0;
  private started = 0;
  /** Duration of the write that released the cohort (ms). */
  private writeMs = 0;
  /** Batches left to write without a gather, and how many the next failed one skips. */
  private skip = 0;
  private backoff = GATHER_SKIP;

  /** `queued()`: records queued now; `wake()`: called when a hold ends by time (the queue may be written). */
  constructor(
    private readonly ms: number,
    private readonly queued: () => number,
    private readonly wake: () => void,
  ) {}

  /** A write of `writeMs` that released `released` records is durable, with `queued` records waiting: hold the next write. */
  begin(queued: number, released: number, writeMs: number): void {
    if (this.ms <= 0 || released === 0) return;
    if (this.skip > 0) {
      this.skip--;
      return;
    }
    this.counters.gathers++;
    this.target = queued + released;
    this.writeMs = writeMs;
    this.started = performance.now();
    this.timer ??= setTimeout(this.expired, this.ms);
  }

  /** Is the next write still held, with `queued` records of `bytes` queued? */
  holding(queued: number, bytes: number): boolean {
    if (this.timer === null) return false;
    if (queued < this.target && bytes < GATHER_MAX_BYTES) return true;
    this.stop();
    if (performance.now() - this.started > this.writeMs) {
      this.counters.slow++;
      this.fail();
    } else this.backoff = GATHER_SKIP;
    return false;
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private fail(): void {
    this.skip = this.backoff;
    this.backoff = Math.min(2 * this.backoff, GATHER_SKIP_MAX);
  }

  private readonly expired = (): void => {
    this.timer = null;
    // Only a hold that held writes back counts (an idle log has nothing to gather).
    if (this.queued() > 0) {
      this.counters.timeouts++;
      this.fail();
    }
    this.wake();
  };
}
/** A batch buffer starts this big and is kept between batches unless it is much larger than the batches written. */
const STAGE_MIN_BYTES = 64 * 1024;
const STAGE_KEEP_BYTES = 1024 * 1024;

export interface LogWriterOptions {
  appendfsync: AppendFsync;
  /**
   * Starts a snapshot of the data set as it is at the call (for compaction): it
   * feeds `sink` the mutations that rebuild it, a slice per step().
   */
  snapshot: (sink: SnapshotSink) => SnapshotSource;
  /** Called when records up to `seq` are durable (always mode) or written (everysec). */
  onDurable: (seq: number) => void;
  /** Called once if a write fails; the log is then failed for good. */
  onFailure: (err: Error) => void;
  /** Called after a compaction, or after a batch that ends a backlog: writes that waited for room may be tried again. */
  onRoom?: () => void;
  log?: (msg: string) => void;
  /** `always`: the longest the next write waits for the writers a batch released (ms; default GATHER_MS, 0: never). */
  gatherMs?: number;
}

/**
 * Appends mutation records to the active region with group commit: every
 * mutation appended while a write is in flight joins the next batch, and one
 * batch is one block-aligned pwrite (FUA in `always` mode). The partial last
 * block is rewritten with identical leading bytes, so a torn write cannot
 * damage records that were already acknowledged.
 *
 * Compaction runs in the same loop, between batches: it serialises the
 * current in-memory data set (which already contains every queued mutation,
 * so the queue is dropped rather than written twice), writes it to the other
 * region, makes it durable, then flips the superblock.
 */
export class LogWriter {
  private sb: Superblock;
  private tail: number;
  private lastCrc: number;
  private tailBlock: Buffer;
  /** Sequence number of the next record written (appended or snapshot). */
  private nextSeq: number;
  /** Records appended and not yet taken for a write, encoded as the region will hold them. */
  private stage: Stage;
  /** The other batch buffer: being written, or free for the next take. */
  private spare: Stage;
  /** Bytes of records taken for the write in flight (not yet in `tail`). */
  private inflightBytes = 0;
  /** A write was refused for room since the last snapshot: compact as soon as something shrinks. */
  private refusedSinceSnapshot = false;
  private appended = 0;
  private written = 0;
  private running = false;
  private idleWaiters: (() => void)[] = [];
  private compactRequested = false;
  /** The active region may be appended to (false for a just-recovered one until its first compaction). */
  private appendable: boolean;
  private failure: StorvisorError | null = null;
  /** Size of the snapshot at the start of the active region (live data then). */
  private snapshotBytes: number;
  private dirtySince = 0;
  private everysecTimer: NodeJS.Timeout | null = null;
  /** everysec: the queue is written when this fires (armed by the first record queued after a write). */
  private windowTimer: NodeJS.Timeout | null = null;
  /** everysec: write the queue now, whatever its size (the window ended, or someone waits for it). */
  private writeDue = false;
  private flushing: Promise<void> | null = null;
  /** always: the next write waits for the writers the last batch released (see CommitGather). */
  private readonly gather: CommitGather;
  readonly counters = { batches: 0, records: 0, bytesWritten: 0, flushes: 0, compactions: 0, compactedBytes: 0 };
  /** Gathers begun, those that ended by time, and those whose writers came back slower than a write (always). */
  get gatherCounters(): { gathers: number; timeouts: number; slow: number } {
    return this.gather.counters;
  }

  constructor(
    private readonly device: BlockDevice,
    pos: LogPosition,
    private readonly options: LogWriterOptions,
  ) {
    this.sb = pos.sb;
    this.tail = pos.tail;
    this.lastCrc = pos.lastCrc;
    this.tailBlock = pos.tailBlock;
    this.nextSeq = pos.nextSeq;
    this.stage = new Stage();
    this.spare = new Stage();
    this.gather = new CommitGather(options.gatherMs ?? GATHER_MS, () => this.stage.records, () => this.kick());
    this.stage.startAt(pos.tail - pos.tailBlock.length, pos.tailBlock, 0, pos.tailBlock.length, pos.lastCrc, pos.nextSeq);
    // No kick: a log that is only read is never written.
    this.compactRequested = pos.compactFirst;
    this.appendable = !pos.compactFirst;
    this.snapshotBytes = pos.tail; // unknown after recovery: assume it is all live
    if (options.appendfsync === 'everysec') {
      this.everysecTimer = setInterval(() => void this.flushIfDirty(), 1000);
      this.everysecTimer.unref();
    }
  }

  get regionSize(): number {
    return this.sb.regionSize;
  }

  /** Bytes kept free for commands that only shrink the data set (DEL, pops, expiry). */
  get reserve(): number {
    return Math.min(Math.max(this.sb.regionSize >> 5, 64 * 1024), this.sb.regionSize >> 2);
  }

  /** Upper bound on the size a snapshot taken now would have. */
  get liveBound(): number {
    return this.tail + this.inflightBytes + this.queueBytes;
  }

  /** Bytes of records appended and not yet taken for a write. */
  get queueBytes(): number {
    return this.stage.bytes;
  }

  /** Bytes of records appended and not yet written (queued and in flight): what the log holds in memory for them. */
  get pendingBytes(): number {
    return this.stage.bytes + this.inflightBytes;
  }

  get failed(): StorvisorError | null {
    return this.failure;
  }

  get durableSeq(): number {
    return this.written;
  }

  get usedBytes(): number {
    return this.tail;
  }

  /**
   * May a command that grows the data set by about `bytes` be accepted? When
   * the answer is no but compaction could free room, one is started.
   */
  hasRoomFor(bytes: number): boolean {
    if (this.backlogged) return false; // the queue is written first; onRoom says when
    if (this.liveBound + bytes <= this.sb.regionSize - this.reserve) return true;
    this.refusedSinceSnapshot = true;
    // Queued records count: a pipeline parsed in one turn fills the queue before the log moves.
    if (this.liveBound - this.snapshotBytes >= this.reserve / 2) {
      this.compactRequested = true;
      this.kick();
    }
    return false;
  }

  /** Compact at the next chance, and resolve once it (and all queued work) is done. */
  async compactNow(): Promise<void> {
    this.compactRequested = true;
    this.kick();
    await this.idle();
  }

  /**
   * Which batch a mutation appended now joins: it changes whenever the queue
   * is taken, so mutations appended under the same id are acknowledged together.
   */
  batchId = 0;

  /** Queue one mutation (encoded at once into the next batch: it holds none of `m`'s buffers); returns its sequence number. */
  append(m: Mutation): number {
    this.stage.append(m, this.sb.blockSize);
    if (SHRINKING[m.op] === 1) this.stage.shrinks = true;
    this.appended++;
    this.kick();
    return this.appended;
  }

  /** Resolve when everything appended so far is durable. */
  async sync(): Promise<void> {
    await this.idle();
    await this.flushIfDirty();
  }

  async close(): Promise<void> {
    if (this.everysecTimer) clearInterval(this.everysecTimer);
    this.everysecTimer = null;
    await this.sync();
    if (this.windowTimer) clearTimeout(this.windowTimer);
    this.windowTimer = null;
    this.gather.stop();
  }

  private idle(): Promise<void> {
    if ((!this.running && this.stage.records === 0) || (!this.running && this.failure)) return Promise.resolve();
    const p = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    // Someone waits for the queue: everysec's window does not hold it back.
    this.writeDue = true;
    this.kick();
    return p;
  }

  /** Should the pump write the queue now (rather than let everysec's window gather more)? */
  private writeNow(): boolean {
    if (this.stage.records === 0) return false;
    // Waiters for idle() (sync, close, compaction) want the queue empty at once.
    if (this.idleWaiters.length > 0) return true;
    if (this.options.appendfsync === 'always') return !this.gather.holding(this.stage.records, this.queueBytes);
    return this.writeDue || this.queueBytes >= EVERYSEC_WRITE_BYTES;
  }

  /** everysec: write the queue at the end of the window, if nothing writes it before. */
  private armWindow(): void {
    if (this.windowTimer !== null || this.failure || this.options.appendfsync !== 'everysec') return;
    this.windowTimer = setTimeout(() => {
      this.windowTimer = null;
      this.writeDue = true;
      this.kick();
    }, EVERYSEC_WRITE_MS);
  }

  private kick(): void {
    // A compaction's pump is waiting for work: wake it on the next turn, so that
    // commands from every socket read in this turn join one batch.
    if (this.pumpWake !== null && !this.wakeScheduled) {
      this.wakeScheduled = true;
      setImmediate(() => {
        this.wakeScheduled = false;
        this.wakePump();
      });
    }
    if (this.running || this.failure) return;
    if (!this.compactRequested && !this.writeNow()) {
      if (this.stage.records > 0) this.armWindow();
      return;
    }
    this.running = true;
    // setImmediate, not a microtask: commands parsed from every socket in this
    // event loop turn join the first batch.
    setImmediate(() => void this.run());
  }

  private async run(): Promise<void> {
    try {
      while (!this.failure && (this.writeNow() || this.compactRequested)) {
        const batchBytes = this.queueBytes;
        const batchShrinks = this.stage.shrinks;
        if (this.compactRequested || this.shouldCompact(batchBytes, batchShrinks)) {
          this.compactRequested = false;
          await this.compact();
          continue;
        }
        this.writeDue = false;
        const t0 = performance.now();
        const released = await this.writeQueued();
        if (this.options.appendfsync === 'always' && !this.failure) this.gather.begin(this.stage.records, released, performance.now() - t0);
      }
    } catch (err) {
      this.failure = dbLogFailed(err);
      this.options.log?.(`database log failed: ${this.failure.message}`);
      this.options.onFailure(this.failure);
    } finally {
      this.running = false;
      // What stays queued (everysec, under the write size) waits for its window.
      if (this.stage.records > 0 && !this.failure) this.armWindow();
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /**
   * Write the queue as one batch to the active region and acknowledge it. `keep`
   * sees the written batch before its buffer is reused (and may take the buffer over).
   */
  private async writeQueued(keep?: (batch: Stage) => void): Promise<number> {
    const wasBacklogged = this.backlogged;
    const lastSeq = this.appended;
    const batch = this.take();
    const records = batch.records;
    try {
      await this.writeStage(batch, true);
      keep?.(batch);
    } finally {
      this.inflightBytes = 0;
      batch.release(this.sb.blockSize);
    }
    this.acknowledge(lastSeq);
    if (wasBacklogged) this.options.onRoom?.();
    return records;
  }

  /**
   * Take the queue for a write: the next records go to the other buffer, which
   * starts with the batch's partial last block (the next write rewrites it with
   * identical leading bytes) and goes on with its chain.
   */
  private take(): Stage {
    const batch = this.stage;
    const next = this.spare;
    if (next.inFlight) throw ioError('database log: two batches taken at once');
    const bs = this.sb.blockSize;
    const lastBlock = Math.floor(batch.used / bs) * bs;
    next.startAt(batch.blockStart + lastBlock, batch.buf, lastBlock, batch.used, batch.crc, batch.seq, batch.used);
    this.stage = next;
    this.spare = batch;
    batch.inFlight = true;
    this.batchId++;
    this.inflightBytes = batch.bytes;
    return batch;
  }
  private acknowledge(seq: number): void {
    if (seq <= this.written) return;
    this.written = seq;
    this.options.onDurable(seq);
  }

  /** May the queue be appended to the active region as it is (room, version, not a just-recovered region)? */
  private queueFitsActive(): boolean {
    return this.appendable && this.sb.version === LOG_VERSION && this.tail + this.queueBytes <= this.sb.regionSize;
  }

  private shouldCompact(batchBytes: number, batchShrinks: boolean): boolean {
    const r = this.sb.regionSize;
    if (this.tail + batchBytes > r) return true; // it does not fit: must
    // Writes are being refused and this batch frees data: compact now, so room shows at once.
    if (this.refusedSinceSnapshot && batchShrinks) return true;
    const grown = this.tail - this.snapshotBytes;
    // Like Redis's auto-aof-rewrite: once the log is twice the last snapshot.
    if (this.tail >= r >> 3 && this.tail >= 2 * this.snapshotBytes) return true;
    // Near the admission limit, reclaim dead records before refusing writes.
    return this.tail + batchBytes > r - 2 * this.reserve && grown >= this.reserve / 2;
  }

  /** Write a taken batch at the tail; with `durable` false it is not made durable here (in `always` too: the caller flushes). */
  private async writeStage(batch: Stage, durable: boolean): Promise<void> {
    // Only a version 2 region is appended to (a recovered one is compacted first).
    if (this.sb.version !== LOG_VERSION) throw ioError(`database log: refusing to append to a version ${this.sb.version} region`);
    if (batch.blockStart + batch.prefix !== this.tail) throw ioError(`database log: a batch staged at ${batch.blockStart + batch.prefix} does not follow the tail at ${this.tail}`);
    const bs = this.sb.blockSize;
    const end = Math.ceil(batch.used / bs) * bs;
    batch.buf.fill(0, batch.used, end);
    const buf = batch.buf.subarray(0, end);
    const always = this.options.appendfsync === 'always';
    await this.device.pwrite(buf, regionOffset(this.sb, this.sb.activeRegion) + batch.blockStart, {
      fua: always && durable && !this.device.writeThrough,
    });
    this.tail = batch.blockStart + batch.used;
    this.lastCrc = batch.crc;
    this.nextSeq = batch.seq;
    const lastBlock = Math.floor(batch.used / bs) * bs;
    this.tailBlock = Buffer.from(batch.buf.subarray(lastBlock, batch.used));
    if (!always) this.dirtySince ||= Date.now();
    this.counters.batches++;
    this.counters.records += batch.records;
    this.counters.bytesWritten += end;
  }

  /**
   * Compaction beside the traffic. When the active region can still take
   * appends, the queue is first written there (so everything up to the
   * snapshot point is durable and acknowledged), the snapshot is serialised
   * (one synchronous step: a single point in time), and while its chunks are
   * written to the other region, new batches keep going to the active region
   * and are acknowledged as usual; they are also carried: appended after the
   * snapshot in the new region before the superblock flips. A crash before
   * the flip finds everything in the old region, after it in the new one.
   * When the active region cannot take appends (full, version 1, or just
   * recovered), the queue joins the snapshot and waits for the flip (the
   * old, stalling behaviour).
   */
  /** A compaction is running or requested. */
  get compacting(): boolean {
    return this.compactRunning || this.compactRequested;
  }

  /** More writes are queued than QUEUE_MAX_BYTES. */
  get backlogged(): boolean {
    return this.queueBytes >= QUEUE_MAX_BYTES;
  }

  /** A write refused for room now may fit later without anything being deleted (onRoom will say). */
  get roomMayCome(): boolean {
    return this.compacting || this.backlogged;
  }

  private compactRunning = false;

  private async compact(): Promise<void> {
    this.compactRunning = true;
    try {
      await this.compactBeside();
    } finally {
      this.compactRunning = false;
    }
    this.options.onRoom?.();
  }

  private async compactBeside(): Promise<void> {
    let beside = this.queueFitsActive();
    if (beside && this.stage.records > 0) await this.writeQueued();
    // The cut: the snapshot started below holds exactly the mutations appended so
    // far. Those still queued are in it (not to be carried); until some region
    // holds them, they are acknowledged only at the flip.
    const heldSeq = this.appended;
    let notCarried = this.stage.records;
    if (!beside) {
      this.batchId++;
      this.stage.reset();
      notCarried = 0;
    }
    // Numbering goes on from the last record: the other region's leftovers from
    // its previous pass all carry lower numbers than anything written now. Beside
    // the traffic, the active region goes on taking records while the snapshot is
    // written: the queued ones already in the snapshot (not carried) and the
    // carried ones. The snapshot's numbers start past the first kind, and the
    // carried ones follow it, so the new region ends above every number the
    // region being left holds, and the next pass into it numbers above them all.
    const next: Superblock = {
      ...this.sb,
      version: LOG_VERSION,
      activeRegion: this.sb.activeRegion === 0 ? 1 : 0,
      generation: this.sb.generation + 1,
      firstSeq: this.nextSeq + notCarried,
    };
    const bs = this.sb.blockSize;
    const image = this.image ?? new ChunkedImage(this.device.writeThrough ? SNAPSHOT_CHUNK_WRITE_THROUGH : SNAPSHOT_CHUNK);
    this.image = null;
    image.reset();
    let crc = chainSeed(next.generation);
    let seq = next.firstSeq;
    let overflow: StorvisorError | null = null;
    // Records arrive from the walk's slices and from mutations that save a key
    // ahead of it (beforeMutation); either way in one order, into one chain.
    const source = this.options.snapshot((m) => {
      if (overflow !== null) return;
      if (image.length + recordSize(m) > next.regionSize) {
        overflow = noSpace(`volume is full: the live data set needs more than the ${next.regionSize}-byte region`);
        return;
      }
      crc = image.appendRecord(m, crc, seq++);
    });
    this.lastSnapshot = source.stats;

    // Beside the snapshot, a pump writes what arrives to the active region
    // (acknowledged there, as without compaction) and keeps it to carry.
    // Carried records are kept as the bytes they were written as (re-encoded at the flip into the new chain).
    const carry = this.carry;
    carry.clear();
    let carryBytes = 0;
    /** Keep the records of a batch written beside, but the first notCarried (the snapshot has them): the buffer itself. */
    const keep = (batch: Stage): void => {
      let p = batch.prefix;
      for (; notCarried > 0 && p < batch.used; notCarried--) p += encodedRecordSize(batch.buf, p);
      if (p === batch.used) return;
      carry.adopt(batch.buf, p, batch.used);
      batch.buf = EMPTY;
      carryBytes = carry.length;
    };
    let pumpStop = false;
    let pumpError: unknown = null;
    const lane = new DeviceLane();
    /** A snapshot chunk was written and nothing made it durable since (no flush, no batch FUA). */
    let chunkUnflushed = false;
    const pump = async (): Promise<void> => {
      for (;;) {
        // Once the snapshot is written, one more batch takes what is queued then; what
        // comes later waits for the flip (it is written to the new region right after).
        // The pump must not chase steady traffic, or the compaction would only end when
        // the carry reached CARRY_MAX_BYTES (and then stall every writer for the flip).
        const last = pumpStop;
        if (beside && this.stage.records > 0) {
          // The batch goes to the device between chunk writes, never beside one (see DeviceLane);
          // the queue is checked and taken once the lane is ours: what arrived while waiting joins.
          await lane.acquire(true);
          try {
            // Carried records are held in memory until the flip: past CARRY_MAX_BYTES the queue waits for it instead.
            if (!this.queueFitsActive() || image.length + carryBytes + this.queueBytes > next.regionSize || carry.retained >= CARRY_MAX_BYTES) {
              beside = false;
              continue;
            }
            await this.writeQueued(keep);
            // Its FUA (an fdatasync of the whole backing file) made the chunk written before it durable too.
            if (this.options.appendfsync === 'always') chunkUnflushed = false;
          } finally {
            lane.release();
          }
          if (last) return;
          continue;
        }
        if (pumpStop) return;
        await new Promise<void>((resolve) => (this.pumpWake = resolve));
      }
    };
    const pumping = pump().catch((err: unknown) => {
      pumpError = err;
    });
    const stopPump = async () => {
      pumpStop = true;
      this.wakePump();
      await pumping;
    };

    let offset = regionOffset(next, next.activeRegion);
    const t0 = performance.now();
    let tailBlock: Buffer | null = null;
    let tWritten = t0;
    try {
      for (;;) {
        const done = source.step(SNAPSHOT_SLICE_MS);
        // Full chunks go to the disk before the next slice: the walk never runs
        // ahead of the disk by more than one slice's worth.
        for (let c = image.takeFull(); c !== null; c = image.takeFull()) {
          if (overflow !== null) break;
          // One chunk at a time, and only between log batches: a batch waits for at most
          // one chunk write (and a waiting batch goes before the next chunk).
          await lane.acquire(false);
          try {
            // Beside the traffic, at most one chunk is written but not yet durable: otherwise
            // the next batch's FUA (an fdatasync of the whole backing file) would carry every
            // chunk written since, and its clients would wait for that. A batch between two
            // chunks makes the first durable with its own FUA, so under steady writes chunks
            // need no flush of their own; without batches, each chunk is flushed before the
            // next is written. Without batches beside (the queue waits for the flip), one
            // flush at the end is enough.
            if (chunkUnflushed && beside) await this.device.flush();
            await this.device.pwrite(c, offset);
            chunkUnflushed = !this.device.writeThrough;
          } finally {
            lane.release();
          }
          offset += c.length;
          image.recycle(c);
          if (pumpError !== null) throw pumpError;
        }
        if (overflow !== null) throw overflow;
        if (pumpError !== null) throw pumpError;
        if (done) break;
        // Let the event loop run: sockets are read and replies sent between slices.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      // Complete (no mutation reaches the image any more): the last chunk, zero padded to a block.
      const last = image.tail(bs);
      // The region's tail block as it is on the device now: appends go on from it (no read back).
      tailBlock = image.tailBlock(bs);
      if (last.length > 0) {
        await lane.acquire(false);
        try {
          await this.device.pwrite(last, offset);
        } finally {
          lane.release();
        }
      }
      tWritten = performance.now();
    } finally {
      source.close();
      await stopPump();
    }
    const tStopped = performance.now();
    if (pumpError !== null) throw pumpError;
    const imageBytes = image.length;
    this.image = image;
    if (imageBytes + carryBytes > next.regionSize) {
      throw noSpace(`volume is full: the live data set and the writes during its compaction need more than the ${next.regionSize}-byte region`);
    }
    // The flip. Writers that came after the pump stopped wait for it, so it is as few
    // device round trips as order allows: the carried records after the snapshot (not
    // durable on their own), one flush that makes the snapshot and them durable, then
    // the superblock with FUA. (It was flush, read of the tail block, carry with FUA,
    // flush, superblock with FUA, flush: on a guest's queue each is a round trip to the
    // controller and each flush an fdatasync, so the flip took twice as long.)
    // What was queued while the pump stopped joins the carry: its writers are acknowledged
    // by the flip instead of by one more batch after it. Queued records the snapshot
    // already holds (the first notCarried) are dropped: acknowledged at the flip.
    if (tailBlock === null) throw ioError('database log: compaction ended without its tail block');
    const carried = carry.mutations();
    let queued = this.stage.mutations();
    if (notCarried > 0) queued = queued.slice(notCarried);
    let queuedBytes = 0;
    for (const m of queued) queuedBytes += recordSize(m);
    let flipBatch = carried;
    let flipSeq = heldSeq;
    if (queued.length > 0 && imageBytes + carryBytes + queuedBytes <= next.regionSize) {
      flipBatch = carried.concat(queued);
      flipSeq = this.appended;
      queued = [];
    }
    const previous = { sb: this.sb, tail: this.tail, lastCrc: this.lastCrc, tailBlock: this.tailBlock, nextSeq: this.nextSeq };
    this.sb = next;
    this.tail = imageBytes;
    this.lastCrc = crc;
    this.nextSeq = seq;
    this.tailBlock = tailBlock;
    // Re-encode in the new region's chain, before any await: what is appended from here on
    // follows the flip's records (the records decoded above are views of the old buffers).
    const old = this.stage;
    const flip = this.spare;
    flip.startAt(imageBytes - tailBlock.length, tailBlock, 0, tailBlock.length, crc, seq);
    let flipBytes = 0;
    for (const m of flipBatch) flipBytes += recordSize(m);
    flip.reserve(Math.ceil((tailBlock.length + flipBytes) / bs) * bs);
    for (const m of flipBatch) flip.append(m, bs);
    const after = new Stage();
    const flipLastBlock = Math.floor(flip.used / bs) * bs;
    after.startAt(flip.blockStart + flipLastBlock, flip.buf, flipLastBlock, flip.used, flip.crc, flip.seq);
    for (const m of queued) after.append(m, bs);
    this.stage = after;
    this.spare = flip;
    old.buf = EMPTY;
    // The carried records are in the flip's buffer now: let their buffers go before the writes.
    const carriedCount = carried.length;
    carried.length = 0;
    queued.length = 0;
    flipBatch.length = 0;
    carry.clear();
    this.batchId++;
    try {
      if (flip.records > 0) {
        flip.inFlight = true;
        this.inflightBytes = flip.bytes;
        try {
          await this.writeStage(flip, false);
        } finally {
          this.inflightBytes = 0;
          flip.release(bs);
        }
      }
      if (!this.device.writeThrough) await this.device.flush();
      // The new region is durable; now make it the active one. A device that does not honour
      // FUA (capabilities) gets a flush after it.
      await this.device.pwrite(encodeSuperblock(next), (next.generation % 2) * bs, { fua: true });
      if (!this.device.writeThrough && !capabilitiesOf(this.device).fua) await this.device.flush();
    } catch (err) {
      // Not flipped: the old region is still the one on the volume (the log is failed from here on).
      Object.assign(this, previous);
      throw err;
    }
    this.appendable = true;
    // As Redis's aof_rewrite_base_size, the base includes what the flip carried: counting only the
    // snapshot, a compaction that carried as much as its snapshot asked for the next one at once.
    this.snapshotBytes = this.tail;
    this.refusedSinceSnapshot = false;
    this.dirtySince = 0;
    this.counters.compactions++;
    this.counters.compactedBytes += imageBytes;
    this.acknowledge(flipSeq);
    const tFlipped = performance.now();
    const st = source.stats;
    this.options.log?.(
      `database log compacted: ${imageBytes} live bytes in region ${next.activeRegion} (${carriedCount} records carried, ${flip.records - carriedCount} queued during the flip; ` +
        `${st.slices} slices, longest ${st.maxSliceMs.toFixed(2)} ms; ${st.early} keys saved ahead of the walk; ` +
        `snapshot written in ${(tWritten - t0).toFixed(1)} ms, pump stopped ${(tStopped - tWritten).toFixed(1)} ms later, flip ${(tFlipped - tStopped).toFixed(1)} ms)`,
    );
  }

  /** Statistics of the latest compaction's snapshot (slices and their longest time). */
  lastSnapshot: SnapshotStats | null = null;
  /** Records written beside a compaction, to carry into the new region (kept for the next compaction). */
  private readonly carry = new CarrySegments();
  /** The snapshot chunks of the previous compaction, kept for the next. */
  private image: ChunkedImage | null = null;
  private pumpWake: (() => void) | null = null;
  private wakeScheduled = false;

  private wakePump(): void {
    const w = this.pumpWake;
    this.pumpWake = null;
    w?.();
  }

  private async flushIfDirty(): Promise<void> {
    if (this.flushing) return this.flushing;
    if (!this.dirtySince || this.failure) return;
    this.dirtySince = 0;
    this.flushing = this.device
      .flush()
      .then(() => {
        this.counters.flushes++;
      })
      .catch((err: unknown) => {
        this.failure = dbLogFailed(err);
        this.options.onFailure(this.failure);
      })
      .finally(() => {
        this.flushing = null;
      });
    return this.flushing;
  }
}

/**
 * Snapshot chunks are this big: a multiple of every block size in use, and
 * small enough that flushing one does not hold a batch's sync for long.
 */
const SNAPSHOT_CHUNK = 256 << 10;
/**
 * On a write-through device (a guest's queue to the controller's volume: every
 * write is O_DSYNC) each chunk write is a durable write of its own, and a log
 * batch waits for the one in flight: smaller chunks keep that wait short (and
 * fit one queue request, whose size_max is at most 128 KiB).
 */
const SNAPSHOT_CHUNK_WRITE_THROUGH = 64 << 10;
/** Longest synchronous step of the snapshot walk (ms); the event loop runs between steps. */
const SNAPSHOT_SLICE_MS = 1;

/**
 * The device during a compaction: log batches (the pump) and snapshot chunk
 * writes take turns, one write at a time. A batch that waits goes first, except
 * right after a batch when a chunk waits (so chunks cannot starve under steady
 * writes). Concurrent, a batch's sync queued behind a chunk's on the same file
 * (on a guest every write is a sync of its own): its clients waited for the
 * chunk and their own write both, each slowed by the other.
 */
export class DeviceLane {
  private busy = false;
  private lastWasLog = false;
  private logWaiter: (() => void) | null = null;
  private chunkWaiter: (() => void) | null = null;

  /** Wait for the lane (one waiter of each kind at a time: the pump, the chunk writer). */
  acquire(log: boolean): Promise<void> {
    if (!this.busy) {
      this.busy = true;
      this.lastWasLog = log;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      if (log) this.logWaiter = resolve;
      else this.chunkWaiter = resolve;
    });
  }

  /** Hand the lane to the next waiter (it stays busy) or free it. */
  release(): void {
    const chunkNext = this.chunkWaiter !== null && (this.lastWasLog || this.logWaiter === null);
    const next = chunkNext ? this.chunkWaiter : this.logWaiter;
    if (next === null) {
      this.busy = false;
      return;
    }
    if (chunkNext) this.chunkWaiter = null;
    else this.logWaiter = null;
    this.lastWasLog = !chunkNext;
    next();
  }
}

/**
 * Records laid out back to back in fixed-size chunks (a record may straddle
 * two), so the snapshot is written with block-aligned writes only. Full
 * chunks are taken and written while later records are still being added;
 * written chunks come back for reuse, so a compaction holds about two.
 */
class ChunkedImage {
  private readonly full: Buffer[] = [];
  private readonly spare: Buffer[] = [];
  private current: Buffer;
  private used = 0;
  private temp: Buffer = Buffer.alloc(0);
  length = 0;

  constructor(private readonly chunkSize: number) {
    this.current = Buffer.alloc(chunkSize);
  }

  reset(): void {
    for (const c of this.full.splice(0)) this.recycle(c);
    this.used = 0;
    this.length = 0;
  }

  /** Append one encoded record; returns its crc (the next record's seed). */
  appendRecord(m: Mutation, prevCrc: number, seq: number): number {
    const size = recordSize(m);
    if (this.used + size <= this.chunkSize) {
      const crc = encodeRecord(m, this.current, this.used, prevCrc, seq, size);
      this.used += size;
      this.length += size;
      if (this.used === this.chunkSize) this.nextChunk();
      return crc;
    }
    if (this.temp.length < size) this.temp = Buffer.alloc(Math.max(size, 64 * 1024));
    const crc = encodeRecord(m, this.temp, 0, prevCrc, seq, size);
    for (let done = 0; done < size; ) {
      const n = this.temp.copy(this.current, this.used, done, size);
      this.used += n;
      done += n;
      if (this.used === this.chunkSize) this.nextChunk();
    }
    this.length += size;
    return crc;
  }

  /** The oldest full chunk, now owned by the caller (give it back with recycle). */
  takeFull(): Buffer | null {
    return this.full.shift() ?? null;
  }

  recycle(c: Buffer): void {
    if (this.spare.length < 2) this.spare.push(c);
  }

  /** The partial last chunk, zero padded to a whole block (empty when there is none). */
  /** A copy of the last, partly filled block of the image (empty when it ends on a block boundary). */
  tailBlock(blockSize: number): Buffer {
    return Buffer.from(this.current.subarray(Math.floor(this.used / blockSize) * blockSize, this.used));
  }

  tail(blockSize: number): Buffer {
    const end = Math.ceil(this.used / blockSize) * blockSize;
    this.current.fill(0, this.used, end);
    return this.current.subarray(0, end);
  }

  private nextChunk(): void {
    this.full.push(this.current);
    this.current = this.spare.pop() ?? Buffer.alloc(this.chunkSize);
    this.used = 0;
  }
}

const EMPTY = Buffer.alloc(0);

/** A buffer of `len` bytes that must hold `need`: geometric (appends stay O(1) on average), in STAGE_MIN_BYTES steps. */
function grownSize(len: number, need: number): number {
  const cap = Math.max(need, STAGE_MIN_BYTES, len < QUEUE_MAX_BYTES ? 2 * len : len + (len >> 1));
  return Math.ceil(cap / STAGE_MIN_BYTES) * STAGE_MIN_BYTES;
}

/**
 * One batch buffer: the records appended since the last take, encoded as the
 * active region will hold them from `blockStart` on. Bytes [0, prefix) are
 * the region's partial block before them (the write is block-aligned and
 * needs no copy), the records fill [prefix, used), and crc and seq carry the
 * chain on after the last of them.
 */
class Stage {
  buf: Buffer = EMPTY;
  blockStart = 0;
  prefix = 0;
  used = 0;
  records = 0;
  shrinks = false;
  crc = 0;
  seq = 0;
  private startCrc = 0;
  private startSeq = 0;
  /** Being written: its bytes must not change until release. */
  inFlight = false;

  /** Bytes of the records. */
  get bytes(): number {
    return this.used - this.prefix;
  }

  /** Start with no records at region offset `blockStart`, whose block begins with `src[from, to)`. */
  startAt(blockStart: number, src: Buffer, from: number, to: number, crc: number, seq: number, sizeHint = 0): void {
    const n = to - from;
    // A buffer given away (carried) or smaller than the last batch is replaced (it holds nothing yet)
    // by one a quarter larger than that batch: the next one, about as large, does not regrow it step by step.
    const want = Math.max(n, STAGE_MIN_BYTES, Math.min(sizeHint, QUEUE_MAX_BYTES));
    if (this.buf.length < want) this.buf = Buffer.allocUnsafe(grownSize(0, want + (want >> 2)));
    src.copy(this.buf, 0, from, to);
    this.blockStart = blockStart;
    this.prefix = n;
    this.startCrc = crc;
    this.startSeq = seq;
    this.reset();
  }

  /** Drop the records (the partial block before them stays). */
  reset(): void {
    this.used = this.prefix;
    this.records = 0;
    this.shrinks = false;
    this.crc = this.startCrc;
    this.seq = this.startSeq;
  }

  /** Encode `m` as the next record. */
  append(m: Mutation, blockSize: number): void {
    const size = recordSize(m);
    const need = Math.ceil((this.used + size) / blockSize) * blockSize;
    if (need > this.buf.length) this.grow(need);
    this.crc = encodeRecord(m, this.buf, this.used, this.crc, this.seq++, size);
    this.used += size;
    this.records++;
  }

  /** The records as mutations (views of this buffer: use them before it changes). */
  mutations(): Mutation[] {
    const out: Mutation[] = [];
    for (let p = this.prefix; p < this.used; p += encodedRecordSize(this.buf, p)) out.push(encodedRecordMutation(this.buf, p));
    return out;
  }

  /** Batches in a row that used under a quarter of a buffer larger than STAGE_KEEP_BYTES. */
  private small = 0;

  /** The write is done: the buffer may be reused (one much larger than its recent batches is dropped). */
  release(blockSize: number): void {
    this.inFlight = false;
    const len = this.buf.length;
    // Larger than a batch at the queue bound (the flip's), or than four of its batches for a
    // while (not at once: batches that alternate large and small would regrow it every time).
    this.small = len > STAGE_KEEP_BYTES && len > 4 * Math.ceil(this.used / blockSize) * blockSize ? this.small + 1 : 0;
    if (len > 2 * QUEUE_MAX_BYTES || this.small >= 16) {
      this.buf = EMPTY;
      this.small = 0;
    }
  }

  /** Room for `bytes` in all (so a batch built at once, the flip's, is one allocation). */
  reserve(bytes: number): void {
    if (bytes > this.buf.length) this.grow(bytes, bytes);
  }

  private grow(need: number, exact = 0): void {
    const b = Buffer.allocUnsafe(exact || grownSize(this.buf.length, need));
    this.buf.copy(b, 0, 0, this.used);
    this.buf = b;
  }
}

/**
 * Records written beside a compaction, kept to be carried into its new region:
 * the written batch buffers themselves (taken over from the writer, not copied),
 * each from its first record to carry.
 */
class CarrySegments {
  private readonly segments: { buf: Buffer; from: number; to: number }[] = [];
  /** Bytes of the records. */
  length = 0;
  /** Bytes of the buffers kept for them (what CARRY_MAX_BYTES bounds). */
  retained = 0;

  /** Take over `buf` (the caller gives it up) for its records in [from, to). */
  adopt(buf: Buffer, from: number, to: number): void {
    this.segments.push({ buf, from, to });
    this.length += to - from;
    this.retained += buf.length;
  }

  /** The records as mutations (views of the kept buffers). */
  mutations(): Mutation[] {
    const out: Mutation[] = [];
    for (const { buf, from, to } of this.segments) {
      for (let p = from; p < to; p += encodedRecordSize(buf, p)) out.push(encodedRecordMutation(buf, p));
    }
    return out;
  }

  clear(): void {
    this.segments.length = 0;
    this.length = 0;
    this.retained = 0;
  }
}
