import { Op } from '../store/mutations.ts';
import { ErrorReply, type Reply } from '../resp/writer.ts';
import { bufOf, keyOf, parseInt64 } from './args.ts';
import { optionalCount, typed } from './collections.ts';
import type { IndexedSet } from '../store/indexed-set.ts';
import { NOT_INTEGER, WRONGTYPE, arityError, cmd, type CommandContext, type CommandSpec } from './types.ts';

function sadd(ctx: CommandContext, a: Buffer[]): Reply {
  const e = typed(ctx, a[1], 'set');
  if (e instanceof ErrorReply) return e;
  return ctx.db.mutate({ op: Op.SAdd, args: a.slice(1) }) as number;
}

function srem(ctx: CommandContext, a: Buffer[]): Reply {
  const e = typed(ctx, a[1], 'set');
  if (e instanceof ErrorReply) return e;
  if (e === undefined) return 0;
  const present = a.slice(2).filter((m) => e.data.has(keyOf(m)));
  return present.length === 0 ? 0 : (ctx.db.mutate({ op: Op.SRem, args: [a[1], ...present] }) as number);
}

function smembers(ctx: CommandContext, a: Buffer[]): Reply {
  const e = typed(ctx, a[1], 'set');
  if (e instanceof ErrorReply) return e;
  return e === undefined ? [] : e.data.values().map(bufOf);
}

function sismember(ctx: CommandContext, a: Buffer[]): Reply {
  const e = typed(ctx, a[1], 'set');
  if (e instanceof ErrorReply) return e;
  return e?.data.has(keyOf(a[2])) ? 1 : 0;
}

function scard(ctx: CommandContext, a: Buffer[]): Reply {
  const e = typed(ctx, a[1], 'set');
  if (e instanceof ErrorReply) return e;
  return e === undefined ? 0 : e.data.size;
}

function spop(ctx: CommandContext, a: Buffer[]): Reply {
  if (a.length > 3) return arityError('spop');
  const count = optionalCount(a[2]);
  if (count instanceof ErrorReply) return count;
  const e = typed(ctx, a[1], 'set');
  if (e instanceof ErrorReply) return e;
  if (e === undefined) return count === null ? null : [];
  if (count === 0) return [];
  if (count !== null && count >= e.data.size) {
    // Popping everything: log one DEL instead of every member.
    const all = e.data.values().map(bufOf);
    ctx.db.mutate({ op: Op.Del, args: [a[1]] });
    return all;
  }
  // Randomness is resolved here, so the log records exactly which members left.
  let members: Buffer[];
  if (count === null) {
    members = [bufOf(e.data.random())];
  } else {
    // A partial Fisher-Yates shuffle: `count` distinct members in O(size).
    const pool = e.data.values().slice();
    for (let i = 0; i < count; i++) {
      const j = i + Math.floor(Math.random() * (pool.length - i));
      [pool[i], pool[j]] = [pool[j], pool[i]];
    }
    members = pool.slice(0, count).map(bufOf);
  }
  ctx.db.mutate({ op: Op.SRem, args: [a[1], ...members] });
  return count === null ? members[0] : members;
}

/** The sets at keys (null for a missing key), or WRONGTYPE if any key holds something else. */
function setsOf(ctx: CommandContext, keys: Buffer[]): (IndexedSet | null)[] | ErrorReply {
  const out: (IndexedSet | null)[] = [];
  for (const k of keys) {
    const e = ctx.db.ks.get(keyOf(k));
    if (e === undefined) out.push(null);
    else if (e.type !== 'set') return WRONGTYPE;
    else out.push(e.data);
  }
  return out;
}

type SetOp = 'inter' | 'union' | 'diff';

function combine(sets: (IndexedSet | null)[], op: SetOp): string[] {
  if (op === 'union') {
    const all = new Set<string>();
    for (const s of sets) if (s !== null) for (const m of s.values()) all.add(m);
    return [...all];
  }
  if (op === 'inter') {
    if (sets.some((s) => s === null)) return [];
    const sorted = (sets as IndexedSet[]).slice().sort((x, y) => x.size - y.size);
    return sorted[0].values().filter((m) => sorted.every((s) => s.has(m)));
  }
  const [first, ...rest] = sets;
  if (first === null) return [];
  return first.values().filter((m) => rest.every((s) => s === null || !s.has(m)));
}

function setAlgebra(ctx: CommandContext, a: Buffer[], op: SetOp): Reply {
  const sets = setsOf(ctx, a.slice(1));
  if (sets instanceof ErrorReply) return sets;
  return combine(sets, op).map(bufOf);
}

