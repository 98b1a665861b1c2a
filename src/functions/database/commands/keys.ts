import { Op, num } from '../store/mutations.ts';
import { globMatch } from '../store/glob.ts';
import { ErrorReply, OK, SimpleString, type Reply } from '../resp/writer.ts';
import { bufOf, inInt64, keyOf, lower, parseInt64 } from './args.ts';
import { NOT_INTEGER, SYNTAX, cmd, type CommandContext, type CommandSpec } from './types.ts';

function del(ctx: CommandContext, a: Buffer[]): Reply {
  const live = a.slice(1).filter((k) => ctx.db.ks.get(keyOf(k)) !== undefined);
  return live.length === 0 ? 0 : (ctx.db.mutate({ op: Op.Del, args: live }) as number);
}

function exists(ctx: CommandContext, a: Buffer[]): Reply {
  let n = 0;
  for (let i = 1; i < a.length; i++) if (ctx.db.ks.get(keyOf(a[i])) !== undefined) n++;
  return n;
}

function expireGeneric(ctx: CommandContext, a: Buffer[], unitMs: 1n | 1000n, name: string, absolute = false): Reply {
  let nx = false;
  let xx = false;
  let gt = false;
  let lt = false;
  for (let i = 3; i < a.length; i++) {
    const opt = lower(a[i]);
    if (opt === 'nx') nx = true;
    else if (opt === 'xx') xx = true;
    else if (opt === 'gt') gt = true;
    else if (opt === 'lt') lt = true;
    else return new ErrorReply(`ERR Unsupported option ${a[i].toString('latin1')}`);
  }
  if (nx && (xx || gt || lt)) return new ErrorReply('ERR NX and XX, GT or LT options at the same time are not compatible');
  if (gt && lt) return new ErrorReply('ERR GT and LT options at the same time are not compatible');
  const v = parseInt64(a[2]);
  if (v === null) return NOT_INTEGER;
  const ms = v * unitMs;
  const at = absolute ? ms : ms + BigInt(ctx.db.ks.now());
  if (!inInt64(ms) || !inInt64(at)) return new ErrorReply(`ERR invalid expire time in '${name}' command`);
  const k = keyOf(a[1]);
  const e = ctx.db.ks.get(k);
  if (e === undefined) return 0;
  const when = Number(at);
  const current = e.expireAt === 0 ? Infinity : e.expireAt;
  if ((nx && e.expireAt !== 0) || (xx && e.expireAt === 0) || (gt && !(when > current)) || (lt && !(when < current))) {
    return 0;
  }
  // A time already past deletes the key, as Redis does (and logs a DEL).
  if (when <= ctx.db.ks.now()) ctx.db.mutate({ op: Op.Del, args: [a[1]] });
  else ctx.db.mutate({ op: Op.PExpireAt, args: [a[1], num(when)] });
  return 1;
}

function ttl(ctx: CommandContext, a: Buffer[], inMs: boolean): Reply {
  const e = ctx.db.ks.get(keyOf(a[1]));
  if (e === undefined) return -2;
  if (e.expireAt === 0) return -1;
  const left = Math.max(0, e.expireAt - ctx.db.ks.now());
  return inMs ? left : Math.floor((left + 500) / 1000);
}

function persist(ctx: CommandContext, a: Buffer[]): Reply {
  const e = ctx.db.ks.get(keyOf(a[1]));
  if (e === undefined || e.expireAt === 0) return 0;
  return ctx.db.mutate({ op: Op.Persist, args: [a[1]] }) as number;
}

function type(ctx: CommandContext, a: Buffer[]): Reply {
  const e = ctx.db.ks.get(keyOf(a[1]));
  return new SimpleString(e === undefined ? 'none' : e.type);
}

function rename(ctx: CommandContext, a: Buffer[]): Reply {
  if (ctx.db.ks.get(keyOf(a[1])) === undefined) return new ErrorReply('ERR no such key');
  if (!a[1].equals(a[2])) ctx.db.mutate({ op: Op.Rename, args: [a[1], a[2]] });
  return OK;
}

function keys(ctx: CommandContext, a: Buffer[]): Reply {
  const pattern = keyOf(a[1]);
  const all = pattern === '*';
  const out: Reply[] = [];
  for (const [k, e] of ctx.db.ks.entries()) {
    if (ctx.db.ks.isLive(e) && (all || globMatch(pattern, k))) out.push(bufOf(k));
  }
  return out;
}

