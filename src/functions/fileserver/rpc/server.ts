/**
 * An ONC RPC server over TCP: accepts connections, splits records, parses calls,
 * routes them to registered programs and writes replies as they complete, so
 * calls on one connection are pipelined and may be answered out of order.
 *
 * Validate, then handle: every procedure declares `decode` (pure, throws only
 * garbageArgs), `handle` (async, trusts its arguments) and `encode`. A decode
 * failure is GARBAGE_ARGS; a handler that throws is SYSTEM_ERR; neither closes
 * the connection. Only a broken record stream does, because it cannot resync.
 */
import { TcpService, type ConnectionHandler, type TcpConnection, type TcpServiceLimits, type TcpServiceStats } from '../../../net/tcp-service.ts';
import { RecordReader } from './record-reader.ts';
import { isGarbageArgs, XdrDecoder, XdrEncoder } from './xdr.ts';
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
import { StayAwake, type StayAwakeOptions, type StayAwakeStats } from '../../../net/stay-awake.ts';
import { CoreContention, type ContentionMeter } from '../../../native/contention.ts';
import { RunnableMeter, eitherMeter, lazyMeter } from '../../../native/runnable-meter.ts';

export interface RpcCall {
  header: CallHeader;
  cred: Credential;
  /** "address:port" of the client, for MOUNT's DUMP list and logs. */
  remote: string;
  /**
   * Who the call acts as, set by a program's admission step before its
   * procedure runs (NFS: the export's Caller); undefined until then.
   */
  principal: unknown;
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
  /** Connection limits and timeouts (see TcpServiceLimits); the rest follow from maxRecordSize. */
  limits?: Partial<TcpServiceLimits>;
  /**
   * Keep the event loop awake for a bounded time after a reply leaves with
   * nothing in flight, so a QD1 client's next call finds it awake (stay-awake.ts).
   * On by default (150 µs, off while another thread wants the core); false = off.
   */
  stayAwake?: Partial<StayAwakeOptions> | false;
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
/** Calls in flight per connection: enough to keep a 2-core server busy, few enough to bound 1 MiB READ replies. */
export const DEFAULT_MAX_IN_FLIGHT = 32;
/** Room for what arrives while reading pauses (a socket chunk plus the stream's buffer). */
const READ_SLACK_BYTES = 256 << 10;

/**
 * RPC defaults on the TCP service. A connection holds at most one partial
 * record, the complete records of the chunks read before it paused, the
 * replies of its calls in flight and `maxQueuedBytes` of unread replies.
 * Idle connections close after 6 minutes, as Linux knfsd does (clients reconnect).
 */
export function rpcLimits(maxRecordSize: number, maxInFlight: number, given: Partial<TcpServiceLimits> = {}): Partial<TcpServiceLimits> {
  const maxQueuedBytes = Math.max(4 << 20, 2 * maxRecordSize);
  return {
    idleTimeoutMs: 360_000,
    maxInflight: maxInFlight,
    maxBufferedBytes: maxRecordSize + READ_SLACK_BYTES,
    maxQueuedBytes,
    maxOutputBytes: maxQueuedBytes + maxInFlight * maxRecordSize,
    drainTimeoutMs: 1_000,
    ...given,
  };
}

export class RpcServer {
  private readonly programs = new Map<number, RpcProgram>();
  private readonly service: TcpService;
  /** One scratch encoder: replies are encoded synchronously and copied out. */
  private readonly enc = new XdrEncoder(64 * 1024);
  private readonly log: (msg: string) => void;
  /** Call counters, plus the TCP service's connection counters (read live). */
  readonly stats: RpcStats & TcpServiceStats;
  /** @internal null when off. */
  readonly awake: StayAwake | null;
  private readonly contention: ContentionMeter | null = null;
  /** Calls in flight on every connection (a spin starts only when none is). */
  private inflight = 0;

