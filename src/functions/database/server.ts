import { TcpService, type ConnectionHandler, type TcpConnection, type TcpServiceLimits, type TcpServiceStats } from '../../net/tcp-service.ts';
import { Hub } from './commands/pubsub.ts';
import { LOG_ROOM_KEY, dispatch, execute, lookup } from './commands/table.ts';
import { unwatchAll } from './commands/transactions.ts';
import { BlockReply, blockRepliesMade, type ClientState, type CommandContext, type CommandSpec, type PubSubState, type ServerInfo, type TransactionState } from './commands/types.ts';
import type { Database } from './database.ts';
import { RespParser } from './resp/parser.ts';
import { ErrorReply, ReplyWriter, markTransient, type Reply, type Slab } from './resp/writer.ts';
import { respErrorOf } from './resp/errors.ts';

/** Stop executing a client's commands while this many reply bytes wait unsent (it is not reading). */
export const OUTPUT_SOFT_LIMIT = 4 << 20;
/**
 * Replies waiting for their write (durable in appendfsync always, written in
 * everysec) count as in flight; beyond this many bytes of them, execution waits for the log.
 */
export const PENDING_REPLY_LIMIT = 16 << 20;
/**
 * Close a client whose queued replies pass this (Redis client-output-buffer-limit
 * normal, which Redis leaves unlimited; a 256 MiB guest cannot). Execution stops
 * at the soft limit, so only one huge reply (over ~70 MiB) can get here.
 */
export const OUTPUT_HARD_LIMIT = 96 << 20;
/**
 * One command's arguments (Redis client-query-buffer-limit is 1 GiB; a guest
 * heap is 256 MiB, and request Buffers live outside it, so 64 MiB per client
 * and 128 MiB for all clients together).
 */
export const QUERY_BUFFER_LIMIT = 64 << 20;
/**
 * Every client's input is read into one buffer of this size per server (as
 * Node reads 64 KiB at a time): no ArrayBuffer per read, whose external
 * memory drove a major collection every few hundred milliseconds at SET -P16
 * 4 KiB. What a command or the parser keeps is copied (see RespParser's
 * `transient`, ReplyWriter's markTransient); stored values were copies already.
 */
export const READ_BUFFER_BYTES = 64 * 1024;

export interface RespServerOptions {
  db: Database;
  appendfsync: 'always' | 'everysec';
  maxBulkLength?: number;
  /** Connection limits and timeouts (see TcpServiceLimits). */
  limits?: Partial<TcpServiceLimits>;
  log: (msg: string) => void;
}

/**
 * RESP defaults on the TCP service. Idle clients close after 5 minutes (Redis
 * never closes them by default, but its clients reconnect, and the connection
 * limit needs idle slots back).
 */
export function respLimits(given: Partial<TcpServiceLimits> = {}): Partial<TcpServiceLimits> {
  return {
    idleTimeoutMs: 300_000,
    maxBufferedBytes: QUERY_BUFFER_LIMIT + (256 << 10),
    maxInflight: 1024,
    maxInflightBytes: PENDING_REPLY_LIMIT,
    maxQueuedBytes: OUTPUT_SOFT_LIMIT,
    maxOutputBytes: OUTPUT_HARD_LIMIT,
    ...given,
  };
}

/** A client waiting in BLPOP and friends: the command runs again when one of its keys changes. */
interface Blocked {
  spec: CommandSpec;
  args: Buffer[];
  keys: string[];
  onTimeout: Reply;
  timer: NodeJS.Timeout | null;
}

/**
 * Replies that may only be sent once the log holds mutation `seq` durably:
 * every reply of this connection whose write joined the same log batch (and
 * the reads queued behind them), encoded back to back, released together.
 */
interface PendingReply {
  seq: number;
  /** The log batch (LogWriter.batchId) the writes behind these replies joined. */
  batch: number;
  /** The encoded replies; the newest entry's are still in the connection's pending writer. */
  bytes: Buffer[];
  /** The slab of each of `bytes` (released once sent or dropped). */
  owners: (Slab | null)[];
  size: number;
  /** Replies in this entry. */
  count: number;
}

