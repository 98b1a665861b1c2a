/**
 * Pub/sub: SUBSCRIBE/UNSUBSCRIBE/PSUBSCRIBE/PUNSUBSCRIBE/PUBLISH/PUBSUB with
 * RESP2 semantics. Messages are not persisted and not logged. A subscriber's
 * messages go through its connection's reply queue, so one that never reads
 * is closed past the output limit like any other client; each client may
 * hold at most MAX_CHANNELS channels and MAX_PATTERNS patterns (every
 * PUBLISH matches every pattern, so patterns are the scarcer resource).
 */
import { globMatch } from '../store/glob.ts';
import { ErrorReply, ReplySequence, type Reply } from '../resp/writer.ts';
import { bufOf, keyOf, lower } from './args.ts';
import { arityError, cmd, type ClientState, type CommandContext, type CommandSpec, type PubSubHub } from './types.ts';

export const MAX_CHANNELS = 4096;
export const MAX_PATTERNS = 256;

const MESSAGE = Buffer.from('message');
const PMESSAGE = Buffer.from('pmessage');
const SUBSCRIBE = Buffer.from('subscribe');
const UNSUBSCRIBE = Buffer.from('unsubscribe');
const PSUBSCRIBE = Buffer.from('psubscribe');
const PUNSUBSCRIBE = Buffer.from('punsubscribe');

export class Hub implements PubSubHub {
  private readonly channels = new Map<string, Set<ClientState>>();
  private readonly patterns = new Map<string, Set<ClientState>>();

  subscribe(client: ClientState, channel: string): void {
    let set = this.channels.get(channel);
    if (set === undefined) this.channels.set(channel, (set = new Set()));
    set.add(client);
    client.pubsub.channels.add(channel);
  }

  unsubscribe(client: ClientState, channel: string): void {
    const set = this.channels.get(channel);
    if (set !== undefined && set.delete(client) && set.size === 0) this.channels.delete(channel);
    client.pubsub.channels.delete(channel);
  }

  psubscribe(client: ClientState, pattern: string): void {
    let set = this.patterns.get(pattern);
    if (set === undefined) this.patterns.set(pattern, (set = new Set()));
    set.add(client);
    client.pubsub.patterns.add(pattern);
  }

  punsubscribe(client: ClientState, pattern: string): void {
    const set = this.patterns.get(pattern);
    if (set !== undefined && set.delete(client) && set.size === 0) this.patterns.delete(pattern);
    client.pubsub.patterns.delete(pattern);
  }

  /** Deliver to channel subscribers, then to matching patterns (Redis's order); returns the receivers. */
  publish(channel: Buffer, message: Buffer): number {
    const name = keyOf(channel);
    let n = 0;
    const subs = this.channels.get(name);
    if (subs !== undefined) {
      const msg: Reply = [MESSAGE, channel, message];
      for (const c of subs) {
        c.deliver(msg);
        n++;
      }
    }
    for (const [pattern, clients] of this.patterns) {
      if (!globMatch(pattern, name)) continue;
      const msg: Reply = [PMESSAGE, bufOf(pattern), channel, message];
      for (const c of clients) {
        c.deliver(msg);
        n++;
      }
    }
    return n;
  }

  channelNames(): IterableIterator<string> {
    return this.channels.keys();
  }

  subscribers(channel: string): number {
    return this.channels.get(channel)?.size ?? 0;
  }

  patternCount(): number {
    return this.patterns.size;
  }
}

const count = (c: ClientState) => c.pubsub.channels.size + c.pubsub.patterns.size;

function subscribe(ctx: CommandContext, a: Buffer[], pattern: boolean): Reply {
  const c = ctx.client;
  const hub = ctx.server.pubsub;
  const out: Reply[] = [];
  for (let i = 1; i < a.length; i++) {
    const name = keyOf(a[i]);
    const mine = pattern ? c.pubsub.patterns : c.pubsub.channels;
    if (!mine.has(name)) {
      const max = pattern ? MAX_PATTERNS : MAX_CHANNELS;
      if (mine.size >= max) {
        out.push(new ErrorReply(`ERR too many ${pattern ? 'patterns' : 'channels'} subscribed (limit ${max} per client)`));
        continue;
      }
      if (pattern) hub.psubscribe(c, name);
      else hub.subscribe(c, name);
    }
    out.push([pattern ? PSUBSCRIBE : SUBSCRIBE, a[i], count(c)]);
  }
  return new ReplySequence(out);
}

/** Unsubscribe from the given names, or from all when none is given. */
export function unsubscribe(ctx: CommandContext, a: Buffer[], pattern: boolean): Reply {
  const c = ctx.client;
  const hub = ctx.server.pubsub;
  const mine = pattern ? c.pubsub.patterns : c.pubsub.channels;
  const kind = pattern ? PUNSUBSCRIBE : UNSUBSCRIBE;
  const names = a.length > 1 ? a.slice(1).map(keyOf) : [...mine];
  if (names.length === 0) return [kind, null, count(c)];
  const out: Reply[] = [];
  for (const name of names) {
    if (pattern) hub.punsubscribe(c, name);
    else hub.unsubscribe(c, name);
    out.push([kind, bufOf(name), count(c)]);
  }
  return new ReplySequence(out);
}

function publish(ctx: CommandContext, a: Buffer[]): Reply {
  return ctx.server.pubsub.publish(a[1], a[2]);
}

function pubsubCmd(ctx: CommandContext, a: Buffer[]): Reply {
  const sub = lower(a[1]);
  const hub = ctx.server.pubsub;
  if (sub === 'channels') {
    if (a.length > 3) return arityError('pubsub|channels');
    const out: Reply[] = [];
    for (const ch of hub.channelNames()) if (a.length === 2 || globMatch(keyOf(a[2]), ch)) out.push(bufOf(ch));
    return out;
  }
  if (sub === 'numsub') {
    const out: Reply[] = [];
    for (let i = 2; i < a.length; i++) out.push(a[i], hub.subscribers(keyOf(a[i])));
    return out;
  }
  if (sub === 'numpat') return a.length === 2 ? hub.patternCount() : arityError('pubsub|numpat');
  return new ErrorReply(`ERR unknown subcommand '${a[1].toString('latin1')}'. Try PUBSUB HELP.`);
}

export const pubsubCommands: CommandSpec[] = [
  cmd('subscribe', -2, 'pubsub noscript loading stale', [0, 0, 0], (ctx, a) => subscribe(ctx, a, false)),
  cmd('unsubscribe', -1, 'pubsub noscript loading stale', [0, 0, 0], (ctx, a) => unsubscribe(ctx, a, false)),
  cmd('psubscribe', -2, 'pubsub noscript loading stale', [0, 0, 0], (ctx, a) => subscribe(ctx, a, true)),
  cmd('punsubscribe', -1, 'pubsub noscript loading stale', [0, 0, 0], (ctx, a) => unsubscribe(ctx, a, true)),
  cmd('publish', 3, 'pubsub loading stale fast', [0, 0, 0], publish),
  cmd('pubsub', -2, 'pubsub loading stale', [0, 0, 0], pubsubCmd),
];