  constructor(private readonly opts: RpcServerOptions) {
    for (const p of opts.programs) this.programs.set(p.prog, p);
    this.log = opts.log ?? (() => {});
    const maxInFlight = opts.maxInFlightPerConnection ?? DEFAULT_MAX_IN_FLIGHT;
    this.service = new TcpService({
      name: 'rpc',
      log: this.log,
      // Replies that complete in the same event-loop turn leave in one writev.
      uncork: 'turn',
      limits: rpcLimits(opts.maxRecordSize, maxInFlight, opts.limits),
      handler: (conn) => new RpcConnection(conn, this),
    });
    const service = this.service;
    if (opts.stayAwake === false || opts.stayAwake?.budgetUs === 0) this.awake = null;
    else {
      // Made at the first reply, on the thread that serves: CoreContention reads this thread's own run
      // delay; RunnableMeter the machine's runnable threads against its cores (both cores busy: no spin).
      if (opts.stayAwake?.contention === undefined) this.contention = lazyMeter(() => eitherMeter(new CoreContention(), new RunnableMeter()));
      this.awake = new StayAwake({ contention: this.contention, ...opts.stayAwake });
    }
    this.stats = liveStats(() => service.stats(), { calls: 0, garbageArgs: 0, authErrors: 0, unavailable: 0, systemErrors: 0, recordErrors: 0 });
  }

  get maxRecordSize(): number {
    return this.opts.maxRecordSize;
  }

  listen(host: string, port: number): Promise<{ host: string; port: number }> {
    return this.service.listen(host, port);
  }

  /** Stop accepting, let in-flight calls finish and reply, then drop every connection. */
  async close(): Promise<void> {
    this.awake?.stop();
    try {
      await this.service.stop();
    } finally {
      this.contention?.close();
    }
  }

  /** The stay-awake counters (zeros when it is off). */
  awakeStats(): StayAwakeStats {
    return { ...(this.awake?.stats ?? { spins: 0, hits: 0, misses: 0, contended: 0, overBudget: 0, passes: 0 }) };
  }

  /** @internal one complete record from a connection: answer it. */
  call(conn: TcpConnection, record: Buffer): void {
    // A whole call, not just bytes of one: a spin goes on through a record's first fragments.
    this.awake?.arrived();
    let reply: ReturnType<RpcServer['dispatch']>;
    try {
      reply = this.dispatch(record, conn);
    } catch (err) {
      // Only a bug gets here; contain it to this connection.
      this.log(`rpc ${conn.remote}: internal error: ${(err as Error)?.stack ?? String(err)}`);
      return void conn.destroy();
    }
    if (reply === PENDING) return; // dispatch began it; complete() ends it
    conn.count();
    if (reply !== null) send(conn, reply);
  }

  /** @internal a call begun by dispatch() has its reply (encoded, or SYSTEM_ERR): send it and end the call. */
  complete(conn: TcpConnection, reply: Reply): void {
    this.inflight--;
    send(conn, reply);
    conn.end();
    // The connection's last call in flight: no other reply can join this write in
    // this turn, so it leaves now instead of after the next event-loop pass (one
    // client at QD1 waits on exactly that pass). With more in flight, replies
    // that complete together still leave in one writev at the end of the turn.
    if (conn.inflight === 0) {
      conn.uncorkNow();
      // Nothing left to do anywhere: stay awake for this client's next call.
      if (this.inflight === 0) this.awake?.replied();
    }
  }

  /** @internal */
  recordError(conn: TcpConnection, code: string, message: string): void {
    this.stats.recordErrors++;
    if (code === 'RECORD_TOO_LARGE') return conn.closeForLimit(`${code}: ${message}`);
    this.log(`rpc ${conn.remote}: ${code}: ${message}; closing connection`);
    conn.destroy();
  }

  /**
   * Everything up to the handler happens synchronously and yields a framed reply
   * at once (errors), PENDING (a real call: begun on the connection, answered
   * through complete() by one then() on the handler's result), or null (not a
   * call: dropped).
   */
  private dispatch(record: Buffer, conn: TcpConnection): Reply | typeof PENDING | null {
    const remote = conn.remote;
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
      if (!isGarbageArgs(err)) return this.systemError(header.xid, proc.name, err);
      this.stats.garbageArgs++;
      this.log(`rpc ${remote}: ${proc.name} xid ${header.xid}: garbage args: ${err.message}`);
      return this.frame((enc) => encodeAccepted(enc, header.xid, AcceptStat.GARBAGE_ARGS));
    }
    const call: RpcCall = { header, cred: parsed.cred, remote, principal: undefined };
    let out: unknown;
    try {
      out = proc.handle(args, call);
    } catch (err) {
      return this.systemError(header.xid, proc.name, err);
    }
    conn.begin();
    this.inflight++;
    // One then() on the handler's own promise: no chain of promises per call.
    const xid = header.xid;
    (out instanceof Promise ? out : Promise.resolve(out)).then(
      (result) => this.complete(conn, this.success(xid, proc, result)),
      (err) => this.complete(conn, this.systemError(xid, proc.name, err)),
    );
    return PENDING;
  }