/**
 * One client connection: parse, execute one command at a time, and send
 * replies in order. Execution stops (the parser keeps the rest, and reading
 * pauses) once the client's unsent replies pass the soft limit, and goes on
 * when they drain. A reply that follows a write waits until the log has that
 * write (durable in `always`; written to the device in `everysec`, as Redis
 * writes its AOF before it replies, so that kill -9 loses nothing acknowledged
 * in either mode), and every later reply on the connection waits behind it.
 */
class Connection implements ClientState, ConnectionHandler {
  closeAfterReply = false;
  readonly id: number;
  name = '';
  inExec = false;
  readonly tx: TransactionState = { active: false, failed: false, queued: [], queuedBytes: 0, watched: new Map() };
  readonly pubsub: PubSubState = { channels: new Set(), patterns: new Set() };
  /** Subscribed clients hold one in-flight slot: they wait for messages, they are not idle. */
  private subscribedHold = false;
  blocked: Blocked | null = null;
  private readonly parser: RespParser;
  private readonly pending: PendingReply[] = [];
  /** Replies encoded since the last flush, sent as one write per flush. */
  private readonly w = new ReplyWriter();
  /** The newest pending entry's replies, encoded as they come (one slab, no Buffer per reply). */
  private readonly pw = new ReplyWriter();
  private flushScheduled = false;
  /** Parsing this connection's input (data, resume): replies are flushed right after, no tick needed. */
  private feeding = false;
  private gone = false;
  private readonly ctx: CommandContext;

  constructor(
    private readonly conn: TcpConnection,
    private readonly srv: RespServer,
  ) {
    this.id = srv.nextClientId++;
    this.ctx = { db: srv.db, client: this, server: srv.info };
    this.parser = new RespParser(
      {
        onCommand: (args) => this.onCommand(args),
        onError: (message) => this.onProtocolError(message),
      },
      { maxBulkLength: srv.options.maxBulkLength, maxRequestBytes: QUERY_BUFFER_LIMIT, transient: conn.transientReads },
    );
  }

  data(chunk: Buffer): void {
    this.feeding = true;
    try {
      this.parser.feed(chunk);
    } finally {
      this.feeding = false;
    }
    this.flushOut();
    this.settle();
  }

  resume(): void {
    if (this.blocked !== null) return;
    if (this.parser.paused) {
      this.feeding = true;
      try {
        this.parser.resume();
      } finally {
        this.feeding = false;
      }
    }
    this.flushOut();
    this.settle();
  }

  /** Server stop: replies still waiting for the log are dropped (none of them was acknowledged). */
  stop(): void {
    this.dropPending();
    if (this.blocked !== null) this.unblock(null, 0, false);
    this.releaseSubscriptions();
    if (this.subscribedHold) {
      this.subscribedHold = false;
      this.conn.end(0, 1);
    }
  }

  closed(): void {
    this.gone = true;
    this.dropPending();
    if (this.blocked !== null) this.unblock(null, 0, false);
    this.releaseSubscriptions();
    unwatchAll(this.ctx);
    this.srv.forget(this);
  }

  /**
   * The client closed its side. A blocked or subscribed client is waiting for
   * nothing it can still receive: drop that (as Redis frees such a client);
   * replies waiting for the log are still sent.
   */
  end(): void {
    if (this.blocked !== null) this.unblock(null, 0, false);
    this.releaseSubscriptions();
    if (this.subscribedHold) {
      this.subscribedHold = false;
      this.conn.end(0, 1);
    }
    this.conn.endGracefully();
  }

  /** A pub/sub message: after every reply already queued, in order. */
  deliver(reply: Reply): void {
    if (this.gone) return;
    this.queue(reply, 0);
  }

  private releaseSubscriptions(): void {
    const hub = this.srv.info.pubsub;
    for (const ch of [...this.pubsub.channels]) hub.unsubscribe(this, ch);
    for (const p of [...this.pubsub.patterns]) hub.punsubscribe(this, p);
  }

