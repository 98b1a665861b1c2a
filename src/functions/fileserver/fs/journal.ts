/**
 * Write-ahead redo journal for metadata, with group commit.
 *
 * Why a journal and not copy-on-write: the filesystem updates small fixed-place
 * records (an inode in a table block, a bit in a bitmap, one B-tree leaf), so
 * logging the few whole blocks an operation touched and writing them home later
 * is cheap and keeps the on-volume layout simple (fixed inode table, ext-style
 * block maps); copy-on-write would have to re-write every ancestor up to a root
 * for each change and needs a garbage collector for old versions. A redo log
 * also makes recovery a bounded, idempotent replay that fsck can do in memory.
 *
 * Record format, in a circular area after the journal header block:
 *   descriptor  magic "SVJD", type, version, record seq, count, home block numbers, CRC
 *   count blocks, copies of the metadata blocks as committed
 *   commit      magic "SVJC", type, version, record seq, count, CRC over descriptor + copies, CRC
 * Ordering (jbd2's): the descriptor and the copies are written, then one flush
 * makes them durable together with every file-data block the transaction maps
 * (file data is written in place before its transaction commits), and only
 * then is the commit block written, with FUA. On a write-back device that
 * reorders unflushed writes, a durable commit block therefore always has its
 * copies and its data behind it; a single flush after the whole record would
 * let the commit block reach the medium first. A record whose commit block or
 * checksum does not verify was never acknowledged and ends the replay.
 * Record sequence numbers are consecutive, so stale records left in the area
 * from an earlier lap do not verify either.
 *
 * Group commit: operations join the running transaction through a Handle,
 * change cached blocks in place and end the handle; they then wait for that
 * transaction to be durable. One commit at a time is in flight; everything that
 * ended meanwhile goes into the next one, so concurrent operations share a flush.
 * Checkpoint writes the committed copies home, flushes, then moves the journal
 * tail; only then may blocks freed by those transactions be reused (a freed
 * metadata block could otherwise be overwritten by data and then by a replay).
 */
import type { BlockDevice } from '../../../block/types.ts';
import type { CacheEntry, MetaCache } from './cache.ts';
import { blockSealOk, crc32, crc32Update, sealBlock, viewOf } from './checksum.ts';
import { BLOCK_SIZE, BlockType, type Superblock } from './superblock.ts';
import { fsCorrupt, fsError, internalError, type StorvisorError } from '../../../util/errors.ts';

const MAGIC_HEADER = 0x484a5653; // "SVJH"
const MAGIC_DESC = 0x444a5653; // "SVJD"
const MAGIC_COMMIT = 0x434a5653; // "SVJC"
const JOURNAL_VERSION = 1;
/** Home block numbers that fit in one descriptor block. */
/** Longest a change nobody waits for stays uncommitted (ext4's default commit interval is 5 s). */
const COMMIT_INTERVAL_MS = 1000;
export const MAX_RECORD_BLOCKS = (BLOCK_SIZE - 24 - 4) / 4;

export interface JournalHeader {
  /** Area position (1 .. journalBlocks-1) of the oldest record still to replay. */
  tailPos: number;
  /** Sequence number that record must carry. */
  tailSeq: number;
}

export function encodeJournalHeader(sb: Pick<Superblock, 'journalBlocks'>, h: JournalHeader): Uint8Array {
  const b = new Uint8Array(BLOCK_SIZE);
  const v = viewOf(b);
  v.setUint32(0, MAGIC_HEADER, true);
  v.setUint16(4, BlockType.journalHeader, true);
  v.setUint16(6, JOURNAL_VERSION, true);
  v.setUint32(8, BLOCK_SIZE, true);
  v.setUint32(12, sb.journalBlocks, true);
  v.setUint32(16, h.tailPos, true);
  v.setFloat64(20, h.tailSeq, true);
  sealBlock(b);
  return b;
}

