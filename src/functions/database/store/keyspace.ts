import { Deque } from './deque.ts';
import { IndexedSet } from './indexed-set.ts';
import { SortedSet } from './sorted-set.ts';
import { SMALL_BULK } from '../resp/writer.ts';

/**
 * The in-memory data set: keys (binary-safe, held as latin1 strings so each
 * char is one byte) to typed values with an optional absolute expiry time.
 * Expired keys are removed lazily when touched and by a periodic sampler, as
 * Redis does; removal of an expired key is not logged, because the expiry
 * time itself is in the log and replay drops keys whose time has passed.
 */
/**
 * A key's bytes as the latin1 string the keyspace is keyed by. Buffer's own
 * latin1Slice, without toString's encoding dispatch: this runs for every key
 * of every command.
 */
export const keyString = (b: Buffer): string => latin1Slice.call(b, 0, b.length);
/**
 * Held once: `b.latin1Slice` per call was a generic LoadIC in the optimized
 * SET and GET (about 1% of SET -P16), `.call` on the held function is not.
 */
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice(this: Buffer, start: number, end: number): string }).latin1Slice;

/**
 * String values up to this size are overwritten in place by a SET of the same
 * length. Replies copy bulks up to resp/writer.ts SMALL_BULK (16 KiB) into
 * their slab when encoded and send larger ones by reference, so a stored
 * Buffer that may be sent by reference is never written again.
 */
export const IN_PLACE_MAX = SMALL_BULK;

export type Value =
  | { type: 'string'; data: Buffer }
  | { type: 'list'; data: Deque<Buffer> }
  | { type: 'hash'; data: Map<string, Buffer> }
  | { type: 'set'; data: IndexedSet }
  | { type: 'zset'; data: SortedSet };

export type ValueType = Value['type'];

export type Entry = Value & {
  /** Absolute expiry in ms since the epoch; 0 = none. */
  expireAt: number;
  /** Creation sequence number: SCAN cursors are built from it. */
  id: number;
};

export class Keyspace {
  private readonly map = new Map<string, Entry>();
  /** Keys that have an expiry, for the active expire sampler. */
  private readonly volatile = new Set<string>();
  private volatileCursor: Iterator<string> | null = null;
  /** Keys in creation order (may hold stale names), for SCAN. */
  private scanOrder: { id: number; key: string }[] = [];
  private staleInScanOrder = 0;
  private nextId = 1;

  /** Current time source; replaced by tests. */
  now: () => number = Date.now;

  /**
   * Called when the first key with an expiry appears (none had one before):
   * the active expirer sleeps while there is none and is woken by this.
   */
  onVolatile: (() => void) | null = null;

  /** Keys that have an expiry (the active expirer's work). */
  get volatileCount(): number {
    return this.volatile.size;
  }

  /** The live entry for key, removing it first if it has expired. */
  get(key: string): Entry | undefined {
    const e = this.map.get(key);
    if (e === undefined) return undefined;
    if (e.expireAt !== 0 && e.expireAt <= this.now()) {
      this.delete(key);
      return undefined;
    }
    return e;
  }

  /** The entry for key as stored, expired or not, without removing it (the snapshot cursor's look). */
  peek(key: string): Entry | undefined {
    return this.map.get(key);
  }

  /** The id the next created key will get: every key that exists now has a lower one. */
  get idMark(): number {
    return this.nextId;
  }

  /** Store a value under key, replacing whatever was there (expiry given explicitly). */
  put(key: string, value: Value, expireAt: number): Entry {
    const old = this.map.get(key);
    // One object shape for every entry keeps property access monomorphic on the hot path.
    const entry = { type: value.type, data: value.data, expireAt: 0, id: old?.id ?? this.nextId++ } as Entry;
    this.map.set(key, entry);
    if (old === undefined) this.scanOrder.push({ id: entry.id, key });
    if (expireAt !== 0 || (old !== undefined && old.expireAt !== 0)) this.setExpire(entry, key, expireAt);
    return entry;
  }

  /** put() of a string value without the Value object in between (SET's path). */
  putString(key: string, data: Buffer, expireAt: number): Entry {
    return this.storeString(key, this.map.get(key), data, expireAt);
  }

