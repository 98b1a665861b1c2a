import type { ConnectionHandler, TcpConnection } from '../net/tcp-service.ts';
import { ByteQueue } from './byte-queue.ts';
import type { ExportCatalog } from './catalog.ts';
import { redactHostPaths } from './error-map.ts';
import { serverGreeting, ServerHandshake, type Negotiated } from './handshake.ts';
import {
  NBD_CMD_DISC,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_READ,
  NBD_CMD_WRITE,
  NBD_REPLY_TYPE_ERROR,
  NBD_STRUCTURED_REPLY_MAGIC,
  STRUCTURED_REPLY_HEADER_BYTES,
} from './protocol.ts';
import { simpleReadReply, simpleReply, structuredErrorReply, structuredReadReply } from './replies.ts';
import { RequestParser, type NbdRequest } from './request-parser.ts';
import type { NbdStats } from './stats.ts';
import { PooledReply, type ReplyPool } from './reply-pool.ts';
import { Transmission } from './transmission.ts';
import { hasLentRead, type Lease, type LentReadDevice } from './lent-read.ts';
import { LentReply, WriteReply, type LentReplyOwner, type WriteReplyOwner } from './lent-reply.ts';
import { isNoOp, validateRequest, type ExportLimits } from './validate.ts';
import { tracing, trace, S } from '../util/trace.ts';
import { loopAwake } from './awake.ts';

/** Tracing: the reply left with the uncork (a tick queued after the connection's uncork). */
const markWritten = (): void => trace.mark(S.written);
/** Tracing: a reply was handed to the socket. */
function traceReply(): void {
  trace.mark(S.reply);
  process.nextTick(markWritten);
}

export interface ConnectionOptions {
  catalog: ExportCatalog;
  maxRequestBytes: number;
  stats: NbdStats;
  log: (msg: string) => void;
  /** Called once the connection is gone. */
  onClosed?: () => void;
  /** READ reply buffers shared by the server's connections (see reply-pool.ts). */
  replyPool?: ReplyPool;
}

/** Backpressure: stop reading the socket beyond this many requests in flight... */
export const MAX_INFLIGHT_REQUESTS = 128;
/**
 * ...or when this many reply bytes wait in the socket because the client is
 * not reading. (Not the stream's 16 KiB high-water mark: four 4 KiB replies
 * in one corked tick would already exceed it and stall pipelining.)
 */
export const MAX_UNSENT_REPLY_BYTES = 8 << 20;
/**
 * During negotiation the cap is small: option replies are tiny, and a client
 * that streams options without reading the replies must stall at once.
 */
export const MAX_UNSENT_NEGOTIATION_BYTES = 64 << 10;
/**
 * Lent READ payloads (a guest's region memory, see lent-read.ts) this
 * connection may hold while the socket has not written them. Normally the
 * socket takes a tick's replies at once and gives them back within the tick;
 * a client that stops reading would otherwise keep region memory the guest's
 * other requests need. Past this, a read's data is copied into a reply buffer
 * and the memory goes back at once.
 */
export const MAX_LENT_BYTES = 1 << 20;

/**
 * One client connection: feeds socket bytes to the handshake, then to the
 * request parser, runs requests concurrently and writes replies in
 * completion order. The TCP service underneath stops reading when too much
 * is in flight or the client is not reading its replies, and calls
 * `resume()` once that clears.
 */
export class NbdConnection implements ConnectionHandler, LentReplyOwner, WriteReplyOwner {
  private readonly queue = new ByteQueue();
  private readonly handshake: ServerHandshake;
  private transmission: Transmission | null = null;
  private parser: RequestParser | null = null;
  private limits: ExportLimits | null = null;
  /** The parser took a header and waits for the rest (its payload): a request is under way. */
  private midRequest = false;
  /** No more requests are taken: DISC received, server closing, or a fatal error. */
  private draining = false;
  /** The export's device, when it lends read data (a guest's queue driver): READs then go without copy or promise. */
  private lender: LentReadDevice | null = null;
  private readonly lentOps: LentReply[] = [];
  private readonly writeOps: WriteReply[] = [];
  /** Lent payload bytes queued in the socket and not yet written. */
  private lentHeld = 0;

  constructor(
    private readonly conn: TcpConnection,
    private readonly opts: ConnectionOptions,
  ) {
    this.handshake = new ServerHandshake(opts.catalog, opts.maxRequestBytes, {
      send: (b) => conn.send(b),
      enterTransmission: (n) => this.enterTransmission(n),
      close: (reason, limit) => {
        if (limit) conn.closeForLimit(reason ?? 'negotiation limit');
        else this.endGracefully(reason);
      },
      mayContinue: () => conn.canAccept(),
    });
    conn.setQueuedCap(MAX_UNSENT_NEGOTIATION_BYTES);
    // The whole negotiation counts as one request: it must finish within the request timeout.
    conn.setBuffered(0, true);
    conn.send(serverGreeting());
  }

