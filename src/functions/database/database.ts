import type { BlockDevice } from '../../block/types.ts';
import { Keyspace } from './store/keyspace.ts';
import { applyMutation, mutationsForKey, MutationError, type Mutation } from './store/mutations.ts';
import type { ScoredMember } from './store/sorted-set.ts';
import { openLog } from './log/recovery.ts';
import { LogWriter, type AppendFsync } from './log/writer.ts';

export interface DatabaseOptions {
  appendfsync: AppendFsync;
  log: (msg: string) => void;
  /** Records up to `seq` are durable: replies waiting on them may go out. */
  onDurable: (seq: number) => void;
  onFailure: (err: Error) => void;
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
        if (!(err instanceof MutationError)) throw err;
        skipped++;
      }
    });
    let db: Database | null = null;
    const writer = new LogWriter(device, pos, {
      appendfsync: options.appendfsync,
      snapshot: () => (db as Database).snapshot(),
      onDurable: options.onDurable,
      onFailure: options.onFailure,
      log: options.log,
    });
    db = new Database(ks, writer, { formatted, replayed });
    db.replaySkipped = skipped;
    if (skipped > 0) options.log(`database replay skipped ${skipped} mutations that did not fit the data`);
    return db;
  }

  /** Apply a mutation to memory and append it to the log. */
  mutate(m: Mutation): number | Buffer[] | ScoredMember[] {
    const result = applyMutation(this.ks, m);
    this.lastSeq = this.writer.append(m);
    return result;
  }

  /** Every live key as the mutations that rebuild it. */
  *snapshot(): Generator<Mutation> {
    for (const [k, e] of this.ks.entries()) {
      if (this.ks.isLive(e)) yield* mutationsForKey(k, e);
    }
  }

  async close(): Promise<void> {
    await this.writer.close();
  }
}
