import { capabilitiesOf } from '../../../block/device.ts';
import type { BlockDevice } from '../../../block/types.ts';
import { dbLogFailed, ioError, noSpace, type StorvisorError } from '../../../util/errors.ts';
import { Op, type Mutation, type OpCode } from '../store/mutations.ts';
import type { SnapshotSink, SnapshotSource, SnapshotStats } from '../store/snapshot.ts';

/** Mutations that can only make the data set smaller: 1 at their op code (a table, not a Set probe per append). */
const SHRINKING = new Uint8Array(256);
for (const op of [Op.Del, Op.LPop, Op.RPop, Op.HDel, Op.SRem, Op.ZRem, Op.ZPopMin, Op.FlushDb] as OpCode[]) SHRINKING[op] = 1;
import { readTailBlock, type LogPosition } from './recovery.ts';
import { LOG_VERSION, chainSeed, encodeRecord, encodeRecordBody, encodeSuperblock, encodedRecordMutation, encodedRecordSize, recordSize, regionOffset, sealRecords, type Superblock } from './format.ts';

export type AppendFsync = 'always' | 'everysec';

/** One compaction's timing (ms): its length and its longest synchronous steps (each one stalls every client). */
export interface CompactionStats {
  ms: number;
  /** Snapshot walk slices, and the longest one. */
  slices: number;
  maxSliceMs: number;
  /** The longest save of a key ahead of the walk (in a command, before its mutation). */
  maxEarlyMs: number;
  /** Slices that re-encoded carried records into the new region's chain, and the longest one. */
  catchUpSlices: number;
  maxCatchUpMs: number;
  /** The flip's synchronous step: the pump's last batch and the queue encoded, the state switched. */
  flipSyncMs: number;
  /** The longest a log batch waited for a snapshot chunk write. */
  maxLaneWaitMs: number;
  /** From the pump's stop to the flip's end: writers that arrive in it wait for the flip. */
  flipMs: number;
  carriedRecords: number;
  /** Records the flip's synchronous step encoded (carried and queued): the rest were encoded in slices before. */
  flipRecords: number;
  /** The most memory the carried records held at once (what CARRY_MAX_BYTES bounds). */
  carryPeakBytes: number;
  /** The largest of maxSliceMs, maxEarlyMs, maxCatchUpMs and flipSyncMs. */
  longestStepMs: number;
}


/**
 * Bytes of writes a compaction keeps in memory to carry into the new region. Past
 * it, writes wait for the flip (a stall, but bounded memory): a guest's Buffers are
 * limited, and writes faster than the snapshot is built would otherwise hold up to
 * a whole region.
 */
export const CARRY_MAX_BYTES = 32 * 1024 * 1024;
/**
 * Bytes of queued (encoded, not yet written) records past which new writes
 * wait for the log: one client pipelining large SETs must not queue without
 * end while the device is slower than it. The log's own memory
 * is then at most this twice (the batch being written and the next one being
 * encoded, each ending with one record past the bound) plus CARRY_MAX_BYTES
 * during a compaction; queued records hold no other memory (no socket chunk,
 * no Mutation: they are encoded as they are appended).
 */