  data(chunk: Buffer): void {
    if (this.draining) return; // nothing a client sends after DISC or a violation matters
    if (tracing) trace.arrived();
    if (loopAwake !== null) loopAwake.arrived();
    this.queue.push(chunk);
    this.pump();
  }

  resume(): void {
    if (!this.draining) this.pump();
  }

  /** A half-closed peer: answer what is in flight, then close. */
  end(): void {
    this.endGracefully(null);
  }

  /** Server shutdown: take no new requests, let in-flight ones answer (the service closes after). */
  stop(): void {
    if (this.transmission === null) this.conn.destroy();
    this.draining = true;
    this.queue.clear();
  }

  closed(): void {
    this.opts.onClosed?.();
    // Requests still queued have nobody to answer to.
    this.draining = true;
    this.queue.clear();
  }

  private pump(): void {
    if (!this.handshake.done) {
      this.handshake.advance(this.queue);
      if (!this.handshake.done) return this.conn.setBuffered(this.queue.length, true);
    }
    const parser = this.parser;
    if (parser === null || this.draining) return; // negotiation ended without entering transmission
    while (!this.draining && this.conn.canAccept()) {
      const before = this.queue.length;
      const result = parser.next(this.queue);
      if (result.kind === 'need-more') {
        if (this.queue.length < before) this.midRequest = true;
        break;
      }
      this.midRequest = false;
      if (result.kind === 'fatal') return this.abort(result.reason);
      this.dispatch(result.request);
    }
    if (!this.draining) this.conn.setBuffered(this.queue.length, this.midRequest || this.queue.length > 0);
  }

  private enterTransmission(n: Negotiated): void {
    this.transmission = new Transmission(n.export.device, n.structuredReplies, this.opts.stats, this.opts.replyPool ?? null);
    this.limits = { size: n.export.device.size, readOnly: n.export.device.readOnly, structuredReplies: n.structuredReplies };
    this.parser = new RequestParser(this.opts.maxRequestBytes);
    this.lender = hasLentRead(n.export.device) ? n.export.device : null;
    this.conn.setQueuedCap(null);
    this.conn.count(); // negotiation complete: progress for the timeouts
  }

  /**
   * A reply is about to go out (before `conn.end` of its request). With
   * nothing else in flight on this connection, the loop stays awake for the
   * client's next request (awake.ts: StayAwake.replied's contract); at depth a
   * request is already on its way and a spin would only burn passes.
   */
  private replying(): void {
    if (tracing) traceReply();
    if (loopAwake !== null && this.conn.inflight === 1) loopAwake.replied();
  }

  private dispatch(req: NbdRequest): void {
    if (tracing) trace.start(S.request);
    if (req.type === NBD_CMD_DISC) {
      // Soft disconnect: answer what is in flight, then close. Nothing may follow DISC.
      this.endGracefully(null);
      return;
    }
    if (isNoOp(req) && validateRequest(req, this.limits!) === 0) {
      // A zero-length request that passed validation touches nothing: answer success here.
      this.opts.stats.requests++;
      this.conn.count();
      this.conn.send(this.noOpReply(req));
      return;
    }
    if (this.lender !== null && !req.oversized) {
      if (req.type === NBD_CMD_READ && this.lend(req)) return;
      if (req.type === NBD_CMD_WRITE && this.writeDirect(req)) return;
    }
    const bytes = !req.oversized && (req.type === NBD_CMD_READ || req.type === NBD_CMD_WRITE) ? req.length : 0;
    this.conn.begin(bytes);
    void this.transmission!.handle(req).then((reply) => {
      this.replying();
      if (reply instanceof PooledReply) this.conn.send(reply.bytes, reply.release);
      else this.conn.send(this.limits!.structuredReplies ? this.wireSafe(req, reply) : reply);
      this.conn.end(bytes);
    });
  }

  /** A READ on the lent path; false when the device declines it (the request then takes the ordinary path). */
  private lend(req: NbdRequest): boolean {
    if (validateRequest(req, this.limits!) !== 0) return false;
    const op = this.lentOps.pop() ?? new LentReply(this);
    op.cookieHigh = req.cookieHigh;
    op.cookieLow = req.cookieLow;
    op.offset = req.offset;
    op.length = req.length;
    op.starting = true;
    const started = this.lender!.readLent(req.offset, req.length, op);
    op.starting = false;
    if (!started) {
      this.lentOps.push(op);
      return false;
    }
    this.opts.stats.requests++;
    this.conn.begin(req.length);
    // A failure reported before readLent returned (a closed queue) is answered now that the request counts.
    const early = op.failure;
    if (early !== null) {
      op.failure = null;
      this.lentFailed(op, early);
    }
    return true;
  }

