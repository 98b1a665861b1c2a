import type { Database } from '../database.ts';
import { ErrorReply, type Reply } from '../resp/writer.ts';

/** What a command sees of its client connection. */
export interface ClientState {
  /** Set by QUIT: the connection closes after this reply. */
  closeAfterReply: boolean;
  /** Connection id (CLIENT ID). */
  readonly id: number;
  /** CLIENT SETNAME. */
  name: string;
  /** True while EXEC runs the queued commands: blocking commands answer at once. */
  inExec: boolean;
  /** Transaction state: MULTI/EXEC/DISCARD/WATCH (commands/transactions.ts). */
  readonly tx: TransactionState;
  /** Pub/sub: the channel and pattern subscriptions of this client. */
  readonly pubsub: PubSubState;
  /** Send a reply that no command of this client asked for (a pub/sub message), in order with its replies. */
  deliver(reply: Reply): void;
}

export interface TransactionState {
  /** Between MULTI and EXEC/DISCARD. */
  active: boolean;
  /** A command failed to queue: EXEC answers EXECABORT. */
  failed: boolean;
  /** Queued commands (arguments copied: parser buffers are views of socket chunks). */
  queued: { spec: CommandSpec; args: Buffer[] }[];
  /** Bytes the queue holds (reported to the connection's memory budget). */
  queuedBytes: number;
  /** WATCHed keys and their versions when watched; existed: the key was live then. */
  watched: Map<string, { version: number; existed: boolean }>;
}

export interface PubSubState {
  channels: Set<string>;
  patterns: Set<string>;
}

/**
 * A blocking command (BLPOP...) that found nothing: the connection waits on
 * `keys` (in FIFO order with other waiters) and runs the command again when
 * one of them changes; after `timeoutMs` (0 = never) it answers `onTimeout`.
 */
export class BlockReply {
  constructor(
    readonly keys: string[],
    readonly timeoutMs: number,
    readonly onTimeout: Reply,
  ) {
    blockReplies++;
  }
}

let blockReplies = 0;

/**
 * BlockReplies made so far. A command that made none did not block: the
 * connection compares this before and after each command instead of an
 * `instanceof` per reply (a generic InstanceOf builtin call on the hot path:
 * an imported class is not a constant to the optimizing compiler).
 */
export function blockRepliesMade(): number {
  return blockReplies;
}

/** Server-wide facts for INFO and CONFIG. */
export interface ServerInfo {
  startedAt: number;
  port: number;
  appendfsync: string;
  connectedClients: () => number;
  blockedClients: () => number;
  stats: () => Record<string, number>;
  /** Channels and patterns of every client (PUBLISH). */
  pubsub: PubSubHub;
}

/** The server's pub/sub registry (see commands/pubsub.ts). */
export interface PubSubHub {
  subscribe(client: ClientState, channel: string): void;
  unsubscribe(client: ClientState, channel: string): void;
  psubscribe(client: ClientState, pattern: string): void;
  punsubscribe(client: ClientState, pattern: string): void;
  publish(channel: Buffer, message: Buffer): number;
  channelNames(): IterableIterator<string>;
  subscribers(channel: string): number;
  patternCount(): number;
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
  /** Allowed while the client is subscribed (RESP2 subscribed mode). */
  pubsubOk: boolean;
  /** Runs at once even inside MULTI (EXEC, DISCARD, MULTI, WATCH, QUIT, RESET). */
  noQueue: boolean;
  run(ctx: CommandContext, args: Buffer[]): Reply | BlockReply;
}

export const WRONGTYPE = new ErrorReply('WRONGTYPE Operation against a key holding the wrong kind of value');
export const NOT_INTEGER = new ErrorReply('ERR value is not an integer or out of range');
export const NOT_FLOAT = new ErrorReply('ERR value is not a valid float');
export const SYNTAX = new ErrorReply('ERR syntax error');
export const NOT_POSITIVE = new ErrorReply('ERR value is out of range, must be positive');

export const arityError = (name: string) => new ErrorReply(`ERR wrong number of arguments for '${name}' command`);

const PUBSUB_OK = new Set(['subscribe', 'unsubscribe', 'psubscribe', 'punsubscribe', 'ping', 'quit', 'reset']);
const NO_QUEUE = new Set(['exec', 'discard', 'multi', 'watch', 'quit', 'reset']);

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
    pubsubOk: PUBSUB_OK.has(name),
    noQueue: NO_QUEUE.has(name),
    run,
  };
}
