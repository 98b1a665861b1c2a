import { badMutation, StorvisorError } from '../../../util/errors.ts';
import { IN_PLACE_MAX, Keyspace, emptyValue, keyString, type Entry, type ValueType } from './keyspace.ts';
import type { ScoredMember } from './sorted-set.ts';

/**
 * Every change to the data set is one mutation: an op code plus binary
 * arguments (key first). Commands validate and decide, then apply a mutation;
 * the same mutation is appended to the log, and recovery applies the logged
 * mutations with this same code, so replay cannot drift from live behaviour.
 * Mutations are deterministic: randomness (SPOP) and time (EXPIRE, SET EX)
 * are resolved by the command into explicit members and absolute times.
 */
export const Op = {
  Set: 1, // key value expireAtMs   (expireAt 0 = no expiry)
  SetKeepTtl: 2, // key value
  Del: 3, // key...
  PExpireAt: 4, // key ms
  Persist: 5, // key
  Rename: 6, // src dst
  Append: 7, // key suffix
  LPush: 8, // key elem...
  RPush: 9, // key elem...
  LPop: 10, // key count
  RPop: 11, // key count
  HSet: 12, // key field value ...
  HDel: 13, // key field...
  SAdd: 14, // key member...
  SRem: 15, // key member...
  ZAdd: 16, // key score(f64 LE) member ...
  ZRem: 17, // key member...
  ZPopMin: 18, // key count
  FlushDb: 19, // (none)
  MSet: 20, // key value key value ... (clears expiry, like SET)
  Multi: 21, // encoded mutation... (one transaction: applied and logged as one record)
  LRem: 22, // key count(signed) elem
  LTrim: 23, // key start end   ([start, end) already normalised)
  LSet: 24, // key index elem   (index already normalised)
  LInsert: 25, // key where(0 before, 1 after) pivot elem
  LMove: 26, // src dst from(0 left, 1 right) to(0 left, 1 right)
} as const;
export type OpCode = (typeof Op)[keyof typeof Op];

export interface Mutation {
  op: OpCode;
  args: Buffer[];
  /**
   * args[0] as the keyspace's key string, when the command already made it (SET):
   * applying the mutation then neither decodes it again nor hashes a fresh string.
   */
  key?: string;
}

/** A mutation that does not fit the data (only possible for a corrupt log): util/errors.ts badMutation. */
export const isBadMutation = (err: unknown): boolean => err instanceof StorvisorError && err.code === 'SV_ERR_DB_BAD_MUTATION';

const ZERO = Buffer.from('0', 'latin1');
/** A number argument; 0 (no expiry: every SET) is one shared Buffer (mutation arguments are never written to). */
export const num = (n: number) => (n === 0 ? ZERO : Buffer.from(String(n), 'latin1'));
export const f64 = (x: number) => {
  const b = Buffer.allocUnsafe(8);
  b.writeDoubleLE(x);
  return b;
};
/** A number argument back (plain decimal digits without a string in between; anything else through Number). */
function readNum(b: Buffer): number {
  if (b.length === 0 || b.length > 15) return Number(b.toString('latin1'));
  let n = 0;
  for (let i = 0; i < b.length; i++) {
    const d = b[i] - 0x30;
    if (d < 0 || d > 9) return Number(b.toString('latin1'));
    n = n * 10 + d;
  }
  return n;
}

/** A mutation as bytes (op u8, argc u32, then u32 length + bytes per arg): the body of a record, and one part of a Multi. */
export function encodeMutation(m: Mutation): Buffer {
  let size = 5;
  for (const a of m.args) size += 4 + a.length;
  const out = Buffer.allocUnsafe(size);
  out[0] = m.op;
  out.writeUInt32LE(m.args.length, 1);
  let p = 5;
  for (const a of m.args) {
    out.writeUInt32LE(a.length, p);
    a.copy(out, p + 4);
    p += 4 + a.length;
  }
  return out;
}

