import type { BlockDevice } from '../../block/types.ts';
import { Keyspace } from './store/keyspace.ts';
import { Op, applyMutation, encodeMutation, mutationsForKey, isBadMutation, touchedKeys, type Mutation } from './store/mutations.ts';
import type { ScoredMember } from './store/sorted-set.ts';
import { SnapshotCursor, type SnapshotSink, type SnapshotSource } from './store/snapshot.ts';
import { openLog } from './log/recovery.ts';
import { LogWriter, type AppendFsync } from './log/writer.ts';

export interface DatabaseOptions {
  appendfsync: AppendFsync;
  log: (msg: string) => void;
  /** Records up to `seq` are durable: replies waiting on them may go out. */
  onDurable: (seq: number) => void;
  onFailure: (err: Error) => void;
  /** A compaction finished or a backlog was written: room may have come for writes that waited. */
  onRoom?: () => void;
  /** `always`: the longest a write waits for the writers the previous batch released (ms; see LogWriter). */
  gatherMs?: number;
}

/**
 * The data set and its log, kept in step: every change is a Mutation applied
 * to memory and appended to the log in the same synchronous step, so the log
 * order is the execution order.
 */
export class Database {
  /** Sequence number of the latest mutation (what a reply must wait for). */
  lastSeq = 0;
  replaySkipped = 0;
  private constructor(
    readonly ks: Keyspace,
    readonly writer: LogWriter,
    readonly recovered: { formatted: boolean; replayed: number },
  ) {}

  static async open(device: BlockDevice, options: DatabaseOptions): Promise<Database> {
    const ks = new Keyspace();
    let skipped = 0;
    const { pos, formatted, replayed } = await openLog(device, (m) => {
      try {
        applyMutation(ks, m);
      } catch (err) {
        // Only a damaged log can hold a mutation that does not fit: keep going.
        if (!isBadMutation(err)) throw err;
        skipped++;
      }
    });
    let db: Database | null = null;
    const writer = new LogWriter(device, pos, {
      appendfsync: options.appendfsync,
      snapshot: (sink) => (db as Database).startSnapshot(sink),
      onDurable: options.onDurable,
      onFailure: options.onFailure,
      ...(options.onRoom ? { onRoom: options.onRoom } : {}),
      ...(options.gatherMs !== undefined ? { gatherMs: options.gatherMs } : {}),
      log: options.log,
    });
    db = new Database(ks, writer, { formatted, replayed });
    db.replaySkipped = skipped;
    if (skipped > 0) options.log(`database replay skipped ${skipped} mutations that did not fit the data`);
    return db;
  }

  /** Mutations of the transaction being run (see atomically), or null. */
  private group: Mutation[] | null = null;
  /**
   * Version counters of the keys some client WATCHes (and only those, so the
   * map is bounded by the watchers): every mutation touching one bumps it.
   */
  private readonly watched = new Map<string, { version: number; refs: number }>();
  /** Keys some client is blocked on (BLPOP...), and those of them a mutation touched since the last look. */
  readonly blockedKeys = new Map<string, number>();
  readonly readyKeys = new Set<string>();
  private readonly touched: Buffer[] = [];

  /** The snapshot being serialised by a compaction, if any: it sees every mutation first. */
  private cursor: SnapshotCursor | null = null;

  /** Apply a mutation to memory and append it to the log (or to the running transaction's record). */
  mutate(m: Mutation): number | Buffer[] | ScoredMember[] {
    if (this.cursor !== null) this.cursor.beforeMutation(m);
    const result = applyMutation(this.ks, m);
    if (this.watched.size > 0 || this.blockedKeys.size > 0) this.touch(m);
    if (this.group !== null) this.group.push(m);
    else this.lastSeq = this.writer.append(m);
    return result;
  }

  /**
   * Run `fn` as one transaction: every mutation it makes goes to the log as
   * one record (Op.Multi when there are several), so replay after a crash
   * finds all of them or none. Nested calls join the outer transaction.
   */
  atomically<T>(fn: () => T): T {
    if (this.group !== null) return fn();
    const group: Mutation[] = [];
    this.group = group;
    try {
      return fn();
    } finally {
      // Whatever was applied to memory is logged, even if fn failed halfway.
      this.group = null;
      if (group.length === 1) this.lastSeq = this.writer.append(group[0]);
      else if (group.length > 1) this.lastSeq = this.writer.append({ op: Op.Multi, args: group.map(encodeMutation) });
    }
  }

  /** Start watching key: returns its current version (compare with watchVersion at EXEC). */
  watch(key: string): number {
    let w = this.watched.get(key);
    if (w === undefined) this.watched.set(key, (w = { version: 0, refs: 0 }));
    w.refs++;
    return w.version;
  }

  unwatch(key: string): void {
    const w = this.watched.get(key);
    if (w !== undefined && --w.refs === 0) this.watched.delete(key);
  }

  watchVersion(key: string): number {
    return this.watched.get(key)?.version ?? -1;
  }

  private touch(m: Mutation): void {
    const keys = this.touched;
    keys.length = 0;
    if (!touchedKeys(m, keys)) {
      for (const w of this.watched.values()) w.version++;
      for (const k of this.blockedKeys.keys()) this.readyKeys.add(k);
      return;
    }
    for (const kb of keys) {
      const k = kb.toString('latin1');
      const w = this.watched.get(k);
      if (w !== undefined) w.version++;
      if (this.blockedKeys.has(k)) this.readyKeys.add(k);
    }
    keys.length = 0;
  }

  /**
   * Start a snapshot of the data set as it is now (the cut), to be serialised
   * into `sink` in slices (see SnapshotCursor): mutations made from here on are
   * not in it, and the keys they change are saved first while it runs.
   */
  startSnapshot(sink: SnapshotSink): SnapshotSource {
    this.cursor?.close();
    const cursor: SnapshotCursor = new SnapshotCursor(this.ks, sink, () => {
      if (this.cursor === cursor) this.cursor = null;
    });
    this.cursor = cursor;
    return cursor;
  }

  /** Every live key as the mutations that rebuild it (all at once: tests and tools). */
  *snapshot(): Generator<Mutation> {
    for (const [k, e] of this.ks.entries()) {
      if (this.ks.isLive(e)) yield* mutationsForKey(k, e);
    }
  }

  async close(): Promise<void> {
    await this.writer.close();
  }
}