function decodeJournalHeader(b: Uint8Array, sb: Superblock): JournalHeader {
  const v = viewOf(b);
  if (v.getUint32(0, true) !== MAGIC_HEADER || v.getUint16(4, true) !== BlockType.journalHeader) {
    throw fsCorrupt('journal header: bad magic');
  }
  if (!blockSealOk(b)) throw fsCorrupt('journal header: checksum mismatch');
  if (v.getUint16(6, true) !== JOURNAL_VERSION) throw fsCorrupt('journal header: unsupported version');
  if (v.getUint32(12, true) !== sb.journalBlocks) throw fsCorrupt('journal header: size disagrees with superblock');
  const tailPos = v.getUint32(16, true);
  const tailSeq = v.getFloat64(20, true);
  if (tailPos < 1 || tailPos >= sb.journalBlocks || !Number.isSafeInteger(tailSeq) || tailSeq < 1) {
    throw fsCorrupt('journal header: tail out of range');
  }
  return { tailPos, tailSeq };
}

/** Reads and writes of the circular record area (positions 1 .. journalBlocks-1). */
class JournalArea {
  readonly capacity: number;
  /**
   * In-memory image of the area, filled lazily by writers: records are built in
   * place here, and the block copies they carry stay valid (as checkpoint
   * sources) until the area wraps onto them, which a checkpoint always precedes.
   * One allocation for the life of the mount instead of one per commit.
   */
  private mirror: Uint8Array | null = null;
  constructor(
    private readonly device: BlockDevice,
    private readonly sb: Superblock,
  ) {
    this.capacity = sb.journalBlocks - 1;
  }
  slot(pos: number): Uint8Array {
    this.mirror ??= new Uint8Array(this.sb.journalBlocks * BLOCK_SIZE);
    return this.mirror.subarray(pos * BLOCK_SIZE, (pos + 1) * BLOCK_SIZE);
  }
  /** Write `count` mirror blocks starting at `pos` to the device. */
  async flushMirror(pos: number, count: number, fua = false): Promise<void> {
    this.mirror ??= new Uint8Array(this.sb.journalBlocks * BLOCK_SIZE);
    const m = this.mirror;
    await Promise.all(
      this.segments(pos, count).map(([p, , n]) =>
        this.device.pwrite(m.subarray(p * BLOCK_SIZE, (p + n) * BLOCK_SIZE), (this.sb.journalStart + p) * BLOCK_SIZE, fua ? { fua } : undefined),
      ),
    );
  }
  /** Position `k` blocks after `pos`, wrapping. */
  advance(pos: number, k: number): number {
    return ((pos - 1 + k) % this.capacity) + 1;
  }
  private segments(pos: number, count: number): Array<[number, number, number]> {
    const first = Math.min(count, this.capacity - pos + 1);
    const segs: Array<[number, number, number]> = [[pos, 0, first]];
    if (first < count) segs.push([1, first, count - first]);
    return segs;
  }
  async read(pos: number, count: number): Promise<Uint8Array> {
    const buf = new Uint8Array(count * BLOCK_SIZE);
    for (const [p, at, n] of this.segments(pos, count)) {
      await this.device.pread(buf.subarray(at * BLOCK_SIZE, (at + n) * BLOCK_SIZE), (this.sb.journalStart + p) * BLOCK_SIZE);
    }
    return buf;
  }
}

export interface ReplayResult {
  /** Newest committed content of every block the live records carry. */
  blocks: Map<number, Uint8Array>;
  records: number;
  endPos: number;
  nextSeq: number;
}

