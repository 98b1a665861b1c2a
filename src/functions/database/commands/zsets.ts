import { Op, f64, num } from '../store/mutations.ts';
import type { ScoredMember } from '../store/sorted-set.ts';
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

interface ScoreBound {
  value: number;
  exclusive: boolean;
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
    let items = e.data
      .entries()
      .filter(
        (s) =>
          (lo.exclusive ? s.score > lo.value : s.score >= lo.value) &&
          (hi.exclusive ? s.score < hi.value : s.score <= hi.value),
      );
    if (rev) items = items.slice().reverse();
    if (limit !== null) {
      if (limit[0] < 0) return [];
      items = items.slice(limit[0], limit[1] < 0 ? undefined : limit[0] + limit[1]);
    }
    return withScores(items, scores);
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
  const items = rev ? e.data.range(n - r[1], n - r[0]).reverse() : e.data.range(r[0], r[1]);
  return withScores(items, scores);
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
  cmd('zadd', -4, 'write denyoom fast', [1, 1, 1], zadd),
  cmd('zrange', -4, 'readonly', [1, 1, 1], zrange),
  cmd('zpopmin', -2, 'write fast', [1, 1, 1], zpopmin),
  cmd('zscore', 3, 'readonly fast', [1, 1, 1], zscore),
  cmd('zcard', 2, 'readonly fast', [1, 1, 1], zcard),
];