export const QUEUE_MAX_BYTES = 16 * 1024 * 1024;
/**
 * Group commit across connections (both modes: a reply waits for its batch's
 * write, with FUA in always, without in everysec). With one write in flight, 50
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
 * The gather of group commit (see GATHER_MS), shared by the log and
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
  /** Called when records up to `seq` are durable (always mode) or written, without a flush (everysec). */
  onDurable: (seq: number) => void;
  /** Called once if a write fails; the log is then failed for good. */
  onFailure: (err: Error) => void;
  /** Called after a compaction, or after a batch that ends a backlog: writes that waited for room may be tried again. */
  onRoom?: () => void;
  log?: (msg: string) => void;
  /** The longest the next write waits for the writers a batch released (ms; default GATHER_MS, 0: never). */
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
  private flushing: Promise<void> | null = null;
  /** The next write waits for the writers the last batch released (see CommitGather). */
  private readonly gather: CommitGather;
  readonly counters = {
    batches: 0,
    records: 0,
    bytesWritten: 0,
    flushes: 0,
    compactions: 0,
    compactedBytes: 0,
    /** Time spent compacting (ms, from the cut to the flip), and the longest synchronous step of any compaction (ms). */
    compactionMs: 0,
    compactionLongestStepMs: 0,
  };
  /** Gathers begun, those that ended by time, and those whose writers came back slower than a write (both modes). */
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
    this.gather.stop();
  }

  private idle(): Promise<void> {
    if ((!this.running && this.stage.records === 0) || (!this.running && this.failure)) return Promise.resolve();
    const p = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    this.kick();
    return p;
  }

  /**
   * Should the pump write the queue now (rather than gather the writers the last
   * batch released)? In both modes replies wait for their batch's write (with
   * FUA in always, without in everysec), so both gather alike.
   */
  private writeNow(): boolean {
    if (this.stage.records === 0) return false;
    // Waiters for idle() (sync, close, compaction) want the queue empty at once.
    if (this.idleWaiters.length > 0) return true;
    return !this.gather.holding(this.stage.records, this.queueBytes);
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
    if (!this.compactRequested && !this.writeNow()) return;
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
        const t0 = performance.now();
        const released = await this.writeQueued();
        if (!this.failure) this.gather.begin(this.stage.records, released, performance.now() - t0);
      }
    } catch (err) {
      this.failure = dbLogFailed(err);
      this.options.log?.(`database log failed: ${this.failure.message}`);
      this.options.onFailure(this.failure);
    } finally {
      this.running = false;
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
    batch.seal();
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
    let flipSeq = this.appended;
    /** Records queued while the pump stopped that the flip wrote (and acknowledges). */
    let flipQueued = 0;
    let previous: { sb: Superblock; tail: number; lastCrc: number; tailBlock: Buffer; nextSeq: number } | null = null;
    let carriedRecords = 0;
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
    const steps = { catchUpSlices: 0, maxCatchUpMs: 0, flipSyncMs: 0, flipRecords: 0, carryPeakBytes: 0 };
    /**
     * Keep the records of a batch written beside, but the first notCarried (the snapshot has
     * them): the buffer itself when they fill much of it, else a copy (a batch buffer is at
     * least STAGE_MIN_BYTES: small batches adopted whole held ten times their records, and
     * reached CARRY_MAX_BYTES, which stops the writes beside, within a few hundred batches).
     */
    const keep = (batch: Stage): void => {
      let p = batch.prefix;
      for (; notCarried > 0 && p < batch.used; notCarried--) p += encodedRecordSize(batch.buf, p);
      if (p === batch.used) return;
      if (!carry.copy(batch.buf, p, batch.used)) {
        carry.adopt(batch.buf, p, batch.used);
        batch.buf = EMPTY;
      }
      if (carry.retained > steps.carryPeakBytes) steps.carryPeakBytes = carry.retained;
    };
    let pumpStop = false;
    let pumpError: unknown = null;
    const lane = new DeviceLane();
    /** Bytes of snapshot chunks written that nothing made durable since (no flush, no batch FUA). */
    let chunkUnflushed = 0;
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
            if (!this.queueFitsActive() || image.length + carry.length + this.queueBytes > next.regionSize || carry.retained >= CARRY_MAX_BYTES) {
              beside = false;
              continue;
            }
            await this.writeQueued(keep);
            // Its FUA (an fdatasync of the whole backing file) made the chunks written before it durable too.
            if (this.options.appendfsync === 'always') chunkUnflushed = 0;
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
    /**
     * Write one piece of the image at `at` (the lane is ours). Beside the traffic, at
     * most SNAPSHOT_UNFLUSHED_MAX of chunks are written but not yet durable: otherwise
     * the next batch's FUA (an fdatasync of the whole backing file) would carry every
     * chunk written since, and its clients would wait for that. A batch between two
     * chunks makes the first durable with its own FUA, so under steady writes chunks
     * need no flush of their own; without batches, a flush comes every few chunks.
     * Without batches beside (the queue waits for the flip), one flush at the end is
     * enough.
     */
    const writePiece = async (piece: Buffer, at: number): Promise<void> => {
      if (beside && chunkUnflushed > 0 && chunkUnflushed + piece.length > SNAPSHOT_UNFLUSHED_MAX) {
        await this.device.flush();
        chunkUnflushed = 0;
      }
      await this.device.pwrite(piece, at);
      if (!this.device.writeThrough) chunkUnflushed += piece.length;
    };
    /**
     * Write the image's full chunks (what one slice produced) in one turn of the
     * lane, between log batches (see DeviceLane). One 64 KiB chunk per turn, with a
     * batch of the pump's (at -P16 100 B, 50 clients: ~125 KB) between two turns,
     * never caught up with the traffic: a 57 MB snapshot took ~900 turns and 2 s,
     * its carry grew toward CARRY_MAX_BYTES (which stops the writers), and SET -P16
     * 100 B after a 4 KiB fill ran at 94K/s with a 301 ms max (all in one turn:
     * 126K/s, 61 ms), while the -P1 p99 with compaction stayed ≤ 2x (1.27
     * integrated, 1.85 guest).
     */
    const writeChunks = async (): Promise<void> => {
      let c = image.takeFull();
      if (c === null || overflow !== null) return;
      await lane.acquire(false);
      try {
        for (; c !== null && overflow === null; c = image.takeFull()) {
          await writePiece(c, offset);
          offset += c.length;
          image.recycle(c);
          if (pumpError !== null) throw pumpError;
        }
      } finally {
        lane.release();
      }
    };
        const t0 = performance.now();
    let tWritten = t0;
    let tailBlock: Buffer;
    let imageBytes: number;
    try {
      for (;;) {
        const done = source.step(SNAPSHOT_SLICE_MS);
        // Full chunks go to the disk before the next slice: the walk never runs
        // ahead of the disk by more than one slice's worth.
        await writeChunks();
        if (overflow !== null) throw overflow;
        if (pumpError !== null) throw pumpError;
        if (done) break;
        // Let the event loop run: sockets are read and replies sent between slices.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      source.close();
      // The snapshot is complete (no mutation reaches it any more) and its chain is known:
      // the records carried so far follow it in the image, re-encoded in that chain a slice
      // at a time (up to CARRY_MAX_BYTES of them, once tens of milliseconds in one step at
      // the flip), while the pump goes on writing and carrying beside. Encoding is far
      // faster than commands arrive, so the carry empties; then the pump stops, and only
      // its last batch and what queued meanwhile are encoded in the flip's synchronous step.
      const encode = (m: Mutation): void => {
        if (overflow !== null) return;
        if (image.length + recordSize(m) > next.regionSize) {
          overflow = noSpace(`volume is full: the live data set and the writes during its compaction need more than the ${next.regionSize}-byte region`);
          return;
        }
        crc = image.appendRecord(m, crc, seq++);
      };
      // Until one slice empties it: under steady traffic the pump carries a batch between
      // two slices, so waiting for an empty carry would chase the traffic for good. Nor
      // once the carry has not reached a new low for CATCH_UP_STALE_TURNS turns: at SET
      // -P16 100 B a batch (~800 records) takes about one slice to encode, so the chase
      // lasted seconds and carried ~300,000 records; the flip's step takes the rest (about
      // a batch). Not one turn: a slice preempted or paused by a GC encodes a few records,
      // and ending there left the whole carry to the flip.
      let low = Infinity;
      let stale = 0;
      for (;;) {
        if (carry.length < low) {
          low = carry.length;
          stale = 0;
        } else if (++stale >= CATCH_UP_STALE_TURNS) break;
        if (steps.catchUpSlices >= CATCH_UP_MAX_TURNS) break;
        const s = performance.now();
        const empty = carry.length === 0 || carry.drain(encode, s + SNAPSHOT_SLICE_MS);
        const ms = performance.now() - s;
        steps.catchUpSlices++;
        if (ms > steps.maxCatchUpMs) steps.maxCatchUpMs = ms;
        await writeChunks();
        if (overflow !== null) throw overflow;
        if (pumpError !== null) throw pumpError;
        if (empty) break;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      // The image's partly filled last chunk, with the pump still running: writers that come
      // meanwhile are written beside as before, and the flip rewrites only its last block on.
      const partial = image.unwritten(bs);
      if (partial.length > 0) {
        await lane.acquire(false);
        try {
          await writePiece(partial, offset + image.writtenInCurrent);
        } finally {
          lane.release();
        }
        image.markWritten(bs);
      }
      tWritten = performance.now();
      await stopPump();
      if (pumpError !== null) throw pumpError;
      // The flip's synchronous step: the pump's last batch and what queued since join the image.
      const s = performance.now();
      const recordsBefore = seq;
      carry.drain(encode, Infinity);
      carriedRecords = carry.records;
      if (overflow !== null) throw overflow;
      // What was queued while the pump stopped joins the image too: its writers are acknowledged
      // by the flip instead of by one more batch after it. Queued records the snapshot
      // already holds (the first notCarried) are dropped: acknowledged at the flip.
      let queued = this.stage.mutations();
      if (notCarried > 0) queued = queued.slice(notCarried);
      let queuedBytes = 0;
      for (const m of queued) queuedBytes += recordSize(m);
      if (queued.length > 0 && image.length + queuedBytes <= next.regionSize) {
        for (const m of queued) crc = image.appendRecord(m, crc, seq++);
        flipSeq = this.appended;
        flipQueued = queued.length;
        queued = [];
      }
      imageBytes = image.length;
      // The region's tail block as it will be on the device: appends go on from it (no read back).
      tailBlock = image.tailBlock(bs);
      // Re-encode what is still queued in the new region's chain, before any await: what is
      // appended from here on follows it (the records decoded above are views of the old buffer).
      const after = new Stage();
      after.startAt(imageBytes - tailBlock.length, tailBlock, 0, tailBlock.length, crc, seq);
      for (const m of queued) after.append(m, bs);
      previous = { sb: this.sb, tail: this.tail, lastCrc: this.lastCrc, tailBlock: this.tailBlock, nextSeq: this.nextSeq };
      this.sb = next;
      this.tail = imageBytes;
      this.lastCrc = crc;
      this.nextSeq = seq;
      this.tailBlock = tailBlock;
      this.stage = after;
      this.batchId++;
      steps.flipSyncMs = performance.now() - s;
      steps.flipRecords = seq - recordsBefore;
    } finally {
      source.close();
      carry.clear();
      await stopPump();
    }
    const tStopped = performance.now();
    this.image = image;
    // The flip. Writers that came after the pump stopped wait for it, so it is as few
    // device round trips as order allows: the image's last chunks (the carried records
    // among them, not durable on their own), one flush that makes the snapshot and them
    // durable, then the superblock with FUA.
    try {
      // Full chunks first (the first of them may begin with bytes already written: the same bytes).
      for (let c = image.takeFull(); c !== null; c = image.takeFull()) {
        await this.device.pwrite(c, offset);
        offset += c.length;
        image.recycle(c);
      }
      const rest = image.unwritten(bs);
      if (rest.length > 0) await this.device.pwrite(rest, offset + image.writtenInCurrent);
      if (!this.device.writeThrough) await this.device.flush();
      // The new region is durable; now make it the active one. A device that does not honour
      // FUA (capabilities) gets a flush after it.
      await this.device.pwrite(encodeSuperblock(next), (next.generation % 2) * bs, { fua: true });
      if (!this.device.writeThrough && !capabilitiesOf(this.device).fua) await this.device.flush();
    } catch (err) {
      // Not flipped: the old region is still the one on the volume (the log is failed from here on).
      if (previous !== null) Object.assign(this, previous);
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
    const longest = Math.max(st.maxSliceMs, st.maxEarlyMs, steps.maxCatchUpMs, steps.flipSyncMs);
    this.lastCompaction = {
      ms: tFlipped - t0,
      slices: st.slices,
      maxSliceMs: st.maxSliceMs,
      maxEarlyMs: st.maxEarlyMs,
      catchUpSlices: steps.catchUpSlices,
      maxCatchUpMs: steps.maxCatchUpMs,
      flipSyncMs: steps.flipSyncMs,
      maxLaneWaitMs: lane.maxLogWaitMs,
      flipMs: tFlipped - tStopped,
      carriedRecords,
      flipRecords: steps.flipRecords,
      carryPeakBytes: steps.carryPeakBytes,
      longestStepMs: longest,
    };
    this.counters.compactionMs += tFlipped - t0;
    if (longest > this.counters.compactionLongestStepMs) this.counters.compactionLongestStepMs = longest;
    this.options.log?.(
      `database log compacted: ${imageBytes} live bytes in region ${next.activeRegion} (${carriedRecords} records carried, ${flipQueued} queued during the flip; ` +
        `${st.slices} slices, longest ${st.maxSliceMs.toFixed(2)} ms; ${st.early} keys saved ahead of the walk, longest ${st.maxEarlyMs.toFixed(2)} ms; ` +
        `carry encoded in ${steps.catchUpSlices} slices, longest ${steps.maxCatchUpMs.toFixed(2)} ms, flip's synchronous step ${steps.flipSyncMs.toFixed(2)} ms; ` +
        `a log batch waited at most ${lane.maxLogWaitMs.toFixed(1)} ms for a chunk write; carry peaked at ${steps.carryPeakBytes} bytes; ` +
        `snapshot and carry written in ${(tWritten - t0).toFixed(1)} ms, pump stopped ${(tStopped - tWritten).toFixed(1)} ms later, flip ${(tFlipped - tStopped).toFixed(1)} ms)`,
    );
  }

  /** The latest compaction's steps (ms): how long it took and its longest synchronous steps. */
  lastCompaction: CompactionStats | null = null;

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
 * small enough that a log batch whose FUA makes one durable is not held up by
 * it for long. Under steady writes each batch's sync carries one chunk: on
 * the bench's disk an fdatasync of 4 KiB took 2.2 ms, of 64 KiB 2.5 ms and of
 * 256 KiB 3.7 ms (median of 40), so 256 KiB chunks made every batch during a
 * compaction 1.7x slower, 64 KiB ones about 1.1x.
 */
const SNAPSHOT_CHUNK = 64 << 10;
/**
 * Without batches between them, chunks are written until this many bytes wait
 * for a flush: one flush per chunk would make an idle compaction pay a sync
 * per 64 KiB; a batch that comes then carries at most this much.
 */
const SNAPSHOT_UNFLUSHED_MAX = 256 << 10;
/**
 * On a write-through device (a guest's queue to the controller's volume: every
 * write is O_DSYNC) each chunk write is a durable write of its own, and a log
 * batch waits for the one in flight: smaller chunks keep that wait short (and
 * fit one queue request, whose size_max is at most 128 KiB).
 */
const SNAPSHOT_CHUNK_WRITE_THROUGH = 64 << 10;
/** Longest synchronous step of the snapshot walk (ms); the event loop runs between steps. */
const SNAPSHOT_SLICE_MS = 1;
/** Turns without a new low in the carry after which its catch-up leaves the rest to the flip. */
const CATCH_UP_STALE_TURNS = 3;
/** Most turns of catch-up: a carry that keeps finding new lows by a few records is chasing too. */
const CATCH_UP_MAX_TURNS = 64;

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
  /** The longest a log batch waited for the lane (ms): how long chunk writes held it up. */
  maxLogWaitMs = 0;

  /** Wait for the lane (one waiter of each kind at a time: the pump, the chunk writer). */
  acquire(log: boolean): Promise<void> {
    if (!this.busy) {
      this.busy = true;
      this.lastWasLog = log;
      return Promise.resolve();
    }
    if (!log) return new Promise<void>((resolve) => (this.chunkWaiter = resolve));
    const since = performance.now();
    return new Promise<void>((resolve) => {
      this.logWaiter = () => {
        const ms = performance.now() - since;
        if (ms > this.maxLogWaitMs) this.maxLogWaitMs = ms;
        resolve();
      };
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
  /** Bytes at the start of the current chunk already written (block aligned), see markWritten. */
  writtenInCurrent = 0;

  constructor(private readonly chunkSize: number) {
    this.current = Buffer.alloc(chunkSize);
  }

  reset(): void {
    for (const c of this.full.splice(0)) this.recycle(c);
    this.used = 0;
    this.length = 0;
    this.writtenInCurrent = 0;
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

  /** A copy of the last, partly filled block of the image (empty when it ends on a block boundary). */
  tailBlock(blockSize: number): Buffer {
    return Buffer.from(this.current.subarray(Math.floor(this.used / blockSize) * blockSize, this.used));
  }

  /**
   * The current chunk from its first block not yet written to its end, zero
   * padded to a whole block (write it at the chunk's offset + writtenInCurrent).
   */
  unwritten(blockSize: number): Buffer {
    const end = Math.ceil(this.used / blockSize) * blockSize;
    if (end <= this.writtenInCurrent) return EMPTY;
    this.current.fill(0, this.used, end);
    return this.current.subarray(this.writtenInCurrent, end);
  }

  /** unwritten() is on the device: later writes of this chunk start at its last, partly filled block. */
  markWritten(blockSize: number): void {
    this.writtenInCurrent = Math.floor(this.used / blockSize) * blockSize;
  }

  private nextChunk(): void {
    this.full.push(this.current);
    this.current = this.spare.pop() ?? Buffer.alloc(this.chunkSize);
    this.used = 0;
    this.writtenInCurrent = 0;
  }
}

const EMPTY = Buffer.alloc(0);
/** Carried batches of at most this many bytes are copied into shared blocks of CARRY_BLOCK bytes, not adopted. */
const CARRY_COPY_MAX = 64 * 1024;
const CARRY_BLOCK = 256 * 1024;

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
  seq = 0;
  /**
   * Records are appended without their crc and sealed (crcs written, chained)
   * in one native call when the batch is taken or written: records before
   * `sealedTo` have theirs, and `sealedCrc` is the last of them.
   */
  private sealedTo = 0;
  private sealedCrc = 0;
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
    this.sealedTo = this.prefix;
    this.sealedCrc = this.startCrc;
    this.seq = this.startSeq;
  }

  /** Encode `m` as the next record (its crc is written by seal()). */
  append(m: Mutation, blockSize: number): void {
    const size = recordSize(m);
    const need = Math.ceil((this.used + size) / blockSize) * blockSize;
    if (need > this.buf.length) this.grow(need);
    encodeRecordBody(m, this.buf, this.used, this.seq++, size);
    this.used += size;
    this.records++;
  }

  /** Write the crcs of the records appended since the last seal: the bytes are then what the region holds. */
  seal(): void {
    if (this.sealedTo === this.used) return;
    this.sealedCrc = sealRecords(this.buf, this.sealedTo, this.used, this.sealedCrc);
    this.sealedTo = this.used;
  }

  /** The crc chain after the last record (the next record's seed): seals first. */
  get crc(): number {
    this.seal();
    return this.sealedCrc;
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
 * each from its first record to carry. drain() hands them over in order, a
 * slice at a time, and lets each buffer go once its records are handed over.
 */
class CarrySegments {
  private segments: ({ buf: Buffer; from: number; to: number; cost: number } | null)[] = [];
  private head = 0;
  /** Bytes of the records not yet drained. */
  length = 0;
  /** Bytes of the buffers kept for them (what CARRY_MAX_BYTES bounds). */
  retained = 0;
  /** Records adopted since clear() (drained or not). */
  records = 0;

  /** Take over `buf` (the caller gives it up) for its records in [from, to). */
  adopt(buf: Buffer, from: number, to: number): void {
    this.push(buf, from, to, buf.length);
  }

  /** The block copies go to, and the bytes of it used. */
  private block: Buffer = EMPTY;
  private blockUsed = 0;

  /**
   * Copy the records in [from, to) of `buf` (which stays the caller's) when they
   * are at most a quarter of it and CARRY_COPY_MAX; false when they should be
   * adopted instead. Copies are packed in CARRY_BLOCK-byte blocks: they are
   * counted at their size, and a block's unused tail (under CARRY_COPY_MAX) is
   * not counted.
   */
  copy(buf: Buffer, from: number, to: number): boolean {
    const n = to - from;
    if (n > CARRY_COPY_MAX || n > buf.length >> 2) return false;
    if (this.blockUsed + n > this.block.length) {
      this.block = Buffer.allocUnsafe(CARRY_BLOCK);
      this.blockUsed = 0;
    }
    buf.copy(this.block, this.blockUsed, from, to);
    this.push(this.block, this.blockUsed, this.blockUsed + n, n);
    this.blockUsed += n;
    return true;
  }

  private push(buf: Buffer, from: number, to: number, cost: number): void {
    this.segments.push({ buf, from, to, cost });
    this.length += to - from;
    this.retained += cost;
    for (let p = from; p < to; p += encodedRecordSize(buf, p)) this.records++;
  }

  /**
   * Hand the records over in order (as mutations: views of the kept buffers,
   * valid during the call) until none is left or the clock passes `deadline`
   * (read every 16 records); true when none is left.
   */
  drain(fn: (m: Mutation) => void, deadline: number): boolean {
    let n = 0;
    while (this.head < this.segments.length) {
      const seg = this.segments[this.head]!;
      while (seg.from < seg.to) {
        const size = encodedRecordSize(seg.buf, seg.from);
        fn(encodedRecordMutation(seg.buf, seg.from));
        seg.from += size;
        this.length -= size;
        if ((++n & 15) === 0 && seg.from < seg.to && performance.now() >= deadline) return false;
      }
      this.retained -= seg.cost;
      this.segments[this.head++] = null;
      if ((n & 15) === 0 && n > 0 && this.head < this.segments.length && performance.now() >= deadline) break;
    }
    if (this.head === this.segments.length) {
      this.segments.length = 0;
      this.head = 0;
    }
    return this.length === 0;
  }

  clear(): void {
    this.segments.length = 0;
    this.head = 0;
    this.length = 0;
    this.retained = 0;
    this.records = 0;
    this.block = EMPTY;
    this.blockUsed = 0;
  }
}
