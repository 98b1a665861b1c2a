import { ErrorReply, type Reply } from '../resp/writer.ts';
import { hashCommands } from './hashes.ts';
import { keyCommands } from './keys.ts';
import { listCommands } from './lists.ts';
import { serverCommands } from './server.ts';
import { setCommands } from './sets.ts';
import { stringCommands } from './strings.ts';
import { arityError, type CommandContext, type CommandSpec } from './types.ts';
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

/**
 * Validate then handle: look the command up, check arity, refuse writes the
 * log cannot take (failed log, full volume), then run it.
 */
export function dispatch(ctx: CommandContext, args: Buffer[]): Reply {
  const name = args[0].toString('latin1').toLowerCase();
  const spec = table.get(name);
  if (spec === undefined) return unknownCommand(args);
  if ((spec.arity > 0 && args.length !== spec.arity) || args.length < -spec.arity) return arityError(spec.name);
  if (spec.isWrite) {
    const failed = ctx.db.writer.failed;
    if (failed) {
      return new ErrorReply(
        `MISCONF Errors writing to the volume, commands that may modify the data set are disabled: ${failed.message}`,
      );
    }
    if (spec.denyOom && !ctx.db.writer.hasRoomFor(estimateBytes(args))) {
      return VOLUME_FULL;
    }
  }
  return spec.run(ctx, args);
}

export function commandTable(): ReadonlyMap<string, CommandSpec> {
  return table;
}
