/**
 * MULTI/EXEC/DISCARD/WATCH/UNWATCH with Redis semantics: commands between
 * MULTI and EXEC are checked (name, arity, refusals) and queued; a command
 * that fails to queue makes EXEC answer EXECABORT; EXEC answers a null array
 * when a WATCHed key changed (or expired) since WATCH. EXEC runs the queue as
 * one transaction of the database: its mutations reach the log as one record.
 */
import { ErrorReply, NULL_ARRAY, OK, SimpleString, type Reply } from '../resp/writer.ts';
import { respErrorOf } from '../resp/errors.ts';
import { keyOf } from './args.ts';
import { BlockReply, cmd, type CommandContext, type CommandSpec } from './types.ts';

/** Bytes one queued command may hold beyond its arguments (array slot, Buffer object). */
const QUEUED_OVERHEAD = 96;
/** Bytes the MULTI queue of one client may hold (Redis's client query buffer limit for one command is 1 GiB; a guest has 256 MiB). */
export const MULTI_QUEUE_LIMIT = 64 << 20;
/** Keys one client may WATCH at once (each holds a slot in the database's version map). */
export const MAX_WATCHED_KEYS = 65536;

const QUEUED = new SimpleString('QUEUED');
const EXECABORT = new ErrorReply('EXECABORT Transaction discarded because of previous errors.');

/** Queue a checked command inside MULTI (the caller made sure it may be queued). */
export function queueCommand(ctx: CommandContext, spec: CommandSpec, args: Buffer[]): Reply {
  const tx = ctx.client.tx;
  let bytes = QUEUED_OVERHEAD;
  for (const a of args) bytes += a.length + 64;
  if (tx.queuedBytes + bytes > MULTI_QUEUE_LIMIT) {
    tx.failed = true;
    return new ErrorReply(`ERR MULTI queue over its limit of ${MULTI_QUEUE_LIMIT} bytes`);
  }
  // Copy: parser arguments are views of socket chunks, which must not be pinned.
  tx.queued.push({ spec, args: args.map((a) => Buffer.from(a)) });
  tx.queuedBytes += bytes;
  return QUEUED;
}

/** Leave MULTI and drop the queue. */
export function resetTransaction(ctx: CommandContext): void {
  const tx = ctx.client.tx;
  tx.active = false;
  tx.failed = false;
  tx.queued = [];
  tx.queuedBytes = 0;
}

export function unwatchAll(ctx: CommandContext): void {
  const tx = ctx.client.tx;
  for (const k of tx.watched.keys()) ctx.db.unwatch(k);
  tx.watched.clear();
}

function multi(ctx: CommandContext): Reply {
  const tx = ctx.client.tx;
  if (tx.active) return new ErrorReply('ERR MULTI calls can not be nested');
  tx.active = true;
  return OK;
}

function discard(ctx: CommandContext): Reply {
  if (!ctx.client.tx.active) return new ErrorReply('ERR DISCARD without MULTI');
  resetTransaction(ctx);
  unwatchAll(ctx);
  return OK;
}

function watch(ctx: CommandContext, a: Buffer[]): Reply {
  const tx = ctx.client.tx;
  if (tx.active) return new ErrorReply('ERR WATCH inside MULTI is not allowed');
  for (let i = 1; i < a.length; i++) {
    const k = keyOf(a[i]);
    if (tx.watched.has(k)) continue;
    if (tx.watched.size >= MAX_WATCHED_KEYS) return new ErrorReply(`ERR too many watched keys (limit ${MAX_WATCHED_KEYS} per client)`);
    const version = ctx.db.watch(k);
    tx.watched.set(k, { version, existed: ctx.db.ks.get(k) !== undefined });
  }
  return OK;
}

function unwatch(ctx: CommandContext): Reply {
  unwatchAll(ctx);
  return OK;
}

/** Did a watched key change since WATCH? A key that was live then and has expired since counts (as in Redis 7). */
function watchedChanged(ctx: CommandContext): boolean {
  for (const [k, w] of ctx.client.tx.watched) {
    if (ctx.db.watchVersion(k) !== w.version) return true;
    if (w.existed && ctx.db.ks.get(k) === undefined) return true;
  }
  return false;
}

/** Runs one command as EXEC does (refusals checked again: the log may have failed since it was queued). */
export type Executor = (ctx: CommandContext, spec: CommandSpec, args: Buffer[]) => Reply | BlockReply;

function exec(ctx: CommandContext, execute: Executor): Reply {
  const tx = ctx.client.tx;
  if (!tx.active) return new ErrorReply('ERR EXEC without MULTI');
  const queued = tx.queued;
  const failed = tx.failed;
  const changed = !failed && watchedChanged(ctx);
  resetTransaction(ctx);
  unwatchAll(ctx);
  if (failed) return EXECABORT;
  if (changed) return NULL_ARRAY;
  ctx.client.inExec = true;
  try {
    return ctx.db.atomically(() => {
      const out: Reply[] = [];
      for (const q of queued) {
        let r: Reply | BlockReply;
        try {
          r = execute(ctx, q.spec, q.args);
        } catch (err) {
          r = respErrorOf(err);
        }
        // Blocking commands inside a transaction answer at once (they return their timeout reply).
        out.push(r instanceof BlockReply ? r.onTimeout : r);
      }
      return out;
    });
  } finally {
    ctx.client.inExec = false;
  }
}

export function transactionCommands(execute: Executor): CommandSpec[] {
  return [
    cmd('multi', 1, 'noscript loading stale fast allow_busy', [0, 0, 0], multi),
    cmd('exec', 1, 'noscript loading stale skip_slowlog', [0, 0, 0], (ctx) => exec(ctx, execute)),
    cmd('discard', 1, 'noscript loading stale fast allow_busy', [0, 0, 0], discard),
    cmd('watch', -2, 'noscript loading stale fast allow_busy', [1, -1, 1], watch),
    cmd('unwatch', 1, 'noscript loading stale fast allow_busy', [0, 0, 0], unwatch),
  ];
}
