import { Op, num } from '../store/mutations.ts';
import type { Entry } from '../store/keyspace.ts';
import { ErrorReply, OK, type Reply } from '../resp/writer.ts';
import { formatLongDouble, inInt64, keyOf, lower, parseFloatArg, parseInt64 } from './args.ts';
import { NOT_FLOAT, NOT_INTEGER, SYNTAX, WRONGTYPE, arityError, cmd, type CommandContext, type CommandSpec } from './types.ts';

/** Redis proto-max-bulk-len: the largest string a command may build. */
const MAX_STRING = 512 * 1024 * 1024;

/** The string entry at key, undefined if missing, or WRONGTYPE. */
export function stringEntry(ctx: CommandContext, key: Buffer): Entry | undefined | ErrorReply {
  const e = ctx.db.ks.get(keyOf(key));
  if (e !== undefined && e.type !== 'string') return WRONGTYPE;
  return e;
}

/**
 * A stored string as a reply. Replies are encoded (copied) as soon as the
 * command returns, and a SET of the same length overwrites a stored string in
 * place (Keyspace.putStringCopy), so the Buffer itself is the reply; inside
 * EXEC the replies wait for the whole transaction, so it is copied.
 */
function lent(ctx: CommandContext, data: Buffer): Buffer {
  return ctx.client.inExec ? Buffer.from(data) : data;
}

function get(ctx: CommandContext, a: Buffer[]): Reply {
  const e = ctx.db.ks.get(keyOf(a[1]));
  if (e === undefined) return null;
  // The type test stringEntry makes, without its `instanceof` on the result.
  return e.type === 'string' ? lent(ctx, e.data) : WRONGTYPE;
}

function set(ctx: CommandContext, a: Buffer[]): Reply {
  // Plain SET key value (the common case): nothing to parse, and the old entry is not
  // looked at here (putString finds it once).
  if (a.length === 3) {
    ctx.db.mutate({ op: Op.Set, args: [a[1], a[2], num(0)], key: keyOf(a[1]) });
    return OK;
  }
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
    const at = expireAtOf(ctx, expireKind, expireArg as Buffer, 'set');
    if (at instanceof ErrorReply) return at;
    expireAt = at;
  }
  const k = keyOf(a[1]);
  const old = ctx.db.ks.get(k);
  if (withGet && old !== undefined && old.type !== 'string') return WRONGTYPE;
  // A copy: the SET below may overwrite the stored Buffer in place.
  const oldValue = withGet && old?.type === 'string' ? Buffer.from(old.data) : null;
  if ((nx && old !== undefined) || (xx && old === undefined)) return withGet ? oldValue : null;
  if (keepTtl) ctx.db.mutate({ op: Op.SetKeepTtl, args: [a[1], a[2]] });
  else ctx.db.mutate({ op: Op.Set, args: [a[1], a[2], num(expireAt)], key: k });
  return withGet ? oldValue : OK;
}

function getset(ctx: CommandContext, a: Buffer[]): Reply {
  const e = stringEntry(ctx, a[1]);
  if (e instanceof ErrorReply) return e;
  // A copy: the SET below may overwrite the stored Buffer in place.
  const old = e === undefined ? null : Buffer.from(e.data as Buffer);
  ctx.db.mutate({ op: Op.Set, args: [a[1], a[2], num(0)] });
  return old;
}