/** The inverse of encodeMutation; throws badMutation (SV_ERR_DB_BAD_MUTATION) when the bytes are not one whole mutation. */
export function decodeMutation(b: Buffer): Mutation {
  if (b.length < 5) throw badMutation('short mutation');
  const argc = b.readUInt32LE(1);
  const args: Buffer[] = [];
  let p = 5;
  for (let i = 0; i < argc; i++) {
    if (p + 4 > b.length) throw badMutation('truncated mutation');
    const len = b.readUInt32LE(p);
    if (p + 4 + len > b.length) throw badMutation('truncated mutation');
    args.push(b.subarray(p + 4, p + 4 + len));
    p += 4 + len;
  }
  if (p !== b.length) throw badMutation('trailing bytes in mutation');
  return { op: b[0] as OpCode, args };
}

/** Push the keys a mutation changes onto `out` (for WATCH and blocked clients); false means every key (FLUSHDB). */
export function touchedKeys(m: Mutation, out: Buffer[]): boolean {
  const a = m.args;
  switch (m.op) {
    case Op.FlushDb:
      return false;
    case Op.Del:
      for (const k of a) out.push(k);
      return true;
    case Op.MSet:
      for (let i = 0; i < a.length; i += 2) out.push(a[i]);
      return true;
    case Op.Rename:
    case Op.LMove:
      out.push(a[0], a[1]);
      return true;
    case Op.Multi:
      for (const part of a) if (!touchedKeys(decodeMutation(part), out)) return false;
      return true;
    default:
      if (a.length > 0) out.push(a[0]);
      return true;
  }
}
const key = keyString;
/**
 * Stored values are copied: incoming buffers are views of large socket or log chunks.
 * allocUnsafe, not Buffer.from: a value of 4 KiB or more (past the pool) is then not
 * zero-filled before the copy overwrites it; smaller ones come from the pool either way.
 */
function own(b: Buffer): Buffer {
  const c = Buffer.allocUnsafe(b.length);
  b.copy(c, 0);
  return c;
}

function existingOf(ks: Keyspace, k: string, type: ValueType): Entry | undefined {
  const e = ks.get(k);
  if (e !== undefined && e.type !== type) throw badMutation(`${type} op on a ${e.type} key`);
  return e;
}

function collectionOf(ks: Keyspace, k: string, type: ValueType): Entry {
  return existingOf(ks, k, type) ?? ks.put(k, emptyValue(type), 0);
}

