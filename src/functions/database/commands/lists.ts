import { Op, num } from '../store/mutations.ts';
import { ErrorReply, NULL_ARRAY, OK, type Reply } from '../resp/writer.ts';
import { keyOf, lower, normaliseRange, parseSafeInt } from './args.ts';
import { optionalCount, typed } from './collections.ts';
import { BlockReply, NOT_INTEGER, SYNTAX, WRONGTYPE, arityError, cmd, type CommandContext, type CommandSpec } from './types.ts';

const LEFT = Buffer.from('0');
const RIGHT = Buffer.from('1');

function push(ctx: CommandContext, a: Buffer[], op: typeof Op.LPush | typeof Op.RPush): Reply {
  const e = typed(ctx, a[1], 'list');
  if (e instanceof ErrorReply) return e;
  return ctx.db.mutate({ op, args: a.slice(1) }) as number;
}

function pop(ctx: CommandContext, a: Buffer[], op: typeof Op.LPop | typeof Op.RPop, name: string): Reply {
  if (a.length > 3) return arityError(name);
  const count = optionalCount(a[2]);
  if (count instanceof ErrorReply) return count;
  const e = typed(ctx, a[1], 'list');
  if (e instanceof ErrorReply) return e;
  if (e === undefined) return count === null ? null : NULL_ARRAY;
  const n = Math.min(count ?? 1, e.data.length);
  const popped = n === 0 ? [] : (ctx.db.mutate({ op, args: [a[1], num(n)] }) as Buffer[]);
  return count === null ? popped[0] : popped;
}

function lrange(ctx: CommandContext, a: Buffer[]): Reply {
  const start = parseSafeInt(a[2]);
  const stop = parseSafeInt(a[3]);
  if (start === null || stop === null) return NOT_INTEGER;
  const e = typed(ctx, a[1], 'list');
  if (e instanceof ErrorReply) return e;
  if (e === undefined) return [];
  const r = normaliseRange(start, stop, e.data.length);
  return r === null ? [] : e.data.slice(r[0], r[1]);
}

function llen(ctx: CommandContext, a: Buffer[]): Reply {
  const e = typed(ctx, a[1], 'list');
  if (e instanceof ErrorReply) return e;
  return e === undefined ? 0 : e.data.length;
}

function pushx(ctx: CommandContext, a: Buffer[], op: typeof Op.LPush | typeof Op.RPush): Reply {
  const e = typed(ctx, a[1], 'list');
  if (e instanceof ErrorReply) return e;
  if (e === undefined) return 0;
  return ctx.db.mutate({ op, args: a.slice(1) }) as number;
}

function lindex(ctx: CommandContext, a: Buffer[]): Reply {
  const index = parseSafeInt(a[2]);
  if (index === null) return NOT_INTEGER;
  const e = typed(ctx, a[1], 'list');
  if (e instanceof ErrorReply) return e;
  if (e === undefined) return null;
  const i = index < 0 ? e.data.length + index : index;
  return i >= 0 && i < e.data.length ? e.data.at(i) : null;
}

function lset(ctx: CommandContext, a: Buffer[]): Reply {
  const index = parseSafeInt(a[2]);
  if (index === null) return NOT_INTEGER;
  const e = typed(ctx, a[1], 'list');
  if (e instanceof ErrorReply) return e;
  if (e === undefined) return new ErrorReply('ERR no such key');
  const i = index < 0 ? e.data.length + index : index;
  if (i < 0 || i >= e.data.length) return new ErrorReply('ERR index out of range');
  ctx.db.mutate({ op: Op.LSet, args: [a[1], num(i), a[3]] });
  return OK;
}

function lrem(ctx: CommandContext, a: Buffer[]): Reply {
  const count = parseSafeInt(a[2]);
  if (count === null) return NOT_INTEGER;
  const e = typed(ctx, a[1], 'list');
  if (e instanceof ErrorReply) return e;
  if (e === undefined) return 0;
  // Log only a removal that happens (the count is decided against the data, so replay matches).
  let found = false;
  for (let i = 0; i < e.data.length && !found; i++) found = e.data.at(i).equals(a[3]);
  if (!found) return 0;
  return ctx.db.mutate({ op: Op.LRem, args: [a[1], num(count), a[3]] }) as number;
}

function ltrim(ctx: CommandContext, a: Buffer[]): Reply {
  const start = parseSafeInt(a[2]);
  const stop = parseSafeInt(a[3]);
  if (start === null || stop === null) return NOT_INTEGER;
  const e = typed(ctx, a[1], 'list');
  if (e instanceof ErrorReply) return e;
  if (e === undefined) return OK;
  const n = e.data.length;
  const r = normaliseRange(start, stop, n);
  if (r === null) ctx.db.mutate({ op: Op.Del, args: [a[1]] });
  else if (r[0] !== 0 || r[1] !== n) ctx.db.mutate({ op: Op.LTrim, args: [a[1], num(r[0]), num(r[1])] });
  return OK;
}

function linsert(ctx: CommandContext, a: Buffer[]): Reply {
  const where = lower(a[2]);
  if (where !== 'before' && where !== 'after') return SYNTAX;
  const e = typed(ctx, a[1], 'list');
  if (e instanceof ErrorReply) return e;
  if (e === undefined) return 0;
  let found = false;
  for (let i = 0; i < e.data.length && !found; i++) found = e.data.at(i).equals(a[3]);
  if (!found) return -1;
  return ctx.db.mutate({ op: Op.LInsert, args: [a[1], where === 'after' ? RIGHT : LEFT, a[3], a[4]] }) as number;
}

