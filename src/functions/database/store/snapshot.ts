import type { Deque } from './deque.ts';
import type { IndexedSet } from './indexed-set.ts';
import type { Entry, Keyspace } from './keyspace.ts';
import { Op, mutationsForKey, num, touchedKeys, type Mutation } from './mutations.ts';
import type { SortedSet } from './sorted-set.ts';

/** Collections with more elements than this are frozen (their element references copied) rather than written at once. */
const FREEZE_AT = 256;
/**
 * Records of a split collection stay about this size: building one costs about
 * a microsecond per element (a 64 KiB record of short elements took 5-15 ms
 * here, several times the slice), so one record stays well under a slice.
 */
const RECORD_BYTES = 4 * 1024;

/** Receives the snapshot's mutations in order (the log writer encodes each as a record); `m` is valid only during the call (it may be reused). */
export type SnapshotSink = (m: Mutation) => void;

/** What the log writer drives: an incremental snapshot, advanced in slices. */
export interface SnapshotSource {
  /** Serialise for about `budgetMs` (at least one record); true when the snapshot is complete. */
  step(budgetMs: number): boolean;
  /** Stop for good (compaction done or abandoned): later mutations are no longer looked at. */
  close(): void;
  readonly stats: SnapshotStats;
}

export interface SnapshotStats {
  /** Slices run by step(), and the longest one (ms): the event loop's longest stall from the walk. */
  slices: number;
  maxSliceMs: number;
  /** Keys serialised ahead of the walk because a mutation was about to change them, and the longest such step (ms). */
  early: number;
  maxEarlyMs: number;
  keys: number;
  records: number;
  /** Big collections the walk was reading live when a mutation came: the rest of each was copied then. */
  frozenMidWalk: number;
}

const now = () => performance.now();
const EMPTY = Buffer.alloc(0);

/**
 * A consistent snapshot of the keyspace as it was when the cursor was made
 * (the cut), serialised a slice at a time while commands keep running.
 *
 * The walk goes over the keyspace's Map in its order, which is creation-id
 * order (a key keeps its id and place when overwritten; a re-created key gets
 * a new id at the end). So the walk's progress is one number, the id of the
 * last key it took, and keys with an id at or past `cutId` were created after
 * the cut and are not part of the snapshot (their mutations are in the log
 * after it). Copy-on-write at key granularity: before a mutation changes a key
 * the walk has not reached yet, the database calls beforeMutation, which
 * serialises that key's state (still the one at the cut) first and remembers
 * its name so the walk skips it. A small key is written at once; a collection
 * of more than FREEZE_AT elements is frozen instead: its element references
 * are copied (stored elements are never changed in place, only replaced), an
 * O(n) step about a hundred times cheaper than encoding it, and its records
 * are written by later slices. The walk freezes the big collections it takes
 * too, so a mutation of the key being written never has to wait for it.
 * Extra memory: the names of the keys written ahead of the walk, and one
 * reference per element of the frozen collections not yet written.
 *
 * Expired keys are left out wherever they are met: replay would drop them.
 */
export class SnapshotCursor implements SnapshotSource {
  private readonly cutId: number;
  private readonly iter: Iterator<[string, Entry]>;
  /** Id of the last key the walk took (every key at or below it is written or skipped). */
  private walkedId = 0;
  private current: Iterator<Mutation> | null = null;
  /** The key `current` reads from the live data; null when frozen or none. */
  private currentKey: string | null = null;
  /** For a big collection read live: copies what the walk has not read yet, before a mutation changes it. */
  private currentFreeze: (() => void) | null = null;
  /** Frozen collections saved ahead of the walk, still to be written. */
  private readonly pending: Iterator<Mutation>[] = [];
  /** Keys between the walk and the cut that were written ahead of the walk. */
  private readonly early = new Set<string>();
  private readonly scratch: Buffer[] = [];
  /** The SET of a string key, reused for every one (the sink does not keep it): no generator, object or array per key. */
  private readonly setMutation: Mutation = { op: Op.Set, args: [EMPTY, EMPTY, EMPTY] };
  private done = false;
  readonly stats: SnapshotStats = { slices: 0, maxSliceMs: 0, early: 0, maxEarlyMs: 0, keys: 0, records: 0, frozenMidWalk: 0 };