  /** A WRITE without a promise; false when it does not qualify (FUA on a write-back device, or declined). */
  private writeDirect(req: NbdRequest): boolean {
    if (validateRequest(req, this.limits!) !== 0) return false;
    const fua = (req.flags & NBD_CMD_FLAG_FUA) !== 0;
    if (fua && !this.lender!.writeThrough) return false;
    const op = this.writeOps.pop() ?? new WriteReply(this);
    op.cookieHigh = req.cookieHigh;
    op.cookieLow = req.cookieLow;
    op.length = req.length;
    op.early = undefined;
    op.starting = true;
    const started = this.lender!.writeFrom(req.payload!, req.offset, op, fua);
    op.starting = false;
    if (!started) {
      this.writeOps.push(op);
      return false;
    }
    this.opts.stats.requests++;
    this.conn.begin(req.length);
    const early = op.early;
    if (early !== undefined) {
      op.early = undefined;
      this.writeDone(op, early);
    }
    return true;
  }

  /** @internal A promise-free write finished: its reply. */
  writeDone(op: WriteReply, err: Error | null): void {
    const stats = this.opts.stats;
    let reply: Buffer;
    if (err === null) {
      stats.writes++;
      stats.bytesWritten += op.length;
      reply = simpleReply(op, 0);
    } else {
      reply = this.transmission!.failure(op, err);
      if (this.limits!.structuredReplies) reply = this.wireSafe(op, reply);
    }
    this.writeOps.push(op);
    this.replying();
    this.conn.send(reply);
    this.conn.end(op.length);
  }

  /** @internal A lent read completed: its header and the lent payload go to the socket (one writev with the tick's other replies). */
  lentDone(op: LentReply, data: Buffer, lease: Lease): void {
    const len = op.length;
    const stats = this.opts.stats;
    stats.reads++;
    stats.bytesRead += len;
    const structured = this.limits!.structuredReplies;
    this.replying();
    if (this.lentHeld + len <= MAX_LENT_BYTES && this.conn.sendable) {
      this.lentHeld += len;
      op.lease = lease;
      this.conn.send(op.header(structured));
      this.conn.send(data, op.written);
    } else if (!this.conn.sendable) {
      lease.release(); // nobody to answer
      this.lentOps.push(op);
    } else {
      // The socket is backed up: copy, and give the memory back now.
      const pooled = this.opts.replyPool?.take(len) ?? null;
      const reply = structured ? structuredReadReply(op, op.offset, len, pooled?.raw) : simpleReadReply(op, len, pooled?.raw);
      data.copy(reply.data, 0, 0, len);
      lease.release();
      this.lentOps.push(op);
      if (pooled === null) this.conn.send(reply.bytes);
      else {
        pooled.bytes = reply.bytes;
        this.conn.send(reply.bytes, pooled.release);
      }
    }
    this.conn.end(len);
  }

  /** @internal The socket is done with a lent payload (the lease went back just before). */
  lentWritten(op: LentReply): void {
    this.lentHeld -= op.length;
    this.lentOps.push(op);
  }

  /** @internal A lent read failed: an error reply, as the ordinary path would send. */
  lentFailed(op: LentReply, err: Error): void {
    if (op.starting) {
      op.failure = err;
      return;
    }
    const reply = this.transmission!.failure(op, err);
    this.lentOps.push(op);
    this.conn.send(this.limits!.structuredReplies ? this.wireSafe(op, reply) : reply);
    this.conn.end(op.length);
  }

  private noOpReply(req: NbdRequest): Buffer {
    if (req.type === NBD_CMD_READ && this.limits!.structuredReplies) return structuredReadReply(req, req.offset, 0).bytes;
    return simpleReply(req, 0);
  }

  /**
   * The last stop before the wire for an error chunk: its message must not
   * carry host paths (a device error message names the backing file).
   */
  private wireSafe(req: Pick<NbdRequest, 'cookieHigh' | 'cookieLow'>, reply: Buffer): Buffer {
    const h = STRUCTURED_REPLY_HEADER_BYTES;
    if (reply.length < h + 6 || reply.readUInt16BE(6) !== NBD_REPLY_TYPE_ERROR || reply.readUInt32BE(0) !== NBD_STRUCTURED_REPLY_MAGIC) {
      return reply;
    }
    const message = reply.toString('utf8', h + 6, h + 6 + reply.readUInt16BE(h + 4));
    const safe = redactHostPaths(message);
    return safe === message ? reply : structuredErrorReply(req, reply.readUInt32BE(h), safe);
  }

  /** Flush what we sent, then close both directions; `reason` (a refusal) goes to the log. */
  private endGracefully(reason: string | null): void {
    if (reason !== null) this.opts.log(`closing connection: ${reason}`);
    this.draining = true;
    this.queue.clear();
    this.conn.setBuffered(0, false);
    this.conn.endGracefully();
  }

  /** A protocol violation that leaves the stream unframed: hard disconnect. */
  private abort(reason: string): void {
    this.opts.log(`dropping connection: ${reason}`);
    this.draining = true;
    this.queue.clear();
    this.conn.destroy();
  }
}
