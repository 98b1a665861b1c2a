import { Op } from '../store/mutations.ts';
import { ErrorReply, type Reply } from '../resp/writer.ts';
import { bufOf, keyOf } from './args.ts';
import { optionalCount, typed } from './collections.ts';
import { arityError, cmd, type CommandContext, type CommandSpec } from './types.ts';

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

export const setCommands: CommandSpec[] = [
  cmd('sadd', -3, 'write denyoom fast', [1, 1, 1], sadd),
  cmd('srem', -3, 'write fast', [1, 1, 1], srem),
  cmd('smembers', 2, 'readonly', [1, 1, 1], smembers),
  cmd('sismember', 3, 'readonly fast', [1, 1, 1], sismember),
  cmd('scard', 2, 'readonly fast', [1, 1, 1], scard),
  cmd('spop', -2, 'write fast', [1, 1, 1], spop),
];
