import { Op, num } from '../store/mutations.ts';
import type { Entry } from '../store/keyspace.ts';
import { ErrorReply, OK, type Reply } from '../resp/writer.ts';
import { inInt64, keyOf, lower, parseInt64 } from './args.ts';
import { NOT_INTEGER, SYNTAX, WRONGTYPE, arityError, cmd, type CommandContext, type CommandSpec } from './types.ts';

/** Redis proto-max-bulk-len: the largest string a command may build. */
const MAX_STRING = 512 * 1024 * 1024;

/** The string entry at key, undefined if missing, or WRONGTYPE. */
export function stringEntry(ctx: CommandContext, key: Buffer): Entry | undefined | ErrorReply {
  const e = ctx.db.ks.get(keyOf(key));
  if (e !== undefined && e.type !== 'string') return WRONGTYPE;
  return e;
}

function get(ctx: CommandContext, a: Buffer[]): Reply {
  const e = stringEntry(ctx, a[1]);
  if (e instanceof ErrorReply) return e;
  return e === undefined ? null : (e.data as Buffer);
}

function set(ctx: CommandContext, a: Buffer[]): Reply {
  let nx = false;
  let xx = false;
  let withGet = false;
  let keepTtl = false;
  let expireKind: 'ex' | 'px' | 'exat' | 'pxat' | null = null;
  let expireArg: Buffer | null = null;
  for (let i = 3; i < a.length; i++) {
    const opt = lower(a[i]);
    const hasNext = i + 1 < a.length;
    if (opt === 'nx' && !xx) nx = true;
    else if (opt === 'xx' && !nx) xx = true;
    else if (opt === 'get') withGet = true;
    else if (opt === 'keepttl' && expireKind === null) keepTtl = true;
    else if ((opt === 'ex' || opt === 'px' || opt === 'exat' || opt === 'pxat') && !keepTtl && expireKind === null && hasNext) {
      expireKind = opt;
      expireArg = a[++i];
    } else return SYNTAX;
  }
  let expireAt = 0;
  if (expireKind !== null) {
    const v = parseInt64(expireArg as Buffer);
    if (v === null) return NOT_INTEGER;
    const ms = expireKind === 'ex' || expireKind === 'exat' ? v * 1000n : v;
    const at = expireKind === 'ex' || expireKind === 'px' ? ms + BigInt(ctx.db.ks.now()) : ms;
    if (v <= 0n || !inInt64(ms) || !inInt64(at)) return new ErrorReply("ERR invalid expire time in 'set' command");
    expireAt = Number(at);
  }
  const k = keyOf(a[1]);
  const old = ctx.db.ks.get(k);
  if (withGet && old !== undefined && old.type !== 'string') return WRONGTYPE;
  const oldValue = old?.type === 'string' ? old.data : null;
  if ((nx && old !== undefined) || (xx && old === undefined)) return withGet ? oldValue : null;
  if (keepTtl) ctx.db.mutate({ op: Op.SetKeepTtl, args: [a[1], a[2]] });
  else ctx.db.mutate({ op: Op.Set, args: [a[1], a[2], num(expireAt)] });
  return withGet ? oldValue : OK;
}

function getset(ctx: CommandContext, a: Buffer[]): Reply {
  const e = stringEntry(ctx, a[1]);
  if (e instanceof ErrorReply) return e;
  const old = e === undefined ? null : (e.data as Buffer);
  ctx.db.mutate({ op: Op.Set, args: [a[1], a[2], num(0)] });
  return old;
}

function mget(ctx: CommandContext, a: Buffer[]): Reply {
  const out: Reply[] = [];
  for (let i = 1; i < a.length; i++) {
    const e = ctx.db.ks.get(keyOf(a[i]));
    out.push(e?.type === 'string' ? e.data : null);
  }
  return out;
}

function mset(ctx: CommandContext, a: Buffer[]): Reply {
  if (a.length % 2 === 0) return arityError('mset');
  ctx.db.mutate({ op: Op.MSet, args: a.slice(1) });
  return OK;
}

function incrBy(ctx: CommandContext, key: Buffer, by: bigint): Reply {
  const e = stringEntry(ctx, key);
  if (e instanceof ErrorReply) return e;
  let current = 0n;
  if (e !== undefined) {
    const v = (e.data as Buffer).length <= 20 ? parseInt64(e.data as Buffer) : null;
    if (v === null) return NOT_INTEGER;
    current = v;
  }
  const next = current + by;
  if (!inInt64(next)) return new ErrorReply('ERR increment or decrement would overflow');
  ctx.db.mutate({ op: Op.SetKeepTtl, args: [key, Buffer.from(next.toString(), 'latin1')] });
  return next;
}

function incrByArg(ctx: CommandContext, a: Buffer[], sign: 1n | -1n): Reply {
  const by = parseInt64(a[2]);
  if (by === null) return NOT_INTEGER;
  if (sign === -1n && by === -(2n ** 63n)) return new ErrorReply('ERR decrement would overflow');
  return incrBy(ctx, a[1], by * sign);
}

function append(ctx: CommandContext, a: Buffer[]): Reply {
  const e = stringEntry(ctx, a[1]);
  if (e instanceof ErrorReply) return e;
  const length = (e === undefined ? 0 : (e.data as Buffer).length) + a[2].length;
  if (length > MAX_STRING) return new ErrorReply('ERR string exceeds maximum allowed size (proto-max-bulk-len)');
  return ctx.db.mutate({ op: Op.Append, args: [a[1], a[2]] }) as number;
}

function strlen(ctx: CommandContext, a: Buffer[]): Reply {
  const e = stringEntry(ctx, a[1]);
  if (e instanceof ErrorReply) return e;
  return e === undefined ? 0 : (e.data as Buffer).length;
}

export const stringCommands: CommandSpec[] = [
  cmd('get', 2, 'readonly fast', [1, 1, 1], get),
  cmd('set', -3, 'write denyoom', [1, 1, 1], set),
  cmd('getset', 3, 'write denyoom fast', [1, 1, 1], getset),
  cmd('mget', -2, 'readonly fast', [1, -1, 1], mget),
  cmd('mset', -3, 'write denyoom', [1, -1, 2], mset),
  cmd('incr', 2, 'write denyoom fast', [1, 1, 1], (ctx, a) => incrBy(ctx, a[1], 1n)),
  cmd('decr', 2, 'write denyoom fast', [1, 1, 1], (ctx, a) => incrBy(ctx, a[1], -1n)),
  cmd('incrby', 3, 'write denyoom fast', [1, 1, 1], (ctx, a) => incrByArg(ctx, a, 1n)),
  cmd('decrby', 3, 'write denyoom fast', [1, 1, 1], (ctx, a) => incrByArg(ctx, a, -1n)),
  cmd('append', 3, 'write denyoom', [1, 1, 1], append),
  cmd('strlen', 2, 'readonly fast', [1, 1, 1], strlen),
];