function side(b: Buffer): Buffer | null {
  const s = lower(b);
  return s === 'left' ? LEFT : s === 'right' ? RIGHT : null;
}

/** LMOVE's body: move one element if src has one; null when src is missing (or empty), WRONGTYPE when either key is not a list. */
function move(ctx: CommandContext, src: Buffer, dst: Buffer, from: Buffer, to: Buffer): Reply {
  const s = typed(ctx, src, 'list');
  if (s instanceof ErrorReply) return s;
  if (s === undefined) return null;
  const d = typed(ctx, dst, 'list');
  if (d instanceof ErrorReply) return d;
  return (ctx.db.mutate({ op: Op.LMove, args: [src, dst, from, to] }) as Buffer[])[0];
}

function lmove(ctx: CommandContext, a: Buffer[]): Reply {
  const from = side(a[3]);
  const to = side(a[4]);
  if (from === null || to === null) return SYNTAX;
  return move(ctx, a[1], a[2], from, to);
}

/**
 * A blocking timeout in seconds (a float since Redis 6) as milliseconds,
 * with Redis's errors (a value too large to count in ms wraps negative there).
 */
function timeoutOf(b: Buffer): number | ErrorReply {
  const s = b.toString('latin1');
  const v = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(s) ? Number(s) : NaN;
  if (!Number.isFinite(v)) return new ErrorReply('ERR timeout is not a float or out of range');
  const ms = v * 1000;
  if (ms < 0 || ms > 9.2e18) return new ErrorReply('ERR timeout is negative');
  return Math.ceil(ms);
}

function bpop(ctx: CommandContext, a: Buffer[], op: typeof Op.LPop | typeof Op.RPop): Reply | BlockReply {
  const timeout = timeoutOf(a[a.length - 1]);
  if (timeout instanceof ErrorReply) return timeout;
  for (let i = 1; i < a.length - 1; i++) {
    const e = ctx.db.ks.get(keyOf(a[i]));
    if (e === undefined) continue;
    if (e.type !== 'list') return WRONGTYPE;
    const popped = ctx.db.mutate({ op, args: [a[i], ONE] }) as Buffer[];
    return [a[i], popped[0]];
  }
  if (ctx.client.inExec) return NULL_ARRAY;
  return new BlockReply(a.slice(1, -1).map(keyOf), timeout, NULL_ARRAY);
}

function bmove(ctx: CommandContext, src: Buffer, dst: Buffer, from: Buffer, to: Buffer, timeoutArg: Buffer): Reply | BlockReply {
  const timeout = timeoutOf(timeoutArg);
  if (timeout instanceof ErrorReply) return timeout;
  const r = move(ctx, src, dst, from, to);
  if (r !== null || ctx.client.inExec) return r;
  return new BlockReply([keyOf(src)], timeout, null);
}

function blmove(ctx: CommandContext, a: Buffer[]): Reply | BlockReply {
  const from = side(a[3]);
  const to = side(a[4]);
  if (from === null || to === null) return SYNTAX;
  return bmove(ctx, a[1], a[2], from, to, a[5]);
}

const ONE = Buffer.from('1');

export const listCommands: CommandSpec[] = [
  cmd('lpushx', -3, 'write denyoom fast', [1, 1, 1], (ctx, a) => pushx(ctx, a, Op.LPush)),
  cmd('rpushx', -3, 'write denyoom fast', [1, 1, 1], (ctx, a) => pushx(ctx, a, Op.RPush)),
  cmd('lindex', 3, 'readonly', [1, 1, 1], lindex),
  cmd('lset', 4, 'write denyoom', [1, 1, 1], lset),
  cmd('lrem', 4, 'write', [1, 1, 1], lrem),
  cmd('ltrim', 4, 'write', [1, 1, 1], ltrim),
  cmd('linsert', 5, 'write denyoom', [1, 1, 1], linsert),
  cmd('lmove', 5, 'write denyoom', [1, 2, 1], lmove),
  cmd('rpoplpush', 3, 'write denyoom', [1, 2, 1], (ctx, a) => move(ctx, a[1], a[2], RIGHT, LEFT)),
  cmd('blpop', -3, 'write noscript', [1, -2, 1], (ctx, a) => bpop(ctx, a, Op.LPop)),
  cmd('brpop', -3, 'write noscript', [1, -2, 1], (ctx, a) => bpop(ctx, a, Op.RPop)),
  cmd('blmove', 6, 'write denyoom noscript', [1, 2, 1], blmove),
  cmd('brpoplpush', 4, 'write denyoom noscript', [1, 2, 1], (ctx, a) => bmove(ctx, a[1], a[2], RIGHT, LEFT, a[3])),
  cmd('lpush', -3, 'write denyoom fast', [1, 1, 1], (ctx, a) => push(ctx, a, Op.LPush)),
  cmd('rpush', -3, 'write denyoom fast', [1, 1, 1], (ctx, a) => push(ctx, a, Op.RPush)),
  cmd('lpop', -2, 'write fast', [1, 1, 1], (ctx, a) => pop(ctx, a, Op.LPop, 'lpop')),
  cmd('rpop', -2, 'write fast', [1, 1, 1], (ctx, a) => pop(ctx, a, Op.RPop, 'rpop')),
  cmd('lrange', 4, 'readonly', [1, 1, 1], lrange),
  cmd('llen', 2, 'readonly fast', [1, 1, 1], llen),
];
