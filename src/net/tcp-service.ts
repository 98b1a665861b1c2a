/**
 * The one TCP service every storvisor protocol server runs on (NBD, ONC RPC,
 * RESP). It owns what all of them need and none should get wrong alone:
 * accepting within a connection limit, idle and partial-request timeouts,
 * backpressure (stop reading while too much is in flight or queued for a
 * client that does not read), replies corked per tick, a memory budget across
 * connections, graceful drain on stop, and the counters. The protocol code is
 * a `ConnectionHandler`: it parses what `data()` hands it, tells the
 * connection what it holds (`setBuffered`, `begin`/`end`, `send`) and
 * stops taking requests whenever `canAccept()` says no; `resume()` calls it
 * back when there is room again.
 *
 * Memory per connection is bounded by the handler's own limits (request size,
 * parser state) plus `maxQueuedBytes` + one reply; memory per server by
 * `maxTotalBytes`: when buffered request bytes plus queued reply bytes of all
 * connections exceed it, the heaviest connection is closed (as Redis's
 * maxmemory-clients does). Waiting instead would let a few clients that hold
 * half-sent requests freeze every other client until their timeouts fire.
 * Bytes reserved by requests in flight (`begin(bytes)`) are different: they
 * always drain on their own, so over `maxInflightBytesTotal` new requests wait.
 */
import { shutDown } from '../util/errors.ts';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export interface TcpServiceLimits {
  /** Open connections; more are accepted and closed at once (counted as refused). */
  maxConnections: number;
  /** Close a connection with no request completed, none started and none in flight for this long (0 = never). */
  idleTimeoutMs: number;
  /** Close a connection whose request was started but not finished within this long (0 = never). */
  requestTimeoutMs: number;
  /** Request bytes one connection may hold (buffered, partly parsed); beyond it the connection is closed. */
  maxBufferedBytes: number;
  /** Requests in flight per connection before it stops taking more. */
  maxInflight: number;
  /** Bytes reserved by requests in flight per connection before it stops taking more. */
  maxInflightBytes: number;
  /** Reply bytes queued for a connection before it stops taking requests (soft: reading pauses). */
  maxQueuedBytes: number;
  /** Reply bytes queued for a connection beyond which it is closed (hard: the client is not reading). */
  maxOutputBytes: number;
  /** Buffered request bytes + queued reply bytes across all connections; beyond it the heaviest is closed. */
  maxTotalBytes: number;
  /** Bytes reserved by requests in flight across all connections before new requests wait. */
  maxInflightBytesTotal: number;
  /** stop(): how long a connection may take to flush its last replies before it is cut. */
  drainTimeoutMs: number;
}

/**
 * The default connection limit for a process allowed `openFiles` descriptors:
 * 128, or an eighth of the descriptors when that is less (at least 8). Every
 * server of one process (four functions, the controller's NBD export, the API)
 * shares the descriptor table, so a flood of idle connections to one port
 * must not use up the descriptors the others need.
 */
export function defaultMaxConnections(openFiles: number | null): number {
  if (openFiles === null || !Number.isFinite(openFiles)) return 128;
  return Math.max(8, Math.min(128, Math.floor(openFiles / 8)));
}

/** The soft RLIMIT_NOFILE of this process (Linux /proc), or null when unknown. */
function openFilesLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m === null || m[1] === 'unlimited' ? null : Number(m[1]);
  } catch {
    return null;
  }
}

export const DEFAULT_LIMITS: TcpServiceLimits = {
  maxConnections: defaultMaxConnections(openFilesLimit()),
  idleTimeoutMs: 300_000,
  requestTimeoutMs: 30_000,
  maxBufferedBytes: 64 << 20,
  maxInflight: 128,
  maxInflightBytes: 64 << 20,
  maxQueuedBytes: 8 << 20,
  maxOutputBytes: 64 << 20,
  maxTotalBytes: 128 << 20,
  maxInflightBytesTotal: 128 << 20,
  drainTimeoutMs: 10_000,
};