/** Scan the live records without writing anything (mount replays them; fsck overlays them). */
export async function scanJournal(device: BlockDevice, sb: Superblock): Promise<ReplayResult> {
  const hb = new Uint8Array(BLOCK_SIZE);
  await device.pread(hb, sb.journalStart * BLOCK_SIZE);
  const header = decodeJournalHeader(hb, sb);
  const area = new JournalArea(device, sb);
  const blocks = new Map<number, Uint8Array>();
  let pos = header.tailPos;
  let seq = header.tailSeq;
  let records = 0;
  let scanned = 0;
  while (scanned < area.capacity) {
    const desc = await area.read(pos, 1);
    const dv = viewOf(desc);
    if (dv.getUint32(0, true) !== MAGIC_DESC || dv.getUint16(4, true) !== BlockType.journalDescriptor) break;
    if (!blockSealOk(desc) || dv.getFloat64(8, true) !== seq) break;
    const count = dv.getUint32(16, true);
    if (count < 1 || count > MAX_RECORD_BLOCKS || scanned + count + 2 > area.capacity) break;
    const rest = await area.read(area.advance(pos, 1), count + 1);
    const commit = rest.subarray(count * BLOCK_SIZE);
    const cv = viewOf(commit);
    if (cv.getUint32(0, true) !== MAGIC_COMMIT || cv.getUint16(4, true) !== BlockType.journalCommit) break;
    if (!blockSealOk(commit) || cv.getFloat64(8, true) !== seq || cv.getUint32(16, true) !== count) break;
    const dataCrc = crc32Update(crc32(desc), rest.subarray(0, count * BLOCK_SIZE));
    if (cv.getUint32(20, true) !== dataCrc) break;
    const homes: number[] = [];
    for (let i = 0; i < count; i++) homes.push(dv.getUint32(24 + 4 * i, true));
    // A checksummed record never names a block outside the metadata and data areas; treat one that does as the end.
    if (homes.some((home) => home < sb.blockBitmapStart || home >= sb.totalBlocks)) break;
    homes.forEach((home, i) => blocks.set(home, rest.slice(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)));
    records++;
    scanned += count + 2;
    pos = area.advance(pos, count + 2);
    seq++;
  }
  return { blocks, records, endPos: pos, nextSeq: seq };
}

/** Replay committed records home and empty the journal (mount time, before anything is cached). */
export async function replayJournal(device: BlockDevice, sb: Superblock): Promise<{ records: number; header: JournalHeader }> {
  const r = await scanJournal(device, sb);
  const header = { tailPos: r.endPos, tailSeq: r.nextSeq };
  if (r.records > 0) {
    await Promise.all([...r.blocks].map(([home, data]) => device.pwrite(data, home * BLOCK_SIZE)));
    await device.flush();
    await device.pwrite(encodeJournalHeader(sb, header), sb.journalStart * BLOCK_SIZE, { fua: true });
    await device.flush();
  }
  return { records: r.records, header };
}

interface Transaction {
  seq: number;
  dirty: Set<number>;
  handles: number;
}

interface Waiter {
  seq: number;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** One operation's access to the running transaction. Pins every block it touches. */
export class Handle {
  private readonly pinned: CacheEntry[] = [];
  /** Some block was dirtied through this handle. */
  changed = false;
  /** Undo steps of the in-memory changes made so far, run newest first by `abort`. */
  private undo: Array<() => void> = [];
  private ended = false;
  /** Blocks allocated through this handle (they consumed the operation's reservation). */
  allocated = 0;
  constructor(
    private readonly journal: Journal,
    private readonly tx: Transaction,
  ) {
    this.read = this.get.bind(this);
  }

  get seq(): number {
    return this.tx.seq;
  }

  /** `get` as a plain function, for tree walkers. */
  readonly read: (block: number) => Uint8Array | Promise<Uint8Array>;

  /** A metadata block for reading and, after `dirty`, changing in place. */
  get(block: number): Uint8Array | Promise<Uint8Array> {
    const hit = this.journal.cache.load(block);
    if (hit instanceof Promise) return hit.then((e) => this.pin(e));
    return this.pin(hit);
  }

  private pin(e: CacheEntry): Uint8Array {
    e.pins++;
    this.pinned.push(e);
    return e.buf;
  }

  /** A newly allocated metadata block: zeroed and already part of the transaction. */
  create(block: number): Uint8Array {
    const e = this.journal.cache.create(block);
    e.pins++;
    this.pinned.push(e);
    this.markDirty(e);
    return e.buf;
  }

