import { Op, num } from '../store/mutations.ts';
import { ErrorReply, NULL_ARRAY, type Reply } from '../resp/writer.ts';
import { normaliseRange, parseSafeInt } from './args.ts';
import { optionalCount, typed } from './collections.ts';
import { NOT_INTEGER, arityError, cmd, type CommandContext, type CommandSpec } from './types.ts';

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

export const listCommands: CommandSpec[] = [
  cmd('lpush', -3, 'write denyoom fast', [1, 1, 1], (ctx, a) => push(ctx, a, Op.LPush)),
  cmd('rpush', -3, 'write denyoom fast', [1, 1, 1], (ctx, a) => push(ctx, a, Op.RPush)),
  cmd('lpop', -2, 'write fast', [1, 1, 1], (ctx, a) => pop(ctx, a, Op.LPop, 'lpop')),
  cmd('rpop', -2, 'write fast', [1, 1, 1], (ctx, a) => pop(ctx, a, Op.RPop, 'rpop')),
  cmd('lrange', 4, 'readonly', [1, 1, 1], lrange),
  cmd('llen', 2, 'readonly fast', [1, 1, 1], llen),
];