export interface TcpServiceOptions {
  /** A handler per accepted connection. */
  handler: (conn: TcpConnection) => ConnectionHandler;
  limits?: Partial<TcpServiceLimits>;
  /**
   * When corked replies leave: 'tick' (process.nextTick, lowest latency) or
   * 'turn' (setImmediate: everything that completes in this event-loop turn
   * shares one writev).
   */
  uncork?: 'tick' | 'turn';
  log?: (msg: string) => void;
  /** Prefix for log lines ("nbd", "rpc", "resp"). */
  name?: string;
  /**
   * Read every connection's input into this one buffer instead of a fresh
   * 64 KiB ArrayBuffer per read (each of which is external memory that drives
   * V8's major collections). The chunk `data()` gets is then valid only during
   * the call: the handler copies whatever it keeps. Where this Node does not
   * offer the hook for accepted sockets, reads allocate as before.
   */
  readBuffer?: Buffer;
}

/** The protocol side of one connection. Exceptions thrown here close that connection only. */
export interface ConnectionHandler {
  /**
   * Bytes arrived. Take requests while `conn.canAccept()`; keep the rest (and report it with setBuffered).
   * With `conn.transientReads` the chunk is overwritten by the next read: keep copies, not views.
   */
  data(chunk: Buffer): void;
  /** There is room again (replies drained, requests finished): continue with what is buffered. */
  resume(): void;
  /** The peer half-closed (sent FIN). Default: end once nothing is in flight. */
  end?(): void;
  /** The service is stopping: take no more requests. Default: nothing to do. */
  stop?(): void;
  /** The connection is gone, for any reason. */
  closed?(): void;
}

export interface TcpServiceStats {
  connections: number;
  activeConnections: number;
  refusedConnections: number;
  timedOutConnections: number;
  limitClosedConnections: number;
  bufferedBytes: number;
  queuedBytes: number;
  inflightRequests: number;
  inflightBytes: number;
}

export class TcpService {
  readonly limits: TcpServiceLimits;
  private readonly listeners = new Set<Server>();
  private readonly connections = new Set<TcpConnection>();
  private readonly log: (msg: string) => void;
  private readonly prefix: string;
  private sweeper: NodeJS.Timeout | null = null;
  private stopping = false;
  /** Client-held bytes: buffered requests + queued (observed) and held replies. */
  clientBytes = 0;
  inflightBytes = 0;
  private readonly counters = { connections: 0, refused: 0, timedOut: 0, limitClosed: 0 };

  constructor(private readonly opts: TcpServiceOptions) {
    this.limits = { ...DEFAULT_LIMITS, ...definedOnly(opts.limits ?? {}) };
    checkLimits(this.limits);
    this.log = opts.log ?? (() => {});
    this.prefix = opts.name ? `${opts.name}: ` : '';
  }

