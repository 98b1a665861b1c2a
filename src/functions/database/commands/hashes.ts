import { Op } from '../store/mutations.ts';
import { ErrorReply, type Reply } from '../resp/writer.ts';
import { OK } from '../resp/writer.ts';
import { bufOf, formatLongDouble, inInt64, keyOf, parseFloatArg, parseInt64 } from './args.ts';
import { typed } from './collections.ts';
import { NOT_FLOAT, NOT_INTEGER, arityError, cmd, type CommandContext, type CommandSpec } from './types.ts';

function hset(ctx: CommandContext, a: Buffer[]): Reply {
  if (a.length % 2 !== 0) return arityError('hset');
  const e = typed(ctx, a[1], 'hash');
  if (e instanceof ErrorReply) return e;
  return ctx.db.mutate({ op: Op.HSet, args: a.slice(1) }) as number;
}

function hget(ctx: CommandContext, a: Buffer[]): Reply {
  const e = typed(ctx, a[1], 'hash');
  if (e instanceof ErrorReply) return e;
  return e?.data.get(keyOf(a[2])) ?? null;
}

function hdel(ctx: CommandContext, a: Buffer[]): Reply {
  const e = typed(ctx, a[1], 'hash');
  if (e instanceof ErrorReply) return e;
  if (e === undefined) return 0;
  const present = a.slice(2).filter((f) => e.data.has(keyOf(f)));
  return present.length === 0 ? 0 : (ctx.db.mutate({ op: Op.HDel, args: [a[1], ...present] }) as number);
}

function hgetall(ctx: CommandContext, a: Buffer[]): Reply {
  const e = typed(ctx, a[1], 'hash');
  if (e instanceof ErrorReply) return e;
  const out: Reply[] = [];
  if (e !== undefined) for (const [f, v] of e.data) out.push(bufOf(f), v);
  return out;
}

function hlen(ctx: CommandContext, a: Buffer[]): Reply {
  const e = typed(ctx, a[1], 'hash');
  if (e instanceof ErrorReply) return e;
  return e === undefined ? 0 : e.data.size;
}

function hmset(ctx: CommandContext, a: Buffer[]): Reply {
  if (a.length % 2 !== 0) return arityError('hmset');
  const e = typed(ctx, a[1], 'hash');
  if (e instanceof ErrorReply) return e;
  ctx.db.mutate({ op: Op.HSet, args: a.slice(1) });
  return OK;
}

function hsetnx(ctx: CommandContext, a: Buffer[]): Reply {
  const e = typed(ctx, a[1], 'hash');
  if (e instanceof ErrorReply) return e;
  if (e?.data.has(keyOf(a[2]))) return 0;
  ctx.db.mutate({ op: Op.HSet, args: [a[1], a[2], a[3]] });
  return 1;
}

function hmget(ctx: CommandContext, a: Buffer[]): Reply {
  const e = typed(ctx, a[1], 'hash');
  if (e instanceof ErrorReply) return e;
  const out: Reply[] = [];
  for (let i = 2; i < a.length; i++) out.push(e?.data.get(keyOf(a[i])) ?? null);
  return out;
}

function hincrby(ctx: CommandContext, a: Buffer[]): Reply {
  const by = parseInt64(a[3]);
  if (by === null) return NOT_INTEGER;
  const e = typed(ctx, a[1], 'hash');
  if (e instanceof ErrorReply) return e;
  const old = e?.data.get(keyOf(a[2]));
  let current = 0n;
  if (old !== undefined) {
    const v = old.length <= 20 ? parseInt64(old) : null;
    if (v === null) return new ErrorReply('ERR hash value is not an integer');
    current = v;
  }
  const next = current + by;
  if (!inInt64(next)) return new ErrorReply('ERR increment or decrement would overflow');
  ctx.db.mutate({ op: Op.HSet, args: [a[1], a[2], Buffer.from(next.toString(), 'latin1')] });
  return next;
}

function hincrbyfloat(ctx: CommandContext, a: Buffer[]): Reply {
  const by = parseFloatArg(a[3]);
  if (by === null) return NOT_FLOAT;
  const e = typed(ctx, a[1], 'hash');
  if (e instanceof ErrorReply) return e;
  const old = e?.data.get(keyOf(a[2]));
  let current = 0;
  if (old !== undefined) {
    const v = parseFloatArg(old);
    if (v === null) return new ErrorReply('ERR hash value is not a float');
    current = v;
  }
  const next = current + by;
  if (!Number.isFinite(next)) return new ErrorReply('ERR increment would produce NaN or Infinity');
  const text = Buffer.from(formatLongDouble(next), 'latin1');
  ctx.db.mutate({ op: Op.HSet, args: [a[1], a[2], text] });
  return text;
}

function hexists(ctx: CommandContext, a: Buffer[]): Reply {
  const e = typed(ctx, a[1], 'hash');
  if (e instanceof ErrorReply) return e;
  return e?.data.has(keyOf(a[2])) ? 1 : 0;
}

function hkeysOrVals(ctx: CommandContext, a: Buffer[], keys: boolean): Reply {
  const e = typed(ctx, a[1], 'hash');
  if (e instanceof ErrorReply) return e;
  const out: Reply[] = [];
  if (e !== undefined) for (const [f, v] of e.data) out.push(keys ? bufOf(f) : v);
  return out;
}

function hstrlen(ctx: CommandContext, a: Buffer[]): Reply {
  const e = typed(ctx, a[1], 'hash');
  if (e instanceof ErrorReply) return e;
  return e?.data.get(keyOf(a[2]))?.length ?? 0;
}

export const hashCommands: CommandSpec[] = [
  cmd('hmset', -4, 'write denyoom fast', [1, 1, 1], hmset),
  cmd('hsetnx', 4, 'write denyoom fast', [1, 1, 1], hsetnx),
  cmd('hmget', -3, 'readonly fast', [1, 1, 1], hmget),
  cmd('hincrby', 4, 'write denyoom fast', [1, 1, 1], hincrby),
  cmd('hincrbyfloat', 4, 'write denyoom fast', [1, 1, 1], hincrbyfloat),
  cmd('hexists', 3, 'readonly fast', [1, 1, 1], hexists),
  cmd('hkeys', 2, 'readonly', [1, 1, 1], (ctx, a) => hkeysOrVals(ctx, a, true)),
  cmd('hvals', 2, 'readonly', [1, 1, 1], (ctx, a) => hkeysOrVals(ctx, a, false)),
  cmd('hstrlen', 3, 'readonly fast', [1, 1, 1], hstrlen),
  cmd('hset', -4, 'write denyoom fast', [1, 1, 1], hset),
  cmd('hget', 3, 'readonly fast', [1, 1, 1], hget),
  cmd('hdel', -3, 'write fast', [1, 1, 1], hdel),
  cmd('hgetall', 2, 'readonly', [1, 1, 1], hgetall),
  cmd('hlen', 2, 'readonly fast', [1, 1, 1], hlen),
];