  constructor(
    private readonly ks: Keyspace,
    private readonly sink: SnapshotSink,
    private readonly onClose: () => void = () => {},
  ) {
    this.cutId = ks.idMark;
    this.iter = ks.entries();
  }

  get complete(): boolean {
    return this.done;
  }

  step(budgetMs: number): boolean {
    if (this.done) return true;
    const start = now();
    const deadline = start + budgetMs;
    let n = 0;
    // The clock is read every 4 string keys (each a few microseconds), and after every
    // record of a collection (each up to RECORD_BYTES of elements, a few hundred microseconds).
    while (!this.done && (((++n & 3) !== 0 && this.current === null) || now() < deadline)) this.advance();
    const ms = now() - start;
    this.stats.slices++;
    if (ms > this.stats.maxSliceMs) this.stats.maxSliceMs = ms;
    return this.done;
  }

  /**
   * A mutation is about to be applied: serialise, as they are now, the keys it
   * changes that the snapshot still needs. FLUSHDB changes every key: the rest
   * of the snapshot is written at once (FLUSHDB is O(n) anyway).
   */
  beforeMutation(m: Mutation): void {
    if (this.done) return;
    const start = now();
    const keys = this.scratch;
    keys.length = 0;
    if (!touchedKeys(m, keys)) {
      while (!this.done) this.advance();
    } else {
      for (const kb of keys) this.saveAhead(kb.toString('latin1'));
    }
    keys.length = 0;
    const ms = now() - start;
    if (ms > this.stats.maxEarlyMs) this.stats.maxEarlyMs = ms;
  }

  close(): void {
    if (this.current !== null) this.current.return?.(undefined);
    this.current = null;
    this.currentKey = null;
    this.currentFreeze = null;
    this.pending.length = 0;
    this.early.clear();
    this.done = true;
    this.detach();
  }

  private saveAhead(k: string): void {
    if (k === this.currentKey) {
      if (this.currentFreeze !== null) {
        // A big collection: copy the references still to be written (O(rest), not O(n) encoding).
        this.currentFreeze();
        this.currentFreeze = null;
        this.stats.frozenMidWalk++;
        this.currentKey = null;
      } else this.drainCurrent();
      return;
    }
    const e = this.ks.peek(k);
    if (e === undefined || e.id <= this.walkedId || e.id >= this.cutId || this.early.has(k)) return;
    this.early.add(k);
    this.stats.early++;
    if (!this.ks.isLive(e)) return;
    this.stats.keys++;
    if (e.type === 'string') this.emitString(k, e);
    else if (sizeOf(e) > FREEZE_AT) this.pending.push(mutationsForKey(k, frozen(e), RECORD_BYTES));
    else for (const m of mutationsForKey(k, e, RECORD_BYTES)) this.emit(m);
  }

  /** One record of the walk (or one skipped key). */
  private advance(): void {
    if (this.current !== null) {
      const r = this.current.next();
      if (!r.done) {
        this.emit(r.value);
        return;
      }
      this.current = null;
      this.currentKey = null;
      this.currentFreeze = null;
    }
    const p = this.pending.pop();
    if (p !== undefined) {
      this.current = p;
      return;
    }
    const r = this.iter.next();
    if (r.done || r.value[1].id >= this.cutId) {
      // Map order is id order: everything from here on was created after the cut.
      this.finishWalk();
      return;
    }
    const [k, e] = r.value;
    this.walkedId = e.id;
    if (this.early.delete(k) || !this.ks.isLive(e)) return;
    this.stats.keys++;
    if (e.type === 'string') this.emitString(k, e);
    else if (sizeOf(e) > FREEZE_AT) {
      // Read live, a record per step, and copied only if a mutation is about to change it
      // (then only what is left): freezing it whole first was one O(n) step (a 200,000
      // field hash took 87 ms), whether or not anything touched it.
      const lazy = lazilyFrozen(e);
      this.current = mutationsForKey(k, lazy.entry, RECORD_BYTES);
      this.currentKey = k;
      this.currentFreeze = lazy.freeze;
    } else {
      this.current = mutationsForKey(k, e, RECORD_BYTES);
      this.currentKey = k;
    }
  }

  private drainCurrent(): void {
    if (this.current === null || this.currentKey === null) return;
    for (let r = this.current.next(); !r.done; r = this.current.next()) this.emit(r.value);
    this.current = null;
    this.currentKey = null;
  }