  /** Listen on host:port (port 0 picks one). May be called more than once (several ports, one service). */
  listen(host: string, port: number): Promise<{ host: string; port: number }> {
    if (this.stopping) return Promise.reject(shutDown('the service'));
    // Half-open: a client that sends its last request and FIN still gets its replies.
    const server = createServer({ noDelay: true, allowHalfOpen: true }, (socket) => this.accept(socket));
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        server.on('error', (err) => this.log(`${this.prefix}listener error: ${err.message}`));
        this.listeners.add(server);
        this.startSweeper();
        const addr = server.address() as AddressInfo;
        resolve({ host: addr.address, port: addr.port });
      });
    });
  }

  /** Stop accepting, let requests in flight answer, flush, then close every connection. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    const listenersClosed = [...this.listeners].map((s) => new Promise<void>((r) => s.close(() => r())));
    this.listeners.clear();
    await Promise.all([...this.connections].map((c) => c.shutdown()));
    await Promise.all(listenersClosed);
  }

  stats(): TcpServiceStats {
    let buffered = 0;
    let queued = 0;
    let inflight = 0;
    for (const c of this.connections) {
      buffered += c.bufferedBytes;
      queued += c.queuedBytes;
      inflight += c.inflight;
    }
    return {
      connections: this.counters.connections,
      activeConnections: this.connections.size,
      refusedConnections: this.counters.refused,
      timedOutConnections: this.counters.timedOut,
      limitClosedConnections: this.counters.limitClosed,
      bufferedBytes: buffered,
      queuedBytes: queued,
      inflightRequests: inflight,
      inflightBytes: this.inflightBytes,
    };
  }

  private accept(socket: Socket): void {
    socket.on('error', () => {}); // a reset before we look at it is not our problem
    if (this.stopping) return void socket.destroy();
    if (this.connections.size >= this.limits.maxConnections) {
      this.counters.refused++;
      // Accepted and closed at once: the descriptor is back before the next accept.
      socket.destroy();
      return;
    }
    this.counters.connections++;
    const conn = new TcpConnection(socket, this, this.limits, this.opts.uncork ?? 'tick', this.opts.readBuffer ?? null);
    this.connections.add(conn);
    try {
      conn.attach(this.opts.handler(conn));
    } catch (err) {
      this.log(`${this.prefix}connection setup failed: ${(err as Error)?.message ?? String(err)}`);
      conn.destroy();
    }
  }

  /** @internal */
  forget(conn: TcpConnection): void {
    this.connections.delete(conn);
  }

  /** @internal a connection was closed by a limit or a timeout */
  closedBy(kind: 'limit' | 'timeout', conn: TcpConnection, reason: string): void {
    if (kind === 'limit') this.counters.limitClosed++;
    else this.counters.timedOut++;
    this.log(`${this.prefix}closing ${conn.remote}: ${reason}`);
  }

  /** @internal a failure inside a handler: logged, the connection is closed, nothing else. */
  failed(conn: TcpConnection, err: unknown): void {
    this.log(`${this.prefix}internal error on ${conn.remote}: ${(err as Error)?.stack ?? String(err)}`);
  }

  /** @internal Over budget: close the heaviest connections until under it (or nothing left to close). */
  checkBudget(): void {
    while (this.clientBytes > this.limits.maxTotalBytes) {
      let victim: TcpConnection | null = null;
      for (const c of this.connections) {
        if (!c.isClosed && c.weight > 0 && (victim === null || c.weight > victim.weight)) victim = c;
      }
      if (victim === null) return;
      victim.closeForLimit(
        `server memory budget of ${this.limits.maxTotalBytes} bytes exceeded (${this.clientBytes} held); closing the heaviest connection (${victim.weight} bytes)`,
      );
    }
  }

  /** @internal in-flight bytes dropped below the server cap: every waiting connection may go on. */
  wakeAll(): void {
    for (const c of [...this.connections]) c.wake();
  }

  private startSweeper(): void {
    if (this.sweeper) return;
    const { idleTimeoutMs, requestTimeoutMs } = this.limits;
    const shortest = Math.min(...[idleTimeoutMs, requestTimeoutMs].filter((t) => t > 0), 60_000);
    const interval = Math.max(10, Math.min(1_000, Math.floor(shortest / 4)));
    this.sweeper = setInterval(() => this.sweep(), interval);
    this.sweeper.unref();
  }

  /**
   * Timeouts by sweep, not a timer per request: a connection only bumps a
   * counter per request, and the sweep compares counters between passes.
   * Precision is one sweep interval (a quarter of the shortest timeout).
   */
  private sweep(): void {
    const now = Date.now();
    for (const c of [...this.connections]) c.sweep(now);
  }
}

/**
 * One accepted connection as the protocol handler sees it: a socket plus the
 * accounting that keeps its memory bounded.
 */
export class TcpConnection {
  readonly remote: string;
  /** Complete requests seen (timeouts compare it between sweeps). */
  requests = 0;
  inflight = 0;
  inflightBytes = 0;
  /** Request bytes the handler holds: buffered, partly parsed. */
  bufferedBytes = 0;
  /** A request has been started but not finished. */
  partial = false;
  private queuedSeen = 0; // writableLength when last observed (accounted in the service)
  private handler: ConnectionHandler | null = null;
  private corked = false;
  private paused = false;
  private stopping = false;
  private ending = false;
  private closedFlag = false;
  /** Its bytes are out of the service's budget (closing): no more accounting. */
  private released = false;
  private queuedCap: number;
  private drainTimer: NodeJS.Timeout | null = null;
  private sweepRequests = -1;
  private sweepQueued = 0;
  private idleSince = Date.now();
  private stalledSince = 0;
  private readonly closedPromise: Promise<void>;

