import { Op } from '../store/mutations.ts';
import { ErrorReply, type Reply } from '../resp/writer.ts';
import { bufOf, keyOf } from './args.ts';
import { typed } from './collections.ts';
import { arityError, cmd, type CommandContext, type CommandSpec } from './types.ts';

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

export const hashCommands: CommandSpec[] = [
  cmd('hset', -4, 'write denyoom fast', [1, 1, 1], hset),
  cmd('hget', 3, 'readonly fast', [1, 1, 1], hget),
  cmd('hdel', -3, 'write fast', [1, 1, 1], hdel),
  cmd('hgetall', 2, 'readonly', [1, 1, 1], hgetall),
  cmd('hlen', 2, 'readonly fast', [1, 1, 1], hlen),
];
