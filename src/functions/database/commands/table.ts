import { ErrorReply, type Reply } from '../resp/writer.ts';
import { respErrorOf } from '../resp/errors.ts';
import { hashCommands } from './hashes.ts';
import { keyCommands } from './keys.ts';
import { listCommands } from './lists.ts';
import { serverCommands } from './server.ts';
import { setCommands } from './sets.ts';
import { stringCommands } from './strings.ts';
import { pubsubCommands } from './pubsub.ts';
import { queueCommand, transactionCommands } from './transactions.ts';
import { BlockReply, arityError, type CommandContext, type CommandSpec } from './types.ts';
import { zsetCommands } from './zsets.ts';

const table = new Map<string, CommandSpec>();
for (const c of [
  ...stringCommands,
  ...keyCommands,
  ...listCommands,
  ...hashCommands,
  ...setCommands,
  ...zsetCommands,
  ...serverCommands(() => table),
  ...pubsubCommands,
  ...transactionCommands((ctx, spec, args) => execute(ctx, spec, args)),
]) {
  table.set(c.name, c);
}

/** Redis shows at most 128 chars of a name and replaces newlines so the error stays one line. */
function quoteForError(b: Buffer, max: number): string {
  return b.toString('latin1').slice(0, max).replace(/[\r\n]/g, ' ');
}

function unknownCommand(args: Buffer[]): ErrorReply {
  let rest = '';
  for (let i = 1; i < args.length && rest.length < 128; i++) {
    const room = 128 - rest.length;
    rest += `'${quoteForError(args[i], room)}' `;
  }
  return new ErrorReply(`ERR unknown command '${quoteForError(args[0], 128)}', with args beginning with: ${rest}`);
}

const VOLUME_FULL = new ErrorReply('ERR volume full: command not allowed when the data set would not fit on the volume (OOM)');

/** A rough upper bound of the bytes a write adds to the log, for admission before running it. */
const estimateBytes = (args: Buffer[]) => args.reduce((n, a) => n + a.length + 8, 64);

/** Hash of a command name as its lower-case bytes (ASCII letters folded), for lookup without decoding a string. */
function nameHash(b: Buffer): number {
  let h = b.length;
  for (let i = 0; i < b.length; i++) {
    let c = b[i];
    if (c >= 65 && c <= 90) c |= 0x20;
    h = (Math.imul(h, 31) + c) | 0;
  }
  return h;
}

const byHash = new Map<number, { spec: CommandSpec; name: Buffer }[]>();
for (const spec of table.values()) {
  const name = Buffer.from(spec.name, 'latin1');
  const h = nameHash(name);
  const list = byHash.get(h);
  if (list === undefined) byHash.set(h, [{ spec, name }]);
  else list.push({ spec, name });
}

/** Case-insensitive match of the request's name bytes against a lower-case name. */
function sameName(b: Buffer, name: Buffer): boolean {
  if (b.length !== name.length) return false;
  for (let i = 0; i < b.length; i++) {
    let c = b[i];
    if (c >= 65 && c <= 90) c |= 0x20;
    if (c !== name[i]) return false;
  }
  return true;
}

/**
 * The last name looked up and its spec. The parser hands the same Buffer (its
 * copy of the last name) for a repeated command, so a pipeline of one command
 * hashes its name once. Buffers given to commands are never written, so the
 * same object holds the same bytes.
 */
let lastName: Buffer | null = null;
let lastSpec: CommandSpec | undefined;

/** The spec named by these bytes, found without allocating (every command runs this). */
function findSpec(b: Buffer): CommandSpec | undefined {
  if (b === lastName) return lastSpec;
  const spec = findSpecByHash(b);
  lastName = b;
  lastSpec = spec;
  return spec;
}

function findSpecByHash(b: Buffer): CommandSpec | undefined {
  if (b.length > 32) return undefined;
  const list = byHash.get(nameHash(b));
  if (list === undefined) return undefined;
  for (const e of list) if (sameName(b, e.name)) return e.spec;
  return undefined;
}

/** The command named by args[0] with its arity checked, or the error Redis answers. */
export function lookup(args: Buffer[]): CommandSpec | ErrorReply {
  const spec = findSpec(args[0]);
  if (spec === undefined) return unknownCommand(args);
  if ((spec.arity > 0 && args.length !== spec.arity) || args.length < -spec.arity) return arityError(spec.name);
  return spec;
}

/** Why a write may not run now (failed log, full volume), or null. */
function refusal(ctx: CommandContext, spec: CommandSpec, args: Buffer[]): ErrorReply | null {
  if (!spec.isWrite) return null;
  const failed = ctx.db.writer.failed;
  if (failed) return respErrorOf(failed, true);
  if (spec.denyOom && !ctx.db.writer.hasRoomFor(estimateBytes(args))) return VOLUME_FULL;
  return null;
}

/**
 * The wait of a write refused for room while a compaction runs that may free
 * it, or while the log's queue is backlogged: the client blocks (its parser stops, which is the backpressure) and is
 * retried after the compaction, and after ROOM_WAIT_MS it gets the refusal.
 */
export const LOG_ROOM_KEY = '\0storvisor:log-room';
const ROOM_WAIT_MS = 30_000;

/** Run a looked-up command now (refusals checked; a write refused for room waits for a compaction under way). */
export function execute(ctx: CommandContext, spec: CommandSpec, args: Buffer[]): Reply | BlockReply {
  const refused = refusal(ctx, spec, args);
  if (refused === VOLUME_FULL && ctx.db.writer.roomMayCome) return new BlockReply([LOG_ROOM_KEY], ROOM_WAIT_MS, VOLUME_FULL);
  return refused ?? spec.run(ctx, args);
}

const subscribedOnly = (name: string) =>
  new ErrorReply(`ERR Can't execute '${name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context`);

/**
 * Validate then handle: look the command up, check arity, apply the
 * subscribed-mode and MULTI rules (queue instead of run), refuse writes the
 * log cannot take (failed log, full volume), then run it. A BlockReply means
 * the client must wait (BLPOP and friends).
 */
export function dispatch(ctx: CommandContext, args: Buffer[]): Reply | BlockReply {
  // lookup() inline: no `instanceof ErrorReply` per command (a generic builtin call).
  const spec = findSpec(args[0]);
  const c = ctx.client;
  if (spec === undefined || (spec.arity > 0 && args.length !== spec.arity) || args.length < -spec.arity) {
    if (c.tx.active) c.tx.failed = true;
    return spec === undefined ? unknownCommand(args) : arityError(spec.name);
  }
  if ((c.pubsub.channels.size > 0 || c.pubsub.patterns.size > 0) && !spec.pubsubOk) return subscribedOnly(spec.name);
  if (c.tx.active && !spec.noQueue) {
    const refused = refusal(ctx, spec, args);
    if (refused !== null) {
      c.tx.failed = true;
      return refused;
    }
    return queueCommand(ctx, spec, args);
  }
  return execute(ctx, spec, args);
}

export function commandTable(): ReadonlyMap<string, CommandSpec> {
  return table;
}