  constructor(
    readonly socket: Socket,
    private readonly service: TcpService,
    private readonly limits: TcpServiceLimits,
    private readonly uncorkMode: 'tick' | 'turn',
    private readonly readBuffer: Buffer | null = null,
  ) {
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`;
    this.queuedCap = limits.maxQueuedBytes;
    // Before any read is delivered (that takes a turn of the event loop): the handler, made next, can ask.
    const shared = readBuffer;
    this.transientReads = shared !== null && readInto(socket, shared, (n) => this.onData(shared.subarray(0, n)));
    this.closedPromise = new Promise((resolve) => socket.once('close', () => {
      this.onClose();
      resolve();
    }));
  }

  /**
   * The chunks data() gets are views of the service's shared read buffer
   * (TcpServiceOptions.readBuffer), overwritten by the next read: copy what is kept.
   */
  readonly transientReads: boolean;

  private onData(chunk: Buffer): void {
    if (this.stopping || this.closedFlag || this.handler === null) return; // nothing sent after we stopped taking requests matters
    // guard() inline: no closure per read.
    try {
      this.handler.data(chunk);
    } catch (err) {
      this.service.failed(this, err);
      this.destroy();
    }
    this.updateReading();
  }

  /** @internal */
  attach(handler: ConnectionHandler): void {
    this.handler = handler;
    const socket = this.socket;
    if (!this.transientReads) socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => {
      this.observeQueued();
      this.wake();
    });
    socket.on('end', () => {
      if (this.closedFlag) return;
      if (handler.end) this.guard(() => handler.end!());
      else this.endGracefully();
    });
  }

  get isClosed(): boolean {
    return this.closedFlag;
  }

  /** True once the handler should take no more requests (stopping, ending or closed). */
  get isStopping(): boolean {
    return this.stopping || this.closedFlag;
  }

  /** Reply bytes queued in the socket for this client (as last observed). */
  get queuedBytes(): number {
    return this.queuedSeen;
  }

  /** How much this connection holds that only its client can release (the eviction order). */
  get weight(): number {
    return this.bufferedBytes + this.queuedBytes;
  }

  /** May the handler take another request now? */
  canAccept(): boolean {
    return (
      !this.stopping &&
      !this.closedFlag &&
      this.inflight < this.limits.maxInflight &&
      this.inflightBytes < this.limits.maxInflightBytes &&
      this.socket.writableLength <= this.queuedCap &&
      this.service.inflightBytes < this.limits.maxInflightBytesTotal
    );
  }

  /** A phase with its own, smaller output cap (NBD negotiation). Null restores the service's. */
  setQueuedCap(bytes: number | null): void {
    this.queuedCap = bytes ?? this.limits.maxQueuedBytes;
  }

  /** Report the request bytes the handler holds; beyond `maxBufferedBytes` the connection is closed. */
  setBuffered(bytes: number, partial = bytes > 0): void {
    if (this.released || this.socket.destroyed) return;
    this.partial = partial;
    if (bytes === this.bufferedBytes) return;
    this.service.clientBytes += bytes - this.bufferedBytes;
    this.bufferedBytes = bytes;
    if (bytes > this.limits.maxBufferedBytes) {
      this.closeForLimit(`holds ${bytes} request bytes, over the limit of ${this.limits.maxBufferedBytes}`);
      return;
    }
    this.service.checkBudget();
  }

  /** A request was taken and runs asynchronously; `bytes` is what it holds until `end`. */
  begin(bytes = 0): void {
    this.requests++;
    this.inflight++;
    this.inflightBytes += bytes;
    this.service.inflightBytes += bytes;
  }

  /** `requests` taken with `begin` finished (their replies, if any, already sent); `bytes` is what they held. */
  end(bytes = 0, requests = 1): void {
    this.inflight -= requests;
    this.inflightBytes -= bytes;
    const total = this.service.inflightBytes;
    this.service.inflightBytes -= bytes;
    if (this.stopping) {
      if (this.inflight === 0) this.finish();
      return;
    }
    if (total >= this.limits.maxInflightBytesTotal && this.service.inflightBytes < this.limits.maxInflightBytesTotal) {
      this.service.wakeAll();
    } else {
      this.wake();
    }
  }

  /** A request handled synchronously (its reply already sent). */
  count(): void {
    this.requests++;
  }

  /** Whether send() queues bytes now (and so will call its `written` callback). */
  get sendable(): boolean {
    return !this.closedFlag && !this.socket.destroyed && this.socket.writable;
  }

  /**
   * Queue a reply. Replies sent in the same tick (or turn) leave in one writev;
   * `alone` (the caller sends nothing else now) writes at once, uncorked.
   * A client whose queued replies pass `maxOutputBytes` is closed. `written`
   * is called once the socket is done with `bytes` (written, or failed), so
   * the caller may reuse them; not at all when they were never queued.
   */
  send(bytes: Buffer, written?: (err?: Error | null) => void, alone = false): void {
    const socket = this.socket;
    if (!this.sendable) return;
    // `alone`: the caller's only buffer this turn, written at once (no cork, and no tick to lift it).
    if (!this.corked && !alone) {
      this.corked = true;
      socket.cork();
      if (this.uncorkMode === 'tick') process.nextTick(uncork, this);
      else setImmediate(uncork, this);
    }
    socket.write(bytes, written);
    this.checkOutput();
  }

  /** End after flushing: stop taking requests, close once nothing is in flight. */
  endGracefully(): void {
    if (this.closedFlag) return;
    this.stopTaking();
    if (this.inflight === 0) this.finish();
  }

  /** Close at once (a protocol violation that leaves the stream unframed). */
  destroy(): void {
    this.stopping = true;
    this.release();
    this.socket.destroy();
  }

  /** Close because a limit was hit: counted and logged. */
  closeForLimit(reason: string): void {
    if (this.closedFlag || this.released) return;
    this.service.closedBy('limit', this, reason);
    this.release();
    this.destroy();
  }

  /** @internal graceful stop of the whole service */
  shutdown(): Promise<void> {
    if (!this.closedFlag) {
      this.stopTaking();
      if (this.handler?.stop) this.guard(() => this.handler!.stop!());
      if (this.inflight === 0) this.finish();
    }
    return this.closedPromise;
  }

  /** @internal there may be room again: let the handler continue, then decide about reading. */
  wake(): void {
    if (this.closedFlag || this.stopping || this.handler === null) return;
    if (this.canAccept()) this.guard(() => this.handler!.resume());
    this.updateReading();
  }

  /** @internal */
  uncorkNow(): void {
    this.corked = false;
    this.socket.uncork();
    this.observeQueued();
  }

  /**
   * @internal Timeouts. Progress is a request completed or queued replies
   * shrinking. Waiting on the client (a started request while we read, or
   * replies it does not read) without progress for requestTimeoutMs closes;
   * nothing at all (no request, none started, none in flight, nothing queued)
   * for idleTimeoutMs closes too.
   */
  sweep(now: number): void {
    if (this.closedFlag || this.released) return;
    this.observeQueued();
    const progressed = this.requests !== this.sweepRequests || this.queuedSeen < this.sweepQueued;
    this.sweepRequests = this.requests;
    this.sweepQueued = this.queuedSeen;
    const { idleTimeoutMs, requestTimeoutMs } = this.limits;
    const waitingOnClient = (this.partial && !this.paused) || this.queuedSeen > 0;
    if (!waitingOnClient || this.stopping) this.stalledSince = 0;
    else if (progressed || this.stalledSince === 0) this.stalledSince = now;
    else if (requestTimeoutMs > 0 && now - this.stalledSince >= requestTimeoutMs) {
      return this.timeout(this.partial && this.queuedSeen === 0 ? `request not completed within ${requestTimeoutMs} ms` : `replies not read for ${requestTimeoutMs} ms`);
    }
    if (progressed || this.partial || this.inflight > 0 || this.queuedSeen > 0) this.idleSince = now;
    else if (idleTimeoutMs > 0 && now - this.idleSince >= idleTimeoutMs) this.timeout(`idle for ${idleTimeoutMs} ms`);
  }

  private timeout(reason: string): void {
    this.service.closedBy('timeout', this, reason);
    this.release();
    this.destroy();
  }

  private checkOutput(): void {
    this.observeQueued();
    if (this.queuedBytes > this.limits.maxOutputBytes) {
      this.closeForLimit(`${this.queuedBytes} reply bytes queued for a client that does not read, over the limit of ${this.limits.maxOutputBytes}`);
      return;
    }
    this.service.checkBudget();
  }

  private observeQueued(): void {
    if (this.released || this.socket.destroyed) return;
    const q = this.socket.writableLength;
    this.service.clientBytes += q - this.queuedSeen;
    this.queuedSeen = q;
  }

  private updateReading(): void {
    if (this.closedFlag) return;
    const pause = this.stopping || !this.canAccept();
    if (pause && !this.paused) {
      this.paused = true;
      this.socket.pause();
    } else if (!pause && this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }

  private stopTaking(): void {
    this.stopping = true;
    this.paused = true;
    this.socket.pause();
  }

  private finish(): void {
    if (this.ending || this.closedFlag || this.socket.destroyed) return;
    this.ending = true;
    const socket = this.socket;
    if (this.corked) this.uncorkNow();
    socket.end();
    // Read on, discarding (the data handler ignores a stopping connection), so the peer's FIN is seen and
    // the socket closes; a peer that never reads its last replies or never ends is cut off.
    socket.resume();
    this.drainTimer = setTimeout(() => socket.destroy(), this.limits.drainTimeoutMs);
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.service.failed(this, err);
      this.destroy();
    }
  }

  /** Take this connection's bytes out of the service's budget (it is going away). */
  private release(): void {
    if (this.released) return;
    this.released = true;
    this.service.clientBytes -= this.bufferedBytes + this.queuedSeen;
    this.bufferedBytes = 0;
    this.queuedSeen = 0;
  }

  private onClose(): void {
    if (this.drainTimer) clearTimeout(this.drainTimer);
    this.release();
    this.closedFlag = true;
    this.stopping = true;
    this.service.forget(this);
    if (this.handler?.closed) {
      try {
        this.handler.closed();
      } catch (err) {
        this.service.failed(this, err);
      }
    }
  }
}

/**
 * Make an accepted socket read into `buffer` and call `onRead(bytes)` instead
 * of emitting 'data' with a fresh Buffer per read: what net.Socket's `onread`
 * option does for client sockets, which net.Server does not pass on to the
 * sockets it accepts (Node 20). It sets the same per-socket fields that
 * option sets (found by their symbol descriptions) before the first read is
 * delivered; pause() and resume() then stop and start the handle's reads as
 * for any `onread` socket. False (nothing changed) when this Node's sockets
 * lack those fields.
 */
function readInto(socket: Socket, buffer: Buffer, onRead: (bytes: number) => void): boolean {
  const own = socket as unknown as Record<symbol, unknown>;
  const symbols = Object.getOwnPropertySymbols(socket);
  const kBuffer = symbols.find((x) => x.description === 'kBuffer');
  const kBufferCb = symbols.find((x) => x.description === 'kBufferCb');
  const kBufferGen = symbols.find((x) => x.description === 'kBufferGen');
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (b: Uint8Array) => void } | null })._handle;
  if (kBuffer === undefined || kBufferCb === undefined || kBufferGen === undefined || own[kBuffer] !== null || own[kBufferGen] !== null) return false;
  if (!handle || typeof handle.useUserBuffer !== 'function') return false;
  handle.useUserBuffer(buffer);
  own[kBuffer] = buffer;
  own[kBufferCb] = (n: number) => {
    onRead(n);
    // Not false: reading is paused and resumed by the connection (updateReading), not by this return value.
    return undefined;
  };
  return true;
}

function uncork(conn: TcpConnection): void {
  conn.uncorkNow();
}

function definedOnly<T extends object>(o: Partial<T>): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function checkLimits(l: TcpServiceLimits): void {
  for (const [k, v] of Object.entries(l)) {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`tcp service limit ${k} must be a non-negative integer, got ${String(v)}`);
  }
  if (l.maxConnections < 1) throw new RangeError(`tcp service limit maxConnections must be at least 1, got ${l.maxConnections}`);
  if (l.maxInflight < 1) throw new RangeError(`tcp service limit maxInflight must be at least 1, got ${l.maxInflight}`);
}
