import { createServer, type Server, type Socket } from 'node:net';
import { dispatch } from './commands/table.ts';
import type { ClientState, CommandContext, ServerInfo } from './commands/types.ts';
import type { Database } from './database.ts';
import { RespParser } from './resp/parser.ts';
import { ErrorReply, encodeReply, type Reply } from './resp/writer.ts';

/** Stop reading from a client whose unsent replies exceed this (it is not reading). */
const OUTPUT_HIGH_WATER = 4 * 1024 * 1024;

export interface RespServerOptions {
  db: Database;
  appendfsync: 'always' | 'everysec';
  maxBulkLength?: number;
  log: (msg: string) => void;
}

/** A reply that may only be sent once the log holds mutation `seq` durably. */
interface PendingReply {
  seq: number;
  bytes: Buffer[];
}

/**
 * One client connection: parse, dispatch, and send replies in order. In
 * `always` mode a reply that follows a write waits until that write is
 * durable, and every later reply on the connection waits behind it.
 */
class Connection implements ClientState {
  closeAfterReply = false;
  private readonly parser: RespParser;
  private readonly pending: PendingReply[] = [];
  private out: Buffer[] = [];
  private closed = false;
  private readonly ctx: CommandContext;

  constructor(
    private readonly socket: Socket,
    private readonly srv: RespServer,
  ) {
    this.ctx = { db: srv.db, client: this, server: srv.info };
    this.parser = new RespParser(
      {
        onCommand: (args) => this.onCommand(args),
        onError: (message) => this.onProtocolError(message),
      },
      { maxBulkLength: srv.options.maxBulkLength },
    );
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => socket.resume());
    socket.on('error', () => {}); // a reset client is a normal event; 'close' follows
    socket.on('close', () => {
      this.closed = true;
      srv.forget(this);
    });
  }

  private onData(chunk: Buffer): void {
    this.parser.feed(chunk);
    this.flushOut();
    if (this.socket.writableLength > OUTPUT_HIGH_WATER) this.socket.pause();
  }

  private onCommand(args: Buffer[]): void {
    if (this.closed || this.closeAfterReply) return;
    this.srv.counters.commands++;
    const before = this.srv.db.lastSeq;
    let reply: Reply;
    try {
      reply = dispatch(this.ctx, args);
    } catch (err) {
      // A bug in one command must not take the server down: report it to this client.
      this.srv.options.log(`database command failed: ${(err as Error).stack ?? err}`);
      reply = new ErrorReply(`ERR internal error: ${(err as Error).message}`);
    }
    const wrote = this.srv.db.lastSeq !== before;
    this.queue(reply, wrote && this.srv.options.appendfsync === 'always' ? this.srv.db.lastSeq : 0);
  }

  private queue(reply: Reply, seq: number): void {
    if (seq === 0 && this.pending.length === 0) {
      encodeReply(reply, this.out);
      return;
    }
    const bytes: Buffer[] = [];
    encodeReply(reply, bytes);
    if (seq === 0) seq = this.pending[this.pending.length - 1].seq; // keep order behind a waiting write
    this.pending.push({ seq, bytes });
    this.srv.waiting.add(this);
  }

  /** The log is durable up to `durable`: release the replies that waited for it. */
  released(durable: number, failure: Error | null): void {
    while (this.pending.length > 0 && (this.pending[0].seq <= durable || failure)) {
      const p = this.pending.shift() as PendingReply;
      if (p.seq > durable && failure) {
        encodeReply(new ErrorReply(`MISCONF Errors writing to the volume: ${failure.message}`), this.out);
      } else {
        for (const b of p.bytes) this.out.push(b);
      }
    }
    if (this.pending.length === 0) this.srv.waiting.delete(this);
    this.flushOut();
  }

  private flushOut(): void {
    if (this.out.length > 0 && !this.closed) {
      const data = this.out.length === 1 ? this.out[0] : Buffer.concat(this.out);
      this.out = [];
      this.socket.write(data);
    }
    if (this.closeAfterReply && this.pending.length === 0 && !this.closed) this.socket.end();
  }

  private onProtocolError(message: string): void {
    // Redis answers the error, then closes once replies before it are sent.
    this.srv.counters.protocolErrors++;
    this.closeAfterReply = true;
    this.queue(new ErrorReply(`ERR ${message}`), 0);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export class RespServer {
  readonly counters = { connections: 0, commands: 0, protocolErrors: 0 };
  readonly waiting = new Set<Connection>();
  private readonly connections = new Set<Connection>();
  private server: Server | null = null;
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
      stats: () => ({ total_connections_received: this.counters.connections, total_commands_processed: this.counters.commands }),
    };
  }

  /** Called by the log when records up to `seq` are durable (or when it failed). */
  durable(seq: number, failure: Error | null = null): void {
    for (const c of [...this.waiting]) c.released(seq, failure);
  }

  forget(c: Connection): void {
    this.connections.delete(c);
    this.waiting.delete(c);
  }

  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    const server = createServer((socket) => {
      this.counters.connections++;
      this.connections.add(new Connection(socket, this));
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    const addr = server.address();
    const bound = typeof addr === 'object' && addr ? addr.port : port;
    (this.info as { port: number }).port = bound;
    return { host, port: bound };
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const c of this.connections) c.destroy();
    await closed;
  }
}
