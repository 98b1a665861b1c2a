import { Op, f64, num } from '../store/mutations.ts';
import type { ScoreBound, ScoredMember, SortedSet } from '../store/sorted-set.ts';
import { ErrorReply, type Reply } from '../resp/writer.ts';
import { bufOf, formatDouble, keyOf, lower, normaliseRange, parseFloatArg, parseSafeInt } from './args.ts';
import { optionalCount, typed } from './collections.ts';
import { NOT_FLOAT, NOT_INTEGER, SYNTAX, arityError, cmd, type CommandContext, type CommandSpec } from './types.ts';

const scoreReply = (x: number) => Buffer.from(formatDouble(x), 'latin1');

function zadd(ctx: CommandContext, a: Buffer[]): Reply {
  let nx = false;
  let xx = false;
  let gt = false;
  let lt = false;
  let ch = false;
  let incr = false;
  let i = 2;
  for (; i < a.length; i++) {
    const opt = lower(a[i]);
    if (opt === 'nx') nx = true;
    else if (opt === 'xx') xx = true;
    else if (opt === 'gt') gt = true;
    else if (opt === 'lt') lt = true;
    else if (opt === 'ch') ch = true;
    else if (opt === 'incr') incr = true;
    else break;
  }
  const rest = a.length - i;
  if (rest === 0 || rest % 2 !== 0) return SYNTAX;
  if (nx && xx) return new ErrorReply('ERR XX and NX options at the same time are not compatible');
  if ((gt && nx) || (lt && nx) || (gt && lt)) {
    return new ErrorReply('ERR GT, LT, and/or NX options at the same time are not compatible');
  }
  if (incr && rest > 2) return new ErrorReply('ERR INCR option supports a single increment-element pair');
  const pairs: { score: number; member: Buffer }[] = [];
  for (let j = i; j < a.length; j += 2) {
    const score = parseFloatArg(a[j]);
    if (score === null) return NOT_FLOAT;
    pairs.push({ score, member: a[j + 1] });
  }
  const e = typed(ctx, a[1], 'zset');
  if (e instanceof ErrorReply) return e;
  // Decide every pair first (later pairs see earlier ones), then log only real changes.
  const pending = new Map<string, number>();
  const changes: Buffer[] = [a[1]];
  let added = 0;
  let updated = 0;
  let incrResult: number | null = null;
  for (const { score, member } of pairs) {
    const m = keyOf(member);
    const current = pending.has(m) ? pending.get(m) : e?.data.score(m);
    if ((nx && current !== undefined) || (xx && current === undefined)) continue;
    let next = score;
    if (incr && current !== undefined) {
      next = current + score;
      if (Number.isNaN(next)) return new ErrorReply('ERR resulting score is not a number (NaN)');
    }
    if (current !== undefined && ((gt && !(next > current)) || (lt && !(next < current)))) continue;
    incrResult = next;
    if (current === undefined) added++;
    else if (current !== next) updated++;
    else continue;
    pending.set(m, next);
    changes.push(f64(next), member);
  }
  if (changes.length > 1) ctx.db.mutate({ op: Op.ZAdd, args: changes });
  if (incr) return incrResult === null ? null : scoreReply(incrResult);
  return ch ? added + updated : added;
}

function withScores(items: readonly ScoredMember[], scores: boolean): Reply[] {
  const out: Reply[] = [];
  for (const s of items) {
    out.push(bufOf(s.member));
    if (scores) out.push(scoreReply(s.score));
  }
  return out;
}

function parseScoreBound(b: Buffer): ScoreBound | null {
  const exclusive = b[0] === 0x28; /* '(' */
  const v = parseFloatArg(exclusive ? b.subarray(1) : b);
  return v === null ? null : { value: v, exclusive };
}

function zrange(ctx: CommandContext, a: Buffer[]): Reply {
  let byScore = false;
  let rev = false;
  let scores = false;
  let limit: [number, number] | null = null;
  for (let i = 4; i < a.length; i++) {
    const opt = lower(a[i]);
    if (opt === 'withscores') scores = true;
    else if (opt === 'rev') rev = true;
    else if (opt === 'byscore') byScore = true;
    else if (opt === 'limit' && i + 2 < a.length) {
      const off = parseSafeInt(a[i + 1]);
      const cnt = parseSafeInt(a[i + 2]);
      if (off === null || cnt === null) return NOT_INTEGER;
      limit = [off, cnt];
      i += 2;
    } else return SYNTAX;
  }
  if (limit !== null && !byScore) {
    return new ErrorReply('ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX');
  }
  if (byScore) {
    const lo = parseScoreBound(rev ? a[3] : a[2]);
    const hi = parseScoreBound(rev ? a[2] : a[3]);
    if (lo === null || hi === null) return new ErrorReply('ERR min or max is not a float');
    const e = typed(ctx, a[1], 'zset');
    if (e instanceof ErrorReply) return e;
    if (e === undefined) return [];
    return withScores(byScore_(e.data, lo, hi, rev, limit), scores);
  }
  const start = parseSafeInt(a[2]);
  const stop = parseSafeInt(a[3]);
  if (start === null || stop === null) return NOT_INTEGER;
  const e = typed(ctx, a[1], 'zset');
  if (e instanceof ErrorReply) return e;
  if (e === undefined) return [];
  const n = e.data.size;
  const r = normaliseRange(start, stop, n);
  if (r === null) return [];
  const items = rev ? e.data.revRange(r[0], r[1]) : e.data.range(r[0], r[1]);
  return withScores(items, scores);
}