  /**
   * putString() of a copy of `src` (a view into a request or log chunk). A
   * string entry without a TTL overwritten by a value of the same length (up
   * to IN_PLACE_MAX) without a TTL takes the new bytes into its own Buffer:
   * no allocation and no garbage per SET (a pipeline of 4 KiB SETs otherwise
   * makes one ArrayBuffer, and a major GC every few MiB, per command).
   * Callers must hold no stored string Buffer across a mutation: replies are
   * encoded (copied, up to IN_PLACE_MAX) as soon as a command returns; the
   * commands that return a value across a mutation (GETSET, SET ... GET) or
   * hold replies for later (EXEC) copy it first (see commands/strings.ts).
   */
  putStringCopy(key: string, src: Buffer, expireAt: number): Entry {
    const n = src.length;
    const old = this.map.get(key);
    if (old !== undefined && n <= IN_PLACE_MAX && expireAt === 0 && old.type === 'string' && old.expireAt === 0 && old.data.length === n) {
      old.data.set(src);
      return old;
    }
    const c = Buffer.allocUnsafe(n);
    c.set(src);
    return this.storeString(key, old, c, expireAt);
  }

  /** putString() with the entry now at key (one Map probe for the whole SET). */
  private storeString(key: string, old: Entry | undefined, data: Buffer, expireAt: number): Entry {
    // Overwriting a string without a TTL by one without: the entry is updated in place
    // (no new entry, no second Map probe). Nothing keeps a string entry's data across a
    // mutation (the snapshot saved the key before this ran; replies copied or hold the old Buffer).
    if (old !== undefined && old.type === 'string' && old.expireAt === 0 && expireAt === 0) {
      old.data = data;
      return old;
    }
    const entry = { type: 'string', data, expireAt: 0, id: old?.id ?? this.nextId++ } as Entry;
    this.map.set(key, entry);
    if (old === undefined) this.scanOrder.push({ id: entry.id, key });
    if (expireAt !== 0 || (old !== undefined && old.expireAt !== 0)) this.setExpire(entry, key, expireAt);
    return entry;
  }

  setExpire(entry: Entry, key: string, expireAt: number): void {
    entry.expireAt = expireAt;
    if (expireAt !== 0) {
      const first = this.volatile.size === 0;
      this.volatile.add(key);
      if (first) this.onVolatile?.();
    } else this.volatile.delete(key);
  }

  delete(key: string): boolean {
    if (!this.map.delete(key)) return false;
    this.volatile.delete(key);
    this.staleInScanOrder++;
    if (this.staleInScanOrder > 1024 && this.staleInScanOrder > this.scanOrder.length / 2) this.rebuildScanOrder();
    return true;
  }

  clear(): void {
    this.map.clear();
    this.volatile.clear();
    this.volatileCursor = null;
    this.scanOrder = [];
    this.staleInScanOrder = 0;
  }

  /** Number of keys, including expired ones not yet reclaimed (as Redis's DBSIZE). */
  get size(): number {
    return this.map.size;
  }

  /** All entries (expired ones included: callers filter). */
  entries(): IterableIterator<[string, Entry]> {
    return this.map.entries();
  }

  isLive(e: Entry): boolean {
    return e.expireAt === 0 || e.expireAt > this.now();
  }

  /**
   * One SCAN step: keys created at or after `cursor` (a creation id), at most
   * `count` visited. Keys present for the whole iteration keep their id and
   * position, so each is returned; returns the next cursor (0 when done).
   */
  scan(cursor: number, count: number, visit: (key: string, e: Entry) => void): number {
    const order = this.scanOrder;
    let lo = 0;
    let hi = order.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (order[mid].id < cursor) lo = mid + 1;
      else hi = mid;
    }
    let visited = 0;
    let i = lo;
    for (; i < order.length && visited < count; i++) {
      const { id, key } = order[i];
      const e = this.map.get(key);
      if (e === undefined || e.id !== id) continue; // deleted, or re-created later in the order
      visited++;
      if (this.isLive(e)) visit(key, e);
    }
    return i < order.length ? order[i].id : 0;
  }

  /** Remove up to `budget` expired keys found by a rolling walk over the volatile keys. */
  expireSome(budget: number): number {
    let removed = 0;
    const now = this.now();
    for (let n = 0; n < budget; n++) {
      if (this.volatileCursor === null) this.volatileCursor = this.volatile.values();
      const next = this.volatileCursor.next();
      if (next.done) {
        this.volatileCursor = null;
        break;
      }
      const e = this.map.get(next.value);
      if (e !== undefined && e.expireAt !== 0 && e.expireAt <= now) {
        this.delete(next.value);
        removed++;
      }
    }
    return removed;
  }

  private rebuildScanOrder(): void {
    // Map iteration order is creation order, which is id order.
    this.scanOrder = [];
    for (const [key, e] of this.map) this.scanOrder.push({ id: e.id, key });
    this.staleInScanOrder = 0;
  }
}

export function emptyValue(type: ValueType): Value {
  switch (type) {
    case 'string':
      return { type, data: Buffer.alloc(0) };
    case 'list':
      return { type, data: new Deque<Buffer>() };
    case 'hash':
      return { type, data: new Map() };
    case 'set':
      return { type, data: new IndexedSet() };
    case 'zset':
      return { type, data: new SortedSet() };
  }
}
