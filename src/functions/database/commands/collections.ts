import type { Entry, ValueType } from '../store/keyspace.ts';
import { ErrorReply } from '../resp/writer.ts';
import { keyOf, parseInt64 } from './args.ts';
import { NOT_INTEGER, NOT_POSITIVE, WRONGTYPE, type CommandContext } from './types.ts';

/** The entry at key if it has `type`; undefined if missing; WRONGTYPE otherwise. */
export function typed<T extends ValueType>(
  ctx: CommandContext,
  key: Buffer,
  type: T,
): Extract<Entry, { type: T }> | undefined | ErrorReply {
  const e = ctx.db.ks.get(keyOf(key));
  if (e === undefined) return undefined;
  if (e.type !== type) return WRONGTYPE;
  return e as Extract<Entry, { type: T }>;
}

/** The optional count argument of LPOP/RPOP/SPOP/ZPOPMIN: a non-negative integer. */
export function optionalCount(arg: Buffer | undefined): number | null | ErrorReply {
  if (arg === undefined) return null;
  const v = parseInt64(arg);
  if (v === null) return NOT_INTEGER;
  if (v < 0n) return NOT_POSITIVE;
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}