/** SINTERSTORE and friends: the result replaces dst (any type) in one logged step. */
function setAlgebraStore(ctx: CommandContext, a: Buffer[], op: SetOp): Reply {
  const sets = setsOf(ctx, a.slice(2));
  if (sets instanceof ErrorReply) return sets;
  const members = combine(sets, op);
  const dstLive = ctx.db.ks.get(keyOf(a[1])) !== undefined;
  ctx.db.atomically(() => {
    if (dstLive) ctx.db.mutate({ op: Op.Del, args: [a[1]] });
    if (members.length > 0) ctx.db.mutate({ op: Op.SAdd, args: [a[1], ...members.map(bufOf)] });
  });
  return members.length;
}

function smove(ctx: CommandContext, a: Buffer[]): Reply {
  const src = typed(ctx, a[1], 'set');
  if (src instanceof ErrorReply) return src;
  const dst = typed(ctx, a[2], 'set');
  if (dst instanceof ErrorReply) return dst;
  const m = keyOf(a[3]);
  if (src === undefined || !src.data.has(m)) return 0;
  if (a[1].equals(a[2])) return 1;
  ctx.db.atomically(() => {
    ctx.db.mutate({ op: Op.SRem, args: [a[1], a[3]] });
    ctx.db.mutate({ op: Op.SAdd, args: [a[2], a[3]] });
  });
  return 1;
}

function smismember(ctx: CommandContext, a: Buffer[]): Reply {
  const e = typed(ctx, a[1], 'set');
  if (e instanceof ErrorReply) return e;
  const out: Reply[] = [];
  for (let i = 2; i < a.length; i++) out.push(e?.data.has(keyOf(a[i])) ? 1 : 0);
  return out;
}

function srandmember(ctx: CommandContext, a: Buffer[]): Reply {
  if (a.length > 3) return arityError('srandmember');
  let count: number | null = null;
  if (a.length === 3) {
    const v = parseInt64(a[2]);
    if (v === null) return NOT_INTEGER;
    if (v < -(2n ** 62n) || v > 2n ** 62n) return new ErrorReply('ERR value is out of range');
    count = Number(v);
  }
  const e = typed(ctx, a[1], 'set');
  if (e instanceof ErrorReply) return e;
  if (e === undefined) return count === null ? null : [];
  if (count === null) return bufOf(e.data.random());
  const all = e.data.values();
  if (count < 0) {
    const out: Reply[] = [];
    for (let i = 0; i < -count; i++) out.push(bufOf(e.data.random()));
    return out;
  }
  if (count >= all.length) return all.map(bufOf);
  const pool = all.slice();
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(Math.random() * (pool.length - i));
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  return pool.slice(0, count).map(bufOf);
}

export const setCommands: CommandSpec[] = [
  cmd('sinter', -2, 'readonly', [1, -1, 1], (ctx, a) => setAlgebra(ctx, a, 'inter')),
  cmd('sunion', -2, 'readonly', [1, -1, 1], (ctx, a) => setAlgebra(ctx, a, 'union')),
  cmd('sdiff', -2, 'readonly', [1, -1, 1], (ctx, a) => setAlgebra(ctx, a, 'diff')),
  cmd('sinterstore', -3, 'write denyoom', [1, -1, 1], (ctx, a) => setAlgebraStore(ctx, a, 'inter')),
  cmd('sunionstore', -3, 'write denyoom', [1, -1, 1], (ctx, a) => setAlgebraStore(ctx, a, 'union')),
  cmd('sdiffstore', -3, 'write denyoom', [1, -1, 1], (ctx, a) => setAlgebraStore(ctx, a, 'diff')),
  cmd('smove', 4, 'write fast', [1, 2, 1], smove),
  cmd('smismember', -3, 'readonly fast', [1, 1, 1], smismember),
  cmd('srandmember', -2, 'readonly', [1, 1, 1], srandmember),
  cmd('sadd', -3, 'write denyoom fast', [1, 1, 1], sadd),
  cmd('srem', -3, 'write fast', [1, 1, 1], srem),
  cmd('smembers', 2, 'readonly', [1, 1, 1], smembers),
  cmd('sismember', 3, 'readonly fast', [1, 1, 1], sismember),
  cmd('scard', 2, 'readonly fast', [1, 1, 1], scard),
  cmd('spop', -2, 'write fast', [1, 1, 1], spop),
];