  /** Record that a block obtained through `get` was changed. */
  dirty(block: number): void {
    const e = this.journal.cache.peek(block);
    if (!e || e.pins === 0) throw internalError(`journal: block ${block} dirtied without being pinned`);
    this.markDirty(e);
  }

  private markDirty(e: CacheEntry): void {
    this.changed = true;
    e.txDirty = true;
    this.tx.dirty.add(e.block);
  }

  /**
   * Register how to take back one change made through this handle (a bitmap bit,
   * a block pointer). The step runs synchronously while the handle still pins
   * the blocks it touches, so it may change their buffers in place.
   */
  onAbort(step: () => void): void {
    if (this.ended) throw internalError('journal: onAbort after the handle ended');
    this.undo.push(step);
  }

  /**
   * Take back every registered change, newest first, before `end`. Used when
   * an operation fails halfway (a file-data write got EIO or ENOSPC): the
   * blocks it dirtied stay in the running transaction, but with the content
   * they had before this handle, so the commit carries nothing half-done.
   * Changes are undone logically, not by restoring block images: other
   * handles of the same transaction may have changed the same bitmap block.
   */
  abort(): void {
    if (this.ended) throw internalError('journal: abort after the handle ended');
    const steps = this.undo;
    this.undo = [];
    for (let i = steps.length - 1; i >= 0; i--) steps[i]();
  }

  /** End the handle; returns the transaction to wait for. */
  end(): number {
    if (this.ended) return this.tx.seq;
    this.ended = true;
    for (const e of this.pinned) e.pins--;
    this.journal.handleEnded(this.tx);
    return this.tx.seq;
  }
}

export interface JournalStats {
  commits: number;
  records: number;
  blocksLogged: number;
  checkpoints: number;
}

export class Journal {
  private running: Transaction;
  private closing = false;
  private closeWaiter: (() => void) | null = null;
  private beginWaiters: Array<() => void> = [];
  private waiters: Waiter[] = [];
  private committedSeq: number;
  private chain: Promise<void> = Promise.resolve();
  private commitQueued = false;
  private failure: Error | null = null;
  private readonly area: JournalArea;
  /** Committed copies not yet written home, newest per block. */
  private readonly unCheckpointed = new Map<number, Uint8Array>();
  private headPos: number;
  private nextRecordSeq: number;
  private used = 0;
  /** Running transactions stop taking new handles at this many dirty blocks. */
  private readonly softLimit: number;
  readonly stats: JournalStats = { commits: 0, records: 0, blocksLogged: 0, checkpoints: 0 };
  /** Called after a checkpoint with the newest transaction it covered (frees become reusable). */
  onCheckpoint: (seq: number) => void = () => {};

  constructor(
    private readonly device: BlockDevice,
    private readonly sb: Superblock,
    readonly cache: MetaCache,
    header: JournalHeader,
  ) {
    this.area = new JournalArea(device, sb);
    this.headPos = header.tailPos;
    this.nextRecordSeq = header.tailSeq;
    this.running = { seq: 1, dirty: new Set(), handles: 0 };
    this.committedSeq = 0;
    // A quarter of the area: the last operation to join may add its own blocks on top,
    // and the record must still fit in one descriptor and in the area.
    this.softLimit = Math.max(4, Math.min(MAX_RECORD_BLOCKS >> 1, (this.area.capacity - 2) >> 2));
  }

  get failed(): Error | null {
    return this.failure;
  }

  /** Join the running transaction (waits while one is closing or the running one is full). */
  async begin(): Promise<Handle> {
    for (;;) {
      if (this.failure) throw this.readOnlyError();
      if (!this.closing && this.running.dirty.size < this.softLimit) break;
      if (!this.closing) this.requestCommit();
      await new Promise<void>((r) => this.beginWaiters.push(r));
    }
    this.running.handles++;
    return new Handle(this, this.running);
  }