  private settle(): void {
    // A MULTI queue is held request memory too: it counts against the connection's and the server's budget.
    this.conn.setBuffered(this.parser.bufferedBytes + this.tx.queuedBytes, this.parser.midRequest);
    if (this.closeAfterReply && !this.gone) this.conn.endGracefully();
  }

  /** Wait for a key (BLPOP...): the parser stays stopped until the command is answered. */
  private block(args: Buffer[], br: BlockReply): void {
    const spec = lookup(args) as CommandSpec;
    const b: Blocked = { spec, args: args.map((a) => Buffer.from(a)), keys: [...new Set(br.keys)], onTimeout: br.onTimeout, timer: null };
    this.blocked = b;
    this.srv.blockOn(this, b.keys);
    if (br.timeoutMs > 0) b.timer = setTimeout(() => this.unblock(b.onTimeout, 0, true), br.timeoutMs);
    this.conn.begin(0);
  }

  /** Run the blocked command again (one of its keys changed); returns whether it was answered. */
  retryBlocked(): boolean {
    const b = this.blocked;
    if (b === null) return true;
    const before = this.srv.db.lastSeq;
    let reply: Reply | BlockReply;
    try {
      reply = execute(this.ctx, b.spec, b.args);
    } catch (err) {
      this.srv.options.log(`database command failed: ${(err as Error).stack ?? err}`);
      reply = respErrorOf(err);
    }
    if (reply instanceof BlockReply) return false;
    const wrote = this.srv.db.lastSeq !== before;
    this.unblock(reply, wrote ? this.srv.db.lastSeq : 0, true);
    return true;
  }

  private unblock(reply: Reply, seq: number, answer: boolean): void {
    const b = this.blocked;
    if (b === null) return;
    this.blocked = null;
    if (b.timer !== null) clearTimeout(b.timer);
    this.srv.unblockFrom(this, b.keys);
    if (this.gone) return;
    if (answer) {
      this.srv.counters.commands++;
      this.queue(reply, seq);
    }
    // Ending the hold wakes the connection: the parser goes on with what the client pipelined.
    this.conn.end(0, 1);
  }

  private afterCommand(): void {
    const subscribed = this.pubsub.channels.size > 0 || this.pubsub.patterns.size > 0;
    if (subscribed !== this.subscribedHold) {
      this.subscribedHold = subscribed;
      if (subscribed) this.conn.begin(0);
      else this.conn.end(0, 1);
    }
    if (this.srv.db.readyKeys.size > 0) this.srv.serveReady();
  }

  /** Returns whether the parser may go on with the next command. */
  private onCommand(args: Buffer[]): boolean {
    if (this.gone || this.closeAfterReply || this.conn.isStopping) return false;
    this.srv.counters.commands++;
    const before = this.srv.db.lastSeq;
    const blocks = blockRepliesMade();
    let reply: Reply | BlockReply;
    try {
      reply = dispatch(this.ctx, args);
    } catch (err) {
      // A bug in one command must not take the server down: report it to this client.
      this.srv.options.log(`database command failed: ${(err as Error).stack ?? err}`);
      reply = respErrorOf(err);
    }
    if (blockRepliesMade() !== blocks && reply instanceof BlockReply) {
      this.srv.counters.commands--; // counted when answered
      this.block(args, reply);
      this.afterCommand();
      return false;
    }
    const wrote = this.srv.db.lastSeq !== before;
    this.queue(reply as Reply, wrote ? this.srv.db.lastSeq : 0);
    this.afterCommand();
    return this.blocked === null && !this.closeAfterReply && this.conn.canAccept();
  }