function scan(ctx: CommandContext, a: Buffer[]): Reply {
  const cursorText = a[1].toString('latin1');
  if (!/^\d{1,20}$/.test(cursorText) || BigInt(cursorText) >= 2n ** 64n) return new ErrorReply('ERR invalid cursor');
  const cursor = Number(cursorText);
  let pattern: string | null = null;
  let count = 10;
  let typeFilter: string | null = null;
  for (let i = 2; i < a.length; i++) {
    const opt = lower(a[i]);
    if (i + 1 >= a.length) return SYNTAX;
    if (opt === 'match') pattern = keyOf(a[++i]);
    else if (opt === 'count') {
      const c = parseInt64(a[++i]);
      if (c === null) return NOT_INTEGER;
      if (c < 1n) return SYNTAX;
      count = Number(c > 100000n ? 100000n : c);
    } else if (opt === 'type') typeFilter = lower(a[++i]);
    else return SYNTAX;
  }
  const found: Reply[] = [];
  const next = ctx.db.ks.scan(cursor, count, (k, e) => {
    if (pattern !== null && pattern !== '*' && !globMatch(pattern, k)) return;
    if (typeFilter !== null && e.type !== typeFilter) return;
    found.push(bufOf(k));
  });
  return [Buffer.from(String(next), 'latin1'), found];
}

function flushdb(ctx: CommandContext, a: Buffer[]): Reply {
  if (a.length > 2) return SYNTAX;
  if (a.length === 2 && lower(a[1]) !== 'async' && lower(a[1]) !== 'sync') return SYNTAX;
  ctx.db.mutate({ op: Op.FlushDb, args: [] });
  return OK;
}

function expiretime(ctx: CommandContext, a: Buffer[], inMs: boolean): Reply {
  const e = ctx.db.ks.get(keyOf(a[1]));
  if (e === undefined) return -2;
  if (e.expireAt === 0) return -1;
  return inMs ? e.expireAt : Math.floor(e.expireAt / 1000);
}

function renamenx(ctx: CommandContext, a: Buffer[]): Reply {
  if (ctx.db.ks.get(keyOf(a[1])) === undefined) return new ErrorReply('ERR no such key');
  if (ctx.db.ks.get(keyOf(a[2])) !== undefined) return 0;
  ctx.db.mutate({ op: Op.Rename, args: [a[1], a[2]] });
  return 1;
}

export const keyCommands: CommandSpec[] = [
  cmd('unlink', -2, 'write fast', [1, -1, 1], del),
  cmd('expireat', -3, 'write fast', [1, 1, 1], (ctx, a) => expireGeneric(ctx, a, 1000n, 'expireat', true)),
  cmd('pexpireat', -3, 'write fast', [1, 1, 1], (ctx, a) => expireGeneric(ctx, a, 1n, 'pexpireat', true)),
  cmd('expiretime', 2, 'readonly fast', [1, 1, 1], (ctx, a) => expiretime(ctx, a, false)),
  cmd('pexpiretime', 2, 'readonly fast', [1, 1, 1], (ctx, a) => expiretime(ctx, a, true)),
  cmd('renamenx', 3, 'write fast', [1, 2, 1], renamenx),
  cmd('touch', -2, 'readonly fast', [1, -1, 1], exists),
  cmd('del', -2, 'write', [1, -1, 1], del),
  cmd('exists', -2, 'readonly fast', [1, -1, 1], exists),
  cmd('expire', -3, 'write fast', [1, 1, 1], (ctx, a) => expireGeneric(ctx, a, 1000n, 'expire')),
  cmd('pexpire', -3, 'write fast', [1, 1, 1], (ctx, a) => expireGeneric(ctx, a, 1n, 'pexpire')),
  cmd('ttl', 2, 'readonly fast', [1, 1, 1], (ctx, a) => ttl(ctx, a, false)),
  cmd('pttl', 2, 'readonly fast', [1, 1, 1], (ctx, a) => ttl(ctx, a, true)),
  cmd('persist', 2, 'write fast', [1, 1, 1], persist),
  cmd('type', 2, 'readonly fast', [1, 1, 1], type),
  cmd('rename', 3, 'write', [1, 2, 1], rename),
  cmd('keys', 2, 'readonly', [0, 0, 0], keys),
  cmd('scan', -2, 'readonly', [0, 0, 0], scan),
  cmd('dbsize', 1, 'readonly fast', [0, 0, 0], (ctx) => ctx.db.ks.size),
  cmd('flushdb', -1, 'write', [0, 0, 0], flushdb),
];