/** Apply one mutation to the keyspace; returns the op's natural result (count, length, popped items). */
export function applyMutation(ks: Keyspace, m: Mutation): number | Buffer[] | ScoredMember[] {
  const a = m.args;
  switch (m.op) {
    case Op.Set: {
      ks.putStringCopy(m.key ?? key(a[0]), a[1], readNum(a[2]));
      return 1;
    }
    case Op.MSet: {
      for (let i = 0; i + 1 < a.length; i += 2) ks.put(key(a[i]), { type: 'string', data: own(a[i + 1]) }, 0);
      return 1;
    }
    case Op.SetKeepTtl: {
      const k = key(a[0]);
      const old = ks.get(k);
      // INCR and friends mostly keep the length: the bytes go into the stored Buffer (see putStringCopy).
      if (old !== undefined && old.type === 'string' && old.data.length === a[1].length && a[1].length <= IN_PLACE_MAX) old.data.set(a[1]);
      else ks.put(k, { type: 'string', data: own(a[1]) }, old?.expireAt ?? 0);
      return 1;
    }
    case Op.Del: {
      let n = 0;
      for (const k of a) if (ks.get(key(k)) !== undefined && ks.delete(key(k))) n++;
      return n;
    }
    case Op.PExpireAt: {
      const k = key(a[0]);
      const e = ks.get(k);
      if (e === undefined) return 0;
      const at = readNum(a[1]);
      if (at <= ks.now()) ks.delete(k);
      else ks.setExpire(e, k, at);
      return 1;
    }
    case Op.Persist: {
      const k = key(a[0]);
      const e = ks.get(k);
      if (e === undefined || e.expireAt === 0) return 0;
      ks.setExpire(e, k, 0);
      return 1;
    }
    case Op.Rename: {
      const src = key(a[0]);
      const dst = key(a[1]);
      const e = ks.get(src);
      if (e === undefined) throw badMutation('rename of a missing key');
      if (src === dst) return 1;
      ks.delete(src);
      ks.delete(dst);
      ks.put(dst, e, e.expireAt);
      return 1;
    }
    case Op.Append: {
      const k = key(a[0]);
      const e = existingOf(ks, k, 'string');
      const data = e === undefined ? own(a[1]) : Buffer.concat([e.data as Buffer, a[1]]);
      ks.put(k, { type: 'string', data }, e?.expireAt ?? 0);
      return data.length;
    }
    case Op.LPush:
    case Op.RPush: {
      const e = collectionOf(ks, key(a[0]), 'list');
      if (e.type !== 'list') throw badMutation('unreachable');
      for (let i = 1; i < a.length; i++) {
        if (m.op === Op.LPush) e.data.pushFront(own(a[i]));
        else e.data.pushBack(own(a[i]));
      }
      return e.data.length;
    }
    case Op.LPop:
    case Op.RPop: {
      const k = key(a[0]);
      const e = existingOf(ks, k, 'list');
      if (e === undefined || e.type !== 'list') return [];
      const out: Buffer[] = [];
      for (let n = readNum(a[1]); n > 0 && e.data.length > 0; n--) {
        out.push((m.op === Op.LPop ? e.data.popFront() : e.data.popBack()) as Buffer);
      }
      if (e.data.length === 0) ks.delete(k);
      return out;
    }
    case Op.HSet: {
      const e = collectionOf(ks, key(a[0]), 'hash');
      if (e.type !== 'hash') throw badMutation('unreachable');
      let added = 0;
      for (let i = 1; i + 1 < a.length; i += 2) {
        const f = key(a[i]);
        if (!e.data.has(f)) added++;
        e.data.set(f, own(a[i + 1]));
      }
      return added;
    }
    case Op.HDel:
    case Op.SRem:
    case Op.ZRem: {
      const k = key(a[0]);
      const type = m.op === Op.HDel ? 'hash' : m.op === Op.SRem ? 'set' : 'zset';
      const e = existingOf(ks, k, type);
      if (e === undefined) return 0;
      let n = 0;
      for (let i = 1; i < a.length; i++) if ((e.data as { delete(x: string): boolean }).delete(key(a[i]))) n++;
      if ((e.data as { size: number }).size === 0) ks.delete(k);
      return n;
    }
    case Op.SAdd: {
      const e = collectionOf(ks, key(a[0]), 'set');
      if (e.type !== 'set') throw badMutation('unreachable');
      let n = 0;
      for (let i = 1; i < a.length; i++) if (e.data.add(key(a[i]))) n++;
      return n;
    }
    case Op.ZAdd: {
      const e = collectionOf(ks, key(a[0]), 'zset');
      if (e.type !== 'zset') throw badMutation('unreachable');
      let n = 0;
      for (let i = 1; i + 1 < a.length; i += 2) {
        if (a[i].length !== 8) throw badMutation('bad score encoding');
        if (e.data.set(key(a[i + 1]), a[i].readDoubleLE(0))) n++;
      }
      return n;
    }
    case Op.ZPopMin: {
      const k = key(a[0]);
      const e = existingOf(ks, k, 'zset');
      if (e === undefined || e.type !== 'zset') return [];
      const out = e.data.popMin(readNum(a[1]));
      if (e.data.size === 0) ks.delete(k);
      return out;
    }
    case Op.FlushDb:
      ks.clear();
      return 1;
    case Op.Multi: {
      // Decode every part first: a damaged record changes nothing rather than half.
      const parts = a.map(decodeMutation);
      for (const p of parts) applyMutation(ks, p);
      return parts.length;
    }
    case Op.LRem: {
      const k = key(a[0]);
      const e = existingOf(ks, k, 'list');
      if (e === undefined || e.type !== 'list') return 0;
      const n = e.data.remove(a[2], readNum(a[1]), (x, y) => x.equals(y));
      if (e.data.length === 0) ks.delete(k);
      return n;
    }
    case Op.LTrim: {
      const k = key(a[0]);
      const e = existingOf(ks, k, 'list');
      if (e === undefined || e.type !== 'list') return 0;
      e.data.trim(readNum(a[1]), readNum(a[2]));
      if (e.data.length === 0) ks.delete(k);
      return 1;
    }
    case Op.LSet: {
      const e = existingOf(ks, key(a[0]), 'list');
      const i = readNum(a[1]);
      if (e === undefined || e.type !== 'list' || !(i >= 0 && i < e.data.length)) throw badMutation('lset out of range');
      e.data.set(i, own(a[2]));
      return 1;
    }
    case Op.LInsert: {
      const e = existingOf(ks, key(a[0]), 'list');
      if (e === undefined || e.type !== 'list') return 0;
      for (let i = 0; i < e.data.length; i++) {
        if (e.data.at(i).equals(a[2])) {
          e.data.insert(a[1][0] === 0x31 ? i + 1 : i, own(a[3]));
          return e.data.length;
        }
      }
      return -1;
    }
    case Op.LMove: {
      const src = key(a[0]);
      const s = existingOf(ks, src, 'list');
      if (s === undefined || s.type !== 'list' || s.data.length === 0) return [];
      const dst = key(a[1]);
      const d0 = existingOf(ks, dst, 'list');
      const item = (a[2][0] === 0x31 ? s.data.popBack() : s.data.popFront()) as Buffer;
      if (s.data.length === 0) ks.delete(src);
      // The destination may have been the source, just emptied and removed.
      const d = d0 !== undefined && ks.get(dst) === d0 ? d0 : ks.put(dst, emptyValue('list'), 0);
      if (d.type !== 'list') throw badMutation('unreachable');
      if (a[3][0] === 0x31) d.data.pushBack(item);
      else d.data.pushFront(item);
      return [item];
    }
    default:
      throw badMutation(`unknown op ${m.op as number}`);
  }
}

