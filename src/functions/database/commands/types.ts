import type { Database } from '../database.ts';
import { ErrorReply, type Reply } from '../resp/writer.ts';

/** What a command sees of its client connection. */
export interface ClientState {
  /** Set by QUIT: the connection closes after this reply. */
  closeAfterReply: boolean;
}

/** Server-wide facts for INFO and CONFIG. */
export interface ServerInfo {
  startedAt: number;
  port: number;
  appendfsync: string;
  connectedClients: () => number;
  stats: () => Record<string, number>;
}

export interface CommandContext {
  db: Database;
  client: ClientState;
  server: ServerInfo;
}

export interface CommandSpec {
  /** Lower-case name as Redis reports it. */
  name: string;
  /** Redis arity: N = exactly N args (with the name), -N = at least N. */
  arity: number;
  /** Redis flags for COMMAND; 'write' commands are refused when the log failed, 'denyoom' ones when full. */
  flags: readonly string[];
  firstKey: number;
  lastKey: number;
  step: number;
  /** Derived from flags once, so dispatch does no string search per command. */
  isWrite: boolean;
  denyOom: boolean;
  run(ctx: CommandContext, args: Buffer[]): Reply;
}

export const WRONGTYPE = new ErrorReply('WRONGTYPE Operation against a key holding the wrong kind of value');
export const NOT_INTEGER = new ErrorReply('ERR value is not an integer or out of range');
export const NOT_FLOAT = new ErrorReply('ERR value is not a valid float');
export const SYNTAX = new ErrorReply('ERR syntax error');
export const NOT_POSITIVE = new ErrorReply('ERR value is out of range, must be positive');

export const arityError = (name: string) => new ErrorReply(`ERR wrong number of arguments for '${name}' command`);

/** Shorthand for a command table entry. */
export function cmd(
  name: string,
  arity: number,
  flags: string,
  keys: [number, number, number],
  run: CommandSpec['run'],
): CommandSpec {
  const list = flags ? flags.split(' ') : [];
  return {
    name,
    arity,
    flags: list,
    firstKey: keys[0],
    lastKey: keys[1],
    step: keys[2],
    isWrite: list.includes('write'),
    denyOom: list.includes('denyoom'),
    run,
  };
}