  /** The SUCCESS reply carrying `result`; SYSTEM_ERR if the procedure's encoder throws. */
  private success(xid: number, proc: Procedure, result: unknown): Reply {
    try {
      const enc = this.startFrame();
      encodeAccepted(enc, xid, AcceptStat.SUCCESS);
      proc.encode(enc, result);
      return this.endFrame();
    } catch (err) {
      return this.systemError(xid, proc.name, err);
    }
  }

  private unavailable(xid: number, stat: AcceptStat): Reply {
    this.stats.unavailable++;
    return this.frame((enc) => encodeAccepted(enc, xid, stat));
  }

  private systemError(xid: number, name: string, err: unknown): Reply {
    this.stats.systemErrors++;
    this.log(`rpc ${name} xid ${xid}: SYSTEM_ERR: ${(err as Error)?.stack ?? String(err)}`);
    return this.frame((enc) => encodeAccepted(enc, xid, AcceptStat.SYSTEM_ERR));
  }

  /**
   * Encode one reply into the scratch encoder behind a record mark, and copy it
   * out; a payload the procedure left as the encoder's tail (READ data) goes out
   * by reference, after the copied header, in the same corked write.
   */
  private frame(body: (enc: XdrEncoder) => void): Reply {
    const enc = this.startFrame();
    try {
      body(enc);
    } catch (err) {
      // An encoder bug must not leave a half reply on the wire.
      enc.reset().u32(0);
      throw err;
    }
    return this.endFrame();
  }

  /** The scratch encoder, reset, with room for the record mark. */
  private startFrame(): XdrEncoder {
    return this.enc.reset().u32(0);
  }

  /** The encoded reply behind its record mark, copied out (the tail by reference). */
  private endFrame(): Reply {
    const enc = this.enc;
    enc.patchU32(0, (LAST_FRAGMENT | (enc.wireLength - RECORD_MARK_BYTES)) >>> 0);
    const head = enc.take();
    const tail = enc.tail;
    if (!tail) return head;
    const pad = enc.tailPad;
    enc.reset(); // drop the scratch encoder's reference to the payload
    return pad ? [head, tail, pad] : [head, tail];
  }
}

/**
 * One connection's record stream. The reader splits records as bytes arrive;
 * records are dispatched one at a time while the connection may take more
 * (the in-flight cap applies per record, not per chunk), and the rest wait
 * here, bounded by what arrived before reading paused.
 */
class RpcConnection implements ConnectionHandler {
  private readonly reader: RecordReader;
  private records: Buffer[] = [];
  private head = 0;
  private recordBytes = 0;

  constructor(
    private readonly conn: TcpConnection,
    private readonly server: RpcServer,
  ) {
    this.reader = new RecordReader({
      maxRecordSize: server.maxRecordSize,
      onRecord: (record) => {
        this.records.push(record);
        this.recordBytes += record.length;
      },
      onError: (code, message) => server.recordError(conn, code, message),
    });
  }

  data(chunk: Buffer): void {
    this.reader.push(chunk);
    this.pump();
  }

  resume(): void {
    this.pump();
  }

  stop(): void {
    this.records = [];
    this.head = 0;
    this.recordBytes = 0;
  }

  private pump(): void {
    const conn = this.conn;
    while (this.head < this.records.length && conn.canAccept()) {
      const record = this.records[this.head]!;
      this.records[this.head++] = EMPTY;
      this.recordBytes -= record.length;
      this.server.call(conn, record);
    }
    if (this.head === this.records.length) {
      this.records.length = 0;
      this.head = 0;
    }
    conn.setBuffered(this.recordBytes + this.reader.bufferedBytes, this.reader.partial);
  }
}

const EMPTY = Buffer.alloc(0);
/** dispatch(): the call was begun and will be answered through complete(). */
const PENDING = Symbol('pending');

/** A framed reply: one buffer, or a header followed by a payload sent by reference. */
type Reply = Buffer | Buffer[];

function send(conn: TcpConnection, reply: Reply): void {
  if (Buffer.isBuffer(reply)) return conn.send(reply);
  for (const part of reply) conn.send(part);
}

/** A counters object whose TCP service fields are read live (so `{ ...stats }` copies current values). */
function liveStats<T extends object>(read: () => TcpServiceStats, own: T): T & TcpServiceStats {
  const out = {} as T & TcpServiceStats;
  for (const key of Object.keys(read()) as (keyof TcpServiceStats)[]) {
    Object.defineProperty(out, key, { enumerable: true, get: () => read()[key] });
  }
  return Object.assign(out, own);
}