  handleEnded(tx: Transaction): void {
    tx.handles--;
    if (tx.handles === 0 && this.closeWaiter) {
      const w = this.closeWaiter;
      this.closeWaiter = null;
      w();
    }
  }

  /** Transaction `seq` is durable already. */
  isDurable(seq: number): boolean {
    return seq <= this.committedSeq;
  }

  /** Resolve once transaction `seq` is durable. */
  waitDurable(seq: number): Promise<void> {
    if (this.failure) return Promise.reject(fsError('IO', `filesystem journal failed: ${this.failure.message}`));
    if (seq <= this.committedSeq) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiters.push({ seq, resolve, reject });
      this.requestCommit();
    });
  }

  /**
   * Changes nobody waits for (the times of an in-place overwrite) commit with the
   * next transaction someone does wait for, or after `ms` at the latest.
   */
  commitSoon(ms = COMMIT_INTERVAL_MS): void {
    if (this.lazyTimer || this.failure) return;
    this.lazyTimer = setTimeout(() => {
      this.lazyTimer = null;
      if (this.running.dirty.size > 0 && !this.failure) this.requestCommit();
    }, ms);
    this.lazyTimer.unref();
  }
  private lazyTimer: ReturnType<typeof setTimeout> | null = null;

  /** Commit whatever is running and wait for it. */
  async sync(): Promise<void> {
    await this.waitDurable(this.running.seq);
  }

  /** Commit, then write everything home and empty the journal. */
  async checkpointNow(): Promise<void> {
    await this.sync();
    await this.enqueue(() => this.checkpoint());
  }

  private enqueue(step: () => Promise<void>): Promise<void> {
    const p = this.chain.then(() => (this.failure ? undefined : step()));
    this.chain = p.catch((err) => this.fail(err));
    return p;
  }

  private requestCommit(): void {
    if (this.commitQueued) return;
    this.commitQueued = true;
    // Let every operation that is runnable right now join first: one flush for all of them.
    setImmediate(() => {
      void this.enqueue(async () => {
        this.commitQueued = false;
        await this.commitRunning();
      }).catch(() => {});
    });
  }

  /** What every later change gets once the journal has failed: read-only until remounted. */
  readOnlyError(): StorvisorError {
    return fsError('ROFS', `filesystem is read-only after an error (remount to recover): ${this.failure?.message}`);
  }

  /**
   * Stop for good: the running transaction holds changes that cannot be taken
   * back (an operation failed halfway through a change that has no undo step),
   * so neither it nor anything after it may commit. The volume keeps its last
   * committed state; a remount replays the journal to exactly that.
   */
  abortAll(err: unknown): void {
    this.fail(err);
  }

  private fail(err: unknown): void {
    this.failure ??= err instanceof Error ? err : internalError(String(err), err);
    const e = fsError('IO', `filesystem journal failed: ${this.failure.message}`);
    for (const w of this.waiters.splice(0)) w.reject(e);
    for (const w of this.beginWaiters.splice(0)) w();
  }

  private async commitRunning(): Promise<void> {
    const tx = this.running;
    this.closing = true;
    if (tx.handles > 0) await new Promise<void>((r) => (this.closeWaiter = r));
    const blocks = [...tx.dirty].sort((a, b) => a - b);
    if (blocks.length > 0) {
      if (blocks.length > MAX_RECORD_BLOCKS || blocks.length + 2 > this.area.capacity) {
        throw internalError(`transaction of ${blocks.length} blocks does not fit in the journal`);
      }
      // Make room first (new handles still wait): the record is built where it will be written.
      if (this.used + blocks.length + 2 > this.area.capacity) await this.checkpoint();
    }
    // Snapshot straight into the record: the copies double as the checkpoint source.
    const pos = this.headPos;
    const copies = blocks.map((b, i) => {
      const e = this.cache.peek(b)!;
      e.txDirty = false;
      e.unCheckpointed = true;
      const copy = this.area.slot(this.area.advance(pos, i + 1));
      copy.set(e.buf);
      return copy;
    });
    this.running = { seq: tx.seq + 1, dirty: new Set(), handles: 0 };
    this.closing = false;
    for (const w of this.beginWaiters.splice(0)) w();

    if (blocks.length > 0) {
      await this.writeRecord(blocks, pos, copies);
      blocks.forEach((b, i) => this.unCheckpointed.set(b, copies[i]));
    }
    this.stats.commits++;
    this.committedSeq = tx.seq;
    const done = this.waiters.filter((w) => w.seq <= tx.seq);
    this.waiters = this.waiters.filter((w) => w.seq > tx.seq);
    for (const w of done) w.resolve();
    if (this.used * 2 > this.area.capacity) await this.checkpoint();
  }

  /** The copies sit in the mirror after `pos`; descriptor and commit are filled in around them. */
  private async writeRecord(blocks: number[], pos: number, copies: Uint8Array[]): Promise<void> {
    const n = blocks.length;
    const seq = this.nextRecordSeq;
    const desc = this.area.slot(pos);
    desc.fill(0);
    const dv = viewOf(desc);
    dv.setUint32(0, MAGIC_DESC, true);
    dv.setUint16(4, BlockType.journalDescriptor, true);
    dv.setUint16(6, JOURNAL_VERSION, true);
    dv.setFloat64(8, seq, true);
    dv.setUint32(16, n, true);
    blocks.forEach((b, i) => dv.setUint32(24 + 4 * i, b, true));
    sealBlock(desc);
    let crc = crc32(desc);
    for (const c of copies) crc = crc32Update(crc, c);
    const commit = this.area.slot(this.area.advance(pos, n + 1));
    commit.fill(0);
    const cv = viewOf(commit);
    cv.setUint32(0, MAGIC_COMMIT, true);
    cv.setUint16(4, BlockType.journalCommit, true);
    cv.setUint16(6, JOURNAL_VERSION, true);
    cv.setFloat64(8, seq, true);
    cv.setUint32(16, n, true);
    cv.setUint32(20, crc, true);
    sealBlock(commit);
    // Descriptor and copies first; then a flush makes them, and every file-data block
    // written before this commit, durable; only then the commit block (FUA).
    await this.area.flushMirror(pos, n + 1);
    if (!this.device.writeThrough) await this.device.flush();
    await this.area.flushMirror(this.area.advance(pos, n + 1), 1, !this.device.writeThrough);
    this.headPos = this.area.advance(this.headPos, n + 2);
    this.nextRecordSeq++;
    this.used += n + 2;
    this.stats.records++;
    this.stats.blocksLogged += n;
  }

  private async checkpoint(): Promise<void> {
    const covered = this.committedSeq;
    if (this.unCheckpointed.size > 0) {
      const items = [...this.unCheckpointed];
      for (let i = 0; i < items.length; i += 64) {
        await Promise.all(items.slice(i, i + 64).map(([b, data]) => this.device.pwrite(data, b * BLOCK_SIZE)));
      }
      await this.device.flush();
    }
    if (this.used > 0) {
      const header = encodeJournalHeader(this.sb, { tailPos: this.headPos, tailSeq: this.nextRecordSeq });
      await this.device.pwrite(header, this.sb.journalStart * BLOCK_SIZE, { fua: true });
      if (!this.device.writeThrough) await this.device.flush();
      this.used = 0;
    }
    for (const b of this.unCheckpointed.keys()) {
      const e = this.cache.peek(b);
      if (e) e.unCheckpointed = false;
    }
    this.unCheckpointed.clear();
    this.stats.checkpoints++;
    this.onCheckpoint(covered);
  }

  /** Wait for everything queued to finish (close). */
  async drain(): Promise<void> {
    if (this.lazyTimer) clearTimeout(this.lazyTimer);
    this.lazyTimer = null;
    await this.chain;
    if (this.failure) throw fsError('IO', `filesystem journal failed: ${this.failure.message}`);
  }
}
