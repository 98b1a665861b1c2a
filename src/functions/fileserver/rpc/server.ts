/**
 * An ONC RPC server over TCP: accepts connections, splits records, parses calls,
 * routes them to registered programs and writes replies as they complete, so
 * calls on one connection are pipelined and may be answered out of order.
 *
 * Validate, then handle: every procedure declares `decode` (pure, throws only
 * GarbageArgs), `handle` (async, trusts its arguments) and `encode`. A decode
 * failure is GARBAGE_ARGS; a handler that throws is SYSTEM_ERR; neither closes
 * the connection. Only a broken record stream does, because it cannot resync.
 */
import net from 'node:net';
import { RecordReader } from './record-reader.ts';
import { GarbageArgs, XdrDecoder, XdrEncoder } from './xdr.ts';
import {
  AcceptStat,
  RPC_VERSION,
  encodeAccepted,
  encodeAuthError,
  encodeProgMismatch,
  encodeRpcMismatch,
  parseCall,
  type CallHeader,
} from './message.ts';
import type { Credential } from './auth.ts';

export interface RpcCall {
  header: CallHeader;
  cred: Credential;
  /** "address:port" of the client, for MOUNT's DUMP list and logs. */
  remote: string;
}

export interface Procedure<A = any, R = any> {
  readonly name: string;
  decode(dec: XdrDecoder): A;
  handle(args: A, call: RpcCall): Promise<R> | R;
  encode(enc: XdrEncoder, result: R): void;
}

export interface RpcProgram {
  readonly prog: number;
  /** version → procedures indexed by procedure number (holes are PROC_UNAVAIL). */
  readonly versions: ReadonlyMap<number, ReadonlyArray<Procedure | undefined>>;
}

export interface RpcServerOptions {
  programs: RpcProgram[];
  /** Largest call record accepted; bigger records close the connection. */
  maxRecordSize: number;
  /** Calls in flight per connection before we stop reading from it. */
  maxInFlightPerConnection?: number;
  log?: (msg: string) => void;
}

export interface RpcStats {
  connections: number;
  calls: number;
  garbageArgs: number;
  authErrors: number;
  unavailable: number;
  systemErrors: number;
  recordErrors: number;
}

const RECORD_MARK_BYTES = 4;
const LAST_FRAGMENT = 0x80000000;

export class RpcServer {
  private readonly programs = new Map<number, RpcProgram>();
  private readonly listeners = new Set<net.Server>();
  private readonly sockets = new Set<net.Socket>();
  /** One scratch encoder: replies are encoded synchronously and copied out. */
  private readonly enc = new XdrEncoder(64 * 1024);
  private readonly maxInFlight: number;
  private readonly log: (msg: string) => void;
  private inFlight = 0;
  private idleWaiters: Array<() => void> = [];
  private closing = false;
  readonly stats: RpcStats = { connections: 0, calls: 0, garbageArgs: 0, authErrors: 0, unavailable: 0, systemErrors: 0, recordErrors: 0 };