  private queue(reply: Reply, seq: number): void {
    if (seq === 0 && this.pending.length === 0) {
      this.w.write(reply);
      this.conn.count();
      // Big replies go at once (the output limits must see them); small ones leave with the batch.
      if (this.w.pendingBytes >= FLUSH_BYTES) this.flushOut();
      else if (!this.feeding) this.flushSoon(); // while feeding, data()/resume() flush when the input is parsed
      return;
    }
    const last = this.pending.length > 0 ? this.pending[this.pending.length - 1]! : null;
    const batch = this.srv.db.writer.batchId;
    const before = this.pw.pendingBytes;
    this.pw.write(reply);
    const size = this.pw.pendingBytes - before;
    // A read behind a waiting write, or a write in the same log batch as the newest
    // entry's: both are released by the same acknowledgement, so they share the entry.
    if (last !== null && (seq === 0 || seq <= last.seq || last.batch === batch)) {
      if (seq > last.seq) last.seq = seq;
      last.size += size;
      last.count++;
    } else {
      if (last !== null) this.pw.take(last.bytes, last.owners);
      else this.srv.waiting.add(this); // in the set while anything is pending (released/dropPending take it out)
      this.pending.push({ seq, batch, bytes: [], owners: [], size, count: 1 });
    }
    this.conn.begin(size);
  }

  /** The log is durable up to `durable`: release the replies that waited for it. */
  released(durable: number, failure: Error | null): void {
    let n = 0;
    let size = 0;
    while (this.pending.length > 0 && (this.pending[0]!.seq <= durable || failure)) {
      const p = this.pending.shift()!;
      if (this.pending.length === 0) this.pw.take(p.bytes, p.owners); // the newest entry: its bytes are still in the writer
      n += p.count;
      size += p.size;
      if (p.seq > durable && failure) {
        const err = respErrorOf(failure);
        for (let i = 0; i < p.count; i++) this.w.write(err);
        releaseAll(p.owners);
      } else {
        for (let i = 0; i < p.bytes.length; i++) this.w.append(p.bytes[i], p.owners[i]);
      }
      p.bytes.length = 0;
      p.owners.length = 0;
    }
    if (this.pending.length === 0) this.srv.waiting.delete(this);
    this.flushOut();
    if (n > 0 && !this.gone) this.conn.end(size, n);
  }

  /**
   * Send what the writer holds: one slab piece per flush, plus large values by
   * reference (corked per tick: one writev; a lone piece is written at once). Each slab piece's write callback
   * returns its slab to the pool; a piece not sent releases it at once.
   */
  flushOut(): void {
    this.flushScheduled = false;
    if (this.w.pendingBytes === 0) return;
    this.w.drain(this.sendPiece);
  }

  private readonly sendPiece = (bytes: Buffer, owner: Slab | null, alone: boolean): void => {
    // A lone piece goes at once, unless more replies of this input may follow (a flush mid-parse, at FLUSH_BYTES: corked, they join it).
    if (!this.gone && this.conn.sendable) this.conn.send(bytes, owner?.done, alone && !this.feeding);
    else owner?.release();
  };

  /** Flush before this tick ends (replies produced outside this client's own input: messages, wake-ups, timeouts). */
  private flushSoon(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    process.nextTick(flushConnection, this);
  }

  private dropPending(): void {
    if (this.pending.length === 0) return;
    let size = 0;
    let n = 0;
    for (const p of this.pending) {
      size += p.size;
      n += p.count;
      releaseAll(p.owners);
    }
    this.pending.length = 0;
    this.pw.take(DISCARD, DISCARD_OWNERS);
    releaseAll(DISCARD_OWNERS);
    DISCARD.length = 0;
    DISCARD_OWNERS.length = 0;
    this.srv.waiting.delete(this);
    this.conn.end(size, n);
  }

  private onProtocolError(message: string): void {
    // Redis answers the error, then closes once replies before it are sent.
    this.srv.counters.protocolErrors++;
    this.closeAfterReply = true;
    this.queue(new ErrorReply(`ERR ${message}`), 0);
  }
}

/** Where dropped pending bytes go (emptied at once). */
const DISCARD: Buffer[] = [];
const DISCARD_OWNERS: (Slab | null)[] = [];

/** Slab pieces that will never be sent: their slabs may go back to the pool. */
function releaseAll(owners: (Slab | null)[]): void {
  for (const o of owners) o?.release();
  owners.length = 0;
}