/** Entries with lo <= score <= hi, ascending (or descending with rev), then LIMIT offset count. */
function byScore_(z: SortedSet, lo: ScoreBound, hi: ScoreBound, rev: boolean, limit: [number, number] | null): ScoredMember[] {
  const [start, end] = z.scoreRange(lo, hi);
  let skip = 0;
  let take = end - start;
  if (limit !== null) {
    if (limit[0] < 0) return [];
    skip = Math.min(limit[0], take);
    take -= skip;
    if (limit[1] >= 0) take = Math.min(take, limit[1]);
  }
  if (take <= 0) return [];
  if (!rev) return z.range(start + skip, start + skip + take);
  const n = z.size;
  // Descending ranks: rank r from the top is ascending rank n - 1 - r.
  const top = n - end + skip;
  return z.revRange(top, top + take);
}

/** ZRANGEBYSCORE / ZREVRANGEBYSCORE key min max [WITHSCORES] [LIMIT offset count]. */
function zrangebyscore(ctx: CommandContext, a: Buffer[], rev: boolean): Reply {
  let scores = false;
  let limit: [number, number] | null = null;
  for (let i = 4; i < a.length; i++) {
    const opt = lower(a[i]);
    if (opt === 'withscores') scores = true;
    else if (opt === 'limit' && i + 2 < a.length) {
      const off = parseSafeInt(a[i + 1]);
      const cnt = parseSafeInt(a[i + 2]);
      if (off === null || cnt === null) return NOT_INTEGER;
      limit = [off, cnt];
      i += 2;
    } else return SYNTAX;
  }
  const lo = parseScoreBound(rev ? a[3] : a[2]);
  const hi = parseScoreBound(rev ? a[2] : a[3]);
  if (lo === null || hi === null) return new ErrorReply('ERR min or max is not a float');
  const e = typed(ctx, a[1], 'zset');
  if (e instanceof ErrorReply) return e;
  if (e === undefined) return [];
  return withScores(byScore_(e.data, lo, hi, rev, limit), scores);
}

function zrevrange(ctx: CommandContext, a: Buffer[]): Reply {
  if (a.length > 5 || (a.length === 5 && lower(a[4]) !== 'withscores')) return SYNTAX;
  const start = parseSafeInt(a[2]);
  const stop = parseSafeInt(a[3]);
  if (start === null || stop === null) return NOT_INTEGER;
  const e = typed(ctx, a[1], 'zset');
  if (e instanceof ErrorReply) return e;
  if (e === undefined) return [];
  const r = normaliseRange(start, stop, e.data.size);
  return r === null ? [] : withScores(e.data.revRange(r[0], r[1]), a.length === 5);
}

function zrank(ctx: CommandContext, a: Buffer[], rev: boolean): Reply {
  const e = typed(ctx, a[1], 'zset');
  if (e instanceof ErrorReply) return e;
  const r = e?.data.rank(keyOf(a[2]));
  if (e === undefined || r === undefined) return null;
  return rev ? e.data.size - 1 - r : r;
}

function zrem(ctx: CommandContext, a: Buffer[]): Reply {
  const e = typed(ctx, a[1], 'zset');
  if (e instanceof ErrorReply) return e;
  if (e === undefined) return 0;
  const present = a.slice(2).filter((m) => e.data.score(keyOf(m)) !== undefined);
  return present.length === 0 ? 0 : (ctx.db.mutate({ op: Op.ZRem, args: [a[1], ...present] }) as number);
}

function zincrby(ctx: CommandContext, a: Buffer[]): Reply {
  const by = parseFloatArg(a[2]);
  if (by === null) return NOT_FLOAT;
  const e = typed(ctx, a[1], 'zset');
  if (e instanceof ErrorReply) return e;
  const next = (e?.data.score(keyOf(a[3])) ?? 0) + by;
  if (Number.isNaN(next)) return new ErrorReply('ERR resulting score is not a number (NaN)');
  if (e?.data.score(keyOf(a[3])) !== next) ctx.db.mutate({ op: Op.ZAdd, args: [a[1], f64(next), a[3]] });
  return scoreReply(next);
}

function zcount(ctx: CommandContext, a: Buffer[]): Reply {
  const lo = parseScoreBound(a[2]);
  const hi = parseScoreBound(a[3]);
  if (lo === null || hi === null) return new ErrorReply('ERR min or max is not a float');
  const e = typed(ctx, a[1], 'zset');
  if (e instanceof ErrorReply) return e;
  if (e === undefined) return 0;
  const [start, end] = e.data.scoreRange(lo, hi);
  return end - start;
}