  constructor(private readonly opts: RpcServerOptions) {
    for (const p of opts.programs) this.programs.set(p.prog, p);
    this.maxInFlight = opts.maxInFlightPerConnection ?? 64;
    this.log = opts.log ?? (() => {});
  }

  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    const server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log(`rpc listener error: ${err.message}`));
    this.listeners.add(server);
    const addr = server.address() as net.AddressInfo;
    return { host: addr.address, port: addr.port };
  }

  /** Stop accepting, let in-flight calls finish and reply, then drop every connection. */
  async close(): Promise<void> {
    this.closing = true;
    const closed = [...this.listeners].map((s) => new Promise<void>((r) => s.close(() => r())));
    for (const socket of this.sockets) socket.pause();
    if (this.inFlight > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
    for (const socket of this.sockets) {
      // end() flushes corked replies before the FIN; a peer that never closes is cut off.
      socket.end();
      setTimeout(() => socket.destroy(), 1000).unref();
    }
    await Promise.all(closed);
  }

  private accept(socket: net.Socket): void {
    if (this.closing) return void socket.destroy();
    this.stats.connections++;
    this.sockets.add(socket);
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    const conn = { socket, remote, inFlight: 0, writeBlocked: false, corked: false };
    const updateFlow = () => {
      if (socket.destroyed || this.closing) return;
      if (conn.inFlight >= this.maxInFlight || conn.writeBlocked) socket.pause();
      else socket.resume();
    };
    const reader = new RecordReader({
      maxRecordSize: this.opts.maxRecordSize,
      onRecord: (record) => {
        let reply: ReturnType<RpcServer['dispatch']>;
        try {
          reply = this.dispatch(record, remote);
        } catch (err) {
          // Only a bug gets here; contain it to this connection.
          this.log(`rpc ${remote}: internal error: ${(err as Error)?.stack ?? String(err)}`);
          return void socket.destroy();
        }
        if (reply === null) return;
        if (!(reply instanceof Promise)) return void this.send(conn, reply, updateFlow);
        conn.inFlight++;
        this.inFlight++;
        updateFlow();
        void reply.then((buf) => {
          conn.inFlight--;
          this.inFlight--;
          if (buf) this.send(conn, buf, updateFlow);
          updateFlow();
          if (this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
        });
      },
      onError: (code, message) => {
        this.stats.recordErrors++;
        this.log(`rpc ${remote}: ${code}: ${message}; closing connection`);
        socket.destroy();
      },
    });
    socket.on('data', (chunk) => reader.push(chunk));
    socket.on('drain', () => {
      conn.writeBlocked = false;
      updateFlow();
    });
    socket.on('error', () => {});
    socket.on('close', () => this.sockets.delete(socket));
  }

  private send(conn: { socket: net.Socket; writeBlocked: boolean; corked: boolean }, buf: Buffer, updateFlow: () => void): void {
    if (conn.socket.destroyed) return;
    // Replies that complete in the same event-loop turn leave in one writev: one syscall,
    // not one each. setImmediate runs right after this turn's I/O callbacks, so a lone
    // reply waits only for the rest of the current turn.
    if (!conn.corked) {
      conn.corked = true;
      conn.socket.cork();
      setImmediate(() => {
        conn.corked = false;
        conn.socket.uncork();
      });
    }
    if (!conn.socket.write(buf)) {
      conn.writeBlocked = true;
      updateFlow();
    }
  }

  /**
   * Everything up to the handler happens synchronously and yields a framed reply
   * at once (errors), a promise of one (a real call), or null (not a call: dropped).
   */
  private dispatch(record: Buffer, remote: string): Buffer | Promise<Buffer | null> | null {
    const dec = new XdrDecoder(record);
    const parsed = parseCall(dec);
    if (parsed.kind === 'ignore') {
      this.log(`rpc ${remote}: dropped record: ${parsed.reason}`);
      return null;
    }
    const { header } = parsed;
    this.stats.calls++;
    if (parsed.kind === 'badcred') {
      this.stats.authErrors++;
      return this.frame((enc) => encodeAuthError(enc, header.xid, parsed.stat));
    }
    if (header.rpcvers !== RPC_VERSION) return this.frame((enc) => encodeRpcMismatch(enc, header.xid));
    const program = this.programs.get(header.prog);
    if (!program) return this.unavailable(header.xid, AcceptStat.PROG_UNAVAIL);
    const procs = program.versions.get(header.vers);
    if (!procs) {
      const versions = [...program.versions.keys()];
      this.stats.unavailable++;
      return this.frame((enc) => encodeProgMismatch(enc, header.xid, Math.min(...versions), Math.max(...versions)));
    }
    const proc = procs[header.proc];
    if (!proc) return this.unavailable(header.xid, AcceptStat.PROC_UNAVAIL);
    let args: unknown;
    try {
      args = proc.decode(dec);
    } catch (err) {
      if (!(err instanceof GarbageArgs)) return this.systemError(header.xid, proc.name, err);
      this.stats.garbageArgs++;
      this.log(`rpc ${remote}: ${proc.name} xid ${header.xid}: garbage args: ${err.message}`);
      return this.frame((enc) => encodeAccepted(enc, header.xid, AcceptStat.GARBAGE_ARGS));
    }
    const call: RpcCall = { header, cred: parsed.cred, remote };
    return Promise.resolve()
      .then(() => proc.handle(args, call))
      .then(
        (result) =>
          this.frame((enc) => {
            encodeAccepted(enc, header.xid, AcceptStat.SUCCESS);
            proc.encode(enc, result);
          }),
        (err) => this.systemError(header.xid, proc.name, err),
      )
      .catch((err) => this.systemError(header.xid, proc.name, err));
  }

  private unavailable(xid: number, stat: AcceptStat): Buffer {
    this.stats.unavailable++;
    return this.frame((enc) => encodeAccepted(enc, xid, stat));
  }

  private systemError(xid: number, name: string, err: unknown): Buffer {
    this.stats.systemErrors++;
    this.log(`rpc ${name} xid ${xid}: SYSTEM_ERR: ${(err as Error)?.stack ?? String(err)}`);
    return this.frame((enc) => encodeAccepted(enc, xid, AcceptStat.SYSTEM_ERR));
  }

  /** Encode one reply into the scratch encoder behind a record mark, and copy it out. */
  private frame(body: (enc: XdrEncoder) => void): Buffer {
    const enc = this.enc.reset();
    enc.u32(0);
    try {
      body(enc);
    } catch (err) {
      // An encoder bug must not leave a half reply on the wire.
      enc.reset().u32(0);
      throw err;
    }
    enc.patchU32(0, (LAST_FRAGMENT | (enc.length - RECORD_MARK_BYTES)) >>> 0);
    return enc.take();
  }
}