/** Replies held in a connection's writer up to this many bytes before they are sent mid-batch. */
const FLUSH_BYTES = 32 * 1024;

function flushConnection(c: Connection): void {
  c.flushOut();
}

export class RespServer {
  readonly counters = { connections: 0, commands: 0, protocolErrors: 0 };
  readonly waiting = new Set<Connection>();
  nextClientId = 1;
  /** Clients blocked on each key, in the order they blocked (served first come, first served). */
  private readonly blockedOn = new Map<string, Connection[]>();
  private serving = false;
  blockedCount = 0;
  private readonly connections = new Set<Connection>();
  private readonly service: TcpService;
  readonly info: ServerInfo;

  constructor(
    readonly db: Database,
    readonly options: RespServerOptions,
  ) {
    this.info = {
      startedAt: Date.now(),
      port: 0,
      appendfsync: options.appendfsync,
      connectedClients: () => this.connections.size,
      blockedClients: () => this.blockedCount,
      stats: () => ({ total_connections_received: this.counters.connections, total_commands_processed: this.counters.commands }),
      pubsub: new Hub(),
    };
    const readBuffer = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
    markTransient(readBuffer);
    this.service = new TcpService({
      name: 'resp',
      log: options.log,
      uncork: 'tick',
      readBuffer,
      limits: respLimits(options.limits),
      handler: (conn) => {
        this.counters.connections++;
        const c = new Connection(conn, this);
        this.connections.add(c);
        return c;
      },
    });
  }

  /** Called by the log when records up to `seq` are durable (or when it failed). */
  durable(seq: number, failure: Error | null = null): void {
    for (const c of [...this.waiting]) c.released(seq, failure);
  }

  blockOn(c: Connection, keys: string[]): void {
    this.blockedCount++;
    for (const k of keys) {
      let list = this.blockedOn.get(k);
      if (list === undefined) this.blockedOn.set(k, (list = []));
      list.push(c);
      this.db.blockedKeys.set(k, list.length);
    }
  }

  unblockFrom(c: Connection, keys: string[]): void {
    this.blockedCount--;
    for (const k of keys) {
      const list = this.blockedOn.get(k);
      if (list === undefined) continue;
      const i = list.indexOf(c);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) {
        this.blockedOn.delete(k);
        this.db.blockedKeys.delete(k);
      } else this.db.blockedKeys.set(k, list.length);
    }
  }

  /** A compaction finished or a backlog was written: writers waiting for log room try again, oldest first. */
  roomFreed(): void {
    if (!this.db.blockedKeys.has(LOG_ROOM_KEY)) return;
    this.db.readyKeys.add(LOG_ROOM_KEY);
    this.serveReady();
  }

  /**
   * Serve clients blocked on keys that commands changed, oldest waiter first,
   * while the key still holds a list (a served BLMOVE may make another key ready).
   */
  serveReady(): void {
    if (this.serving) return;
    this.serving = true;
    try {
      const ready = this.db.readyKeys;
      while (ready.size > 0) {
        for (const k of ready) {
          ready.delete(k);
          const list = this.blockedOn.get(k);
          if (list === undefined) continue;
          for (const c of list.slice()) {
            // Writers waiting for log room are all retried; BLPOP and friends while the key holds a list.
            if (k !== LOG_ROOM_KEY) {
              const e = this.db.ks.get(k);
              if (e === undefined || e.type !== 'list') break;
            }
            c.retryBlocked();
          }
        }
      }
    } finally {
      this.serving = false;
    }
  }

  forget(c: Connection): void {
    this.connections.delete(c);
    this.waiting.delete(c);
  }

  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    const bound = await this.service.listen(host, port);
    (this.info as { port: number }).port = bound.port;
    return { host, port: bound.port };
  }

  /** Stop accepting, answer what can be answered, close every connection. */
  close(): Promise<void> {
    return this.service.stop();
  }

  /** Connection counters of the TCP service (connections, refused, timed out, closed for limits, bytes held). */
  netStats(): TcpServiceStats {
    return this.service.stats();
  }
}