function removeMembers(ctx: CommandContext, key: Buffer, items: readonly ScoredMember[]): number {
  if (items.length === 0) return 0;
  const members = items.map((s) => bufOf(s.member));
  return ctx.db.mutate({ op: Op.ZRem, args: [key, ...members] }) as number;
}

function zremrangebyrank(ctx: CommandContext, a: Buffer[]): Reply {
  const start = parseSafeInt(a[2]);
  const stop = parseSafeInt(a[3]);
  if (start === null || stop === null) return NOT_INTEGER;
  const e = typed(ctx, a[1], 'zset');
  if (e instanceof ErrorReply) return e;
  if (e === undefined) return 0;
  const r = normaliseRange(start, stop, e.data.size);
  return r === null ? 0 : removeMembers(ctx, a[1], e.data.range(r[0], r[1]));
}

function zremrangebyscore(ctx: CommandContext, a: Buffer[]): Reply {
  const lo = parseScoreBound(a[2]);
  const hi = parseScoreBound(a[3]);
  if (lo === null || hi === null) return new ErrorReply('ERR min or max is not a float');
  const e = typed(ctx, a[1], 'zset');
  if (e instanceof ErrorReply) return e;
  if (e === undefined) return 0;
  const [start, end] = e.data.scoreRange(lo, hi);
  return removeMembers(ctx, a[1], e.data.range(start, end));
}

function zpopmax(ctx: CommandContext, a: Buffer[]): Reply {
  if (a.length > 3) return arityError('zpopmax');
  const count = optionalCount(a[2]);
  if (count instanceof ErrorReply) return count;
  const e = typed(ctx, a[1], 'zset');
  if (e instanceof ErrorReply) return e;
  if (e === undefined || count === 0) return [];
  const items = e.data.revRange(0, Math.min(count ?? 1, e.data.size)).map((s) => ({ member: s.member, score: s.score }));
  removeMembers(ctx, a[1], items);
  return withScores(items, true);
}

function zmscore(ctx: CommandContext, a: Buffer[]): Reply {
  const e = typed(ctx, a[1], 'zset');
  if (e instanceof ErrorReply) return e;
  const out: Reply[] = [];
  for (let i = 2; i < a.length; i++) {
    const sc = e?.data.score(keyOf(a[i]));
    out.push(sc === undefined ? null : scoreReply(sc));
  }
  return out;
}

function zpopmin(ctx: CommandContext, a: Buffer[]): Reply {
  if (a.length > 3) return arityError('zpopmin');
  const count = optionalCount(a[2]);
  if (count instanceof ErrorReply) return count;
  const e = typed(ctx, a[1], 'zset');
  if (e instanceof ErrorReply) return e;
  if (e === undefined || count === 0) return [];
  const n = Math.min(count ?? 1, e.data.size);
  const popped = ctx.db.mutate({ op: Op.ZPopMin, args: [a[1], num(n)] }) as ScoredMember[];
  return withScores(popped, true);
}

function zscore(ctx: CommandContext, a: Buffer[]): Reply {
  const e = typed(ctx, a[1], 'zset');
  if (e instanceof ErrorReply) return e;
  const s = e?.data.score(keyOf(a[2]));
  return s === undefined ? null : scoreReply(s);
}

function zcard(ctx: CommandContext, a: Buffer[]): Reply {
  const e = typed(ctx, a[1], 'zset');
  if (e instanceof ErrorReply) return e;
  return e === undefined ? 0 : e.data.size;
}

export const zsetCommands: CommandSpec[] = [
  cmd('zrem', -3, 'write fast', [1, 1, 1], zrem),
  cmd('zrangebyscore', -4, 'readonly', [1, 1, 1], (ctx, a) => zrangebyscore(ctx, a, false)),
  cmd('zrevrangebyscore', -4, 'readonly', [1, 1, 1], (ctx, a) => zrangebyscore(ctx, a, true)),
  cmd('zrevrange', -4, 'readonly', [1, 1, 1], zrevrange),
  cmd('zrank', 3, 'readonly fast', [1, 1, 1], (ctx, a) => zrank(ctx, a, false)),
  cmd('zrevrank', 3, 'readonly fast', [1, 1, 1], (ctx, a) => zrank(ctx, a, true)),
  cmd('zincrby', 4, 'write denyoom fast', [1, 1, 1], zincrby),
  cmd('zcount', 4, 'readonly fast', [1, 1, 1], zcount),
  cmd('zremrangebyrank', 4, 'write', [1, 1, 1], zremrangebyrank),
  cmd('zremrangebyscore', 4, 'write', [1, 1, 1], zremrangebyscore),
  cmd('zpopmax', -2, 'write fast', [1, 1, 1], zpopmax),
  cmd('zmscore', -3, 'readonly fast', [1, 1, 1], zmscore),
  cmd('zadd', -4, 'write denyoom fast', [1, 1, 1], zadd),
  cmd('zrange', -4, 'readonly', [1, 1, 1], zrange),
  cmd('zpopmin', -2, 'write fast', [1, 1, 1], zpopmin),
  cmd('zscore', 3, 'readonly fast', [1, 1, 1], zscore),
  cmd('zcard', 2, 'readonly fast', [1, 1, 1], zcard),
];