  /** A string key's one record, as mutationsForKey would give it (SET key value expireAt). */
  private emitString(k: string, e: Entry & { type: 'string' }): void {
    const args = this.setMutation.args;
    args[0] = Buffer.from(k, 'latin1');
    args[1] = e.data;
    args[2] = num(e.expireAt);
    this.emit(this.setMutation);
    args[0] = args[1] = args[2] = EMPTY;
  }

  private emit(m: Mutation): void {
    this.stats.records++;
    this.sink(m);
  }

  private finishWalk(): void {
    this.done = true;
    this.early.clear();
    this.detach();
  }

  private detached = false;

  private detach(): void {
    if (this.detached) return;
    this.detached = true;
    this.onClose();
  }
}

function sizeOf(e: Entry): number {
  return e.type === 'string' ? 0 : e.type === 'list' ? e.data.length : e.data.size;
}

/** An iterator over live data until freeze(), which copies what it has not given yet and goes on from the copy. */
class FreezableIterator<T> implements IterableIterator<T> {
  constructor(
    private it: Iterator<T>,
    private readonly copy: (x: T) => T = (x) => x,
  ) {}

  next(): IteratorResult<T> {
    return this.it.next();
  }

  freeze(): void {
    const rest: T[] = [];
    for (let r = this.it.next(); !r.done; r = this.it.next()) rest.push(this.copy(r.value));
    this.it = rest[Symbol.iterator]();
  }

  [Symbol.iterator](): IterableIterator<T> {
    return this;
  }
}

/**
 * A collection entry that mutationsForKey reads live (in its one pass, in
 * order) until freeze() is called, before the first mutation that changes it:
 * freeze copies the element references not read yet, and reading goes on from
 * the copy. The same records as frozen(e), with the copy deferred and only of
 * the rest.
 */
function lazilyFrozen(e: Entry): { entry: Entry; freeze: () => void } {
  switch (e.type) {
    case 'list': {
      const live = e.data;
      const length = live.length;
      let next = 0;
      let base = 0;
      let rest: Buffer[] | null = null;
      const at = (i: number): Buffer => {
        next = i + 1;
        return rest === null ? live.at(i) : rest[i - base];
      };
      const freeze = () => {
        if (rest !== null) return;
        base = next;
        rest = live.slice(next, length);
      };
      return { entry: { ...e, data: { length, at } as unknown as Deque<Buffer> }, freeze };
    }
    case 'hash': {
      const it = new FreezableIterator(e.data[Symbol.iterator]());
      return { entry: { ...e, data: it as unknown as Map<string, Buffer> }, freeze: () => it.freeze() };
    }
    case 'set': {
      const it = new FreezableIterator(e.data.values()[Symbol.iterator]());
      return { entry: { ...e, data: { values: () => it } as unknown as IndexedSet }, freeze: () => it.freeze() };
    }
    case 'zset': {
      // Skip list nodes change in place: the copy takes their member and score.
      const it = new FreezableIterator(e.data.entries(), (x) => ({ member: x.member, score: x.score }));
      return { entry: { ...e, data: { entries: () => it } as unknown as SortedSet }, freeze: () => it.freeze() };
    }
    default:
      return { entry: e, freeze: () => {} };
  }
}

/**
 * A copy of a collection entry that mutationsForKey can read while the live
 * one changes: the element references are copied (elements themselves are
 * never changed in place), in the shape mutationsForKey reads.
 */
function frozen(e: Entry): Entry {
  switch (e.type) {
    case 'list': {
      const items = e.data.slice(0, e.data.length);
      return { ...e, data: { length: items.length, at: (i: number) => items[i] } as unknown as Deque<Buffer> };
    }
    case 'hash':
      return { ...e, data: new Map(e.data) };
    case 'set': {
      const members = e.data.values().slice();
      return { ...e, data: { values: () => members } as unknown as IndexedSet };
    }
    case 'zset': {
      const members: string[] = [];
      const scores: number[] = [];
      for (const x of e.data.entries()) {
        members.push(x.member);
        scores.push(x.score);
      }
      const entries = function* () {
        for (let i = 0; i < members.length; i++) yield { member: members[i], score: scores[i] };
      };
      return { ...e, data: { entries } as unknown as SortedSet };
    }
    default:
      return e;
  }
}