/**
 * The mutations that rebuild one key from nothing (compaction writes these).
 * Large collections are split so each mutation stays around `chunkBytes`.
 */
export function* mutationsForKey(k: string, e: Entry, chunkBytes = 256 * 1024): Generator<Mutation> {
  const kb = Buffer.from(k, 'latin1');
  if (e.type === 'string') {
    yield { op: Op.Set, args: [kb, e.data, num(e.expireAt)] };
    return;
  }
  let args: Buffer[] = [kb];
  let bytes = 0;
  const op = e.type === 'list' ? Op.RPush : e.type === 'hash' ? Op.HSet : e.type === 'set' ? Op.SAdd : Op.ZAdd;
  const add = (...parts: Buffer[]): Mutation | null => {
    args.push(...parts);
    for (const p of parts) bytes += p.length + 4;
    if (bytes < chunkBytes) return null;
    const full: Mutation = { op, args };
    args = [kb];
    bytes = 0;
    return full;
  };
  const flushIf = function* (m: Mutation | null) {
    if (m) yield m;
  };
  if (e.type === 'list') for (let i = 0; i < e.data.length; i++) yield* flushIf(add(e.data.at(i)));
  else if (e.type === 'hash') for (const [f, v] of e.data) yield* flushIf(add(Buffer.from(f, 'latin1'), v));
  else if (e.type === 'set') for (const m of e.data.values()) yield* flushIf(add(Buffer.from(m, 'latin1')));
  else for (const s of e.data.entries()) yield* flushIf(add(f64(s.score), Buffer.from(s.member, 'latin1')));
  if (args.length > 1) yield { op, args };
  if (e.expireAt !== 0) yield { op: Op.PExpireAt, args: [kb, num(e.expireAt)] };
}