function mget(ctx: CommandContext, a: Buffer[]): Reply {
  const out: Reply[] = [];
  for (let i = 1; i < a.length; i++) {
    const e = ctx.db.ks.get(keyOf(a[i]));
    out.push(e?.type === 'string' ? lent(ctx, e.data) : null);
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

/** The absolute expiry (ms) of an EX/PX/EXAT/PXAT argument, or an error (Redis's getExpireMillisecondsOrReply). */
export function expireAtOf(ctx: CommandContext, kind: string, arg: Buffer, name: string): number | ErrorReply {
  const v = parseInt64(arg);
  if (v === null) return NOT_INTEGER;
  const ms = kind === 'ex' || kind === 'exat' ? v * 1000n : v;
  const at = kind === 'ex' || kind === 'px' ? ms + BigInt(ctx.db.ks.now()) : ms;
  if (v <= 0n || !inInt64(ms) || !inInt64(at)) return new ErrorReply(`ERR invalid expire time in '${name}' command`);
  return Number(at);
}

function setnx(ctx: CommandContext, a: Buffer[]): Reply {
  if (ctx.db.ks.get(keyOf(a[1])) !== undefined) return 0;
  ctx.db.mutate({ op: Op.Set, args: [a[1], a[2], num(0)] });
  return 1;
}

function setex(ctx: CommandContext, a: Buffer[], kind: 'ex' | 'px', name: string): Reply {
  const at = expireAtOf(ctx, kind, a[2], name);
  if (at instanceof ErrorReply) return at;
  ctx.db.mutate({ op: Op.Set, args: [a[1], a[3], num(at)] });
  return OK;
}

function getdel(ctx: CommandContext, a: Buffer[]): Reply {
  const e = stringEntry(ctx, a[1]);
  if (e instanceof ErrorReply) return e;
  if (e === undefined) return null;
  const value = e.data as Buffer;
  ctx.db.mutate({ op: Op.Del, args: [a[1]] });
  return value;
}

function getex(ctx: CommandContext, a: Buffer[]): Reply {
  let kind: string | null = null;
  let arg: Buffer | null = null;
  let persist = false;
  for (let i = 2; i < a.length; i++) {
    const opt = lower(a[i]);
    if ((opt === 'ex' || opt === 'px' || opt === 'exat' || opt === 'pxat') && kind === null && !persist && i + 1 < a.length) {
      kind = opt;
      arg = a[++i];
    } else if (opt === 'persist' && kind === null && !persist) persist = true;
    else return SYNTAX;
  }
  let at = 0;
  if (kind !== null) {
    const v = expireAtOf(ctx, kind, arg as Buffer, 'getex');
    if (v instanceof ErrorReply) return v;
    at = v;
  }
  const e = stringEntry(ctx, a[1]);
  if (e instanceof ErrorReply) return e;
  if (e === undefined) return null;
  const value = lent(ctx, e.data as Buffer);
  if (kind !== null) {
    if (at <= ctx.db.ks.now()) ctx.db.mutate({ op: Op.Del, args: [a[1]] });
    else ctx.db.mutate({ op: Op.PExpireAt, args: [a[1], num(at)] });
  } else if (persist && e.expireAt !== 0) {
    ctx.db.mutate({ op: Op.Persist, args: [a[1]] });
  }
  return value;
}

function msetnx(ctx: CommandContext, a: Buffer[]): Reply {
  if (a.length % 2 === 0) return arityError('msetnx');
  for (let i = 1; i < a.length; i += 2) if (ctx.db.ks.get(keyOf(a[i])) !== undefined) return 0;
  ctx.db.mutate({ op: Op.MSet, args: a.slice(1) });
  return 1;
}

function incrbyfloat(ctx: CommandContext, a: Buffer[]): Reply {
  const e = stringEntry(ctx, a[1]);
  if (e instanceof ErrorReply) return e;
  const by = parseFloatArg(a[2]);
  if (by === null) return NOT_FLOAT;
  let current = 0;
  if (e !== undefined) {
    const v = parseFloatArg(e.data as Buffer);
    if (v === null) return NOT_FLOAT;
    current = v;
  }
  const next = current + by;
  if (!Number.isFinite(next)) return new ErrorReply('ERR increment would produce NaN or Infinity');
  const text = Buffer.from(formatLongDouble(next), 'latin1');
  ctx.db.mutate({ op: Op.SetKeepTtl, args: [a[1], text] });
  return text;
}

function getrange(ctx: CommandContext, a: Buffer[]): Reply {
  const startBig = parseInt64(a[2]);
  const endBig = parseInt64(a[3]);
  if (startBig === null || endBig === null) return NOT_INTEGER;
  const e = stringEntry(ctx, a[1]);
  if (e instanceof ErrorReply) return e;
  const v = e === undefined ? Buffer.alloc(0) : (e.data as Buffer);
  let start = Number(startBig);
  let end = Number(endBig);
  const len = v.length;
  if (start < 0 && end < 0 && start > end) return Buffer.alloc(0);
  if (start < 0) start = len + start;
  if (end < 0) end = len + end;
  if (start < 0) start = 0;
  if (end < 0) end = 0;
  if (end >= len) end = len - 1;
  if (start > end || len === 0) return Buffer.alloc(0);
  return Buffer.from(v.subarray(start, end + 1));
}

function setrange(ctx: CommandContext, a: Buffer[]): Reply {
  const offBig = parseInt64(a[2]);
  if (offBig === null) return NOT_INTEGER;
  if (offBig < 0n) return new ErrorReply('ERR offset is out of range');
  const e = stringEntry(ctx, a[1]);
  if (e instanceof ErrorReply) return e;
  const old = e === undefined ? Buffer.alloc(0) : (e.data as Buffer);
  if (a[3].length === 0) return old.length;
  if (offBig + BigInt(a[3].length) > BigInt(MAX_STRING)) {
    return new ErrorReply('ERR string exceeds maximum allowed size (proto-max-bulk-len)');
  }
  const off = Number(offBig);
  const next = Buffer.alloc(Math.max(old.length, off + a[3].length));
  old.copy(next);
  a[3].copy(next, off);
  ctx.db.mutate({ op: Op.SetKeepTtl, args: [a[1], next] });
  return next.length;
}

export const stringCommands: CommandSpec[] = [
  cmd('setnx', 3, 'write denyoom fast', [1, 1, 1], setnx),
  cmd('setex', 4, 'write denyoom', [1, 1, 1], (ctx, a) => setex(ctx, a, 'ex', 'setex')),
  cmd('psetex', 4, 'write denyoom', [1, 1, 1], (ctx, a) => setex(ctx, a, 'px', 'psetex')),
  cmd('getdel', 2, 'write fast', [1, 1, 1], getdel),
  cmd('getex', -2, 'write fast', [1, 1, 1], getex),
  cmd('msetnx', -3, 'write denyoom', [1, -1, 2], msetnx),
  cmd('incrbyfloat', 3, 'write denyoom fast', [1, 1, 1], incrbyfloat),
  cmd('getrange', 4, 'readonly', [1, 1, 1], getrange),
  cmd('substr', 4, 'readonly', [1, 1, 1], getrange),
  cmd('setrange', 4, 'write denyoom', [1, 1, 1], setrange),
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
