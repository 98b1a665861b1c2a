import type { Socket } from 'node:net';
import { ByteQueue } from './byte-queue.ts';
import type { ExportCatalog } from './catalog.ts';
import { serverGreeting, ServerHandshake, type Negotiated } from './handshake.ts';
import { NBD_CMD_DISC, NBD_CMD_READ, NBD_CMD_WRITE } from './protocol.ts';
import { RequestParser, type NbdRequest } from './request-parser.ts';
import type { NbdStats } from './stats.ts';
import { Transmission } from './transmission.ts';

export interface ConnectionOptions {
  catalog: ExportCatalog;
  maxRequestBytes: number;
  stats: NbdStats;
  log: (msg: string) => void;
}

/** Backpressure: stop reading the socket beyond this many requests in flight... */
export const MAX_INFLIGHT_REQUESTS = 128;
/**
 * ...or when this many reply bytes wait in the socket because the client is
 * not reading. (Not the stream's 16 KiB high-water mark: four 4 KiB replies
 * in one corked tick would already exceed it and stall pipelining.)
 */
const MAX_UNSENT_REPLY_BYTES = 8 << 20;

/**
 * One client connection: feeds socket bytes to the handshake, then to the
 * request parser, runs requests concurrently and writes replies in
 * completion order. It stops reading when too much is in flight or the
 * client is not reading its replies, and resumes once that clears.
 */
export class NbdConnection {
  private readonly queue = new ByteQueue();
  private readonly handshake: ServerHandshake;
  private transmission: Transmission | null = null;
  private parser: RequestParser | null = null;
  private inflight = 0;
  private inflightBytes = 0;
  private readonly maxInflightBytes: number;
  private writeBlocked = false;
  private paused = false;
  private corked = false;
  /** No more requests are taken: DISC received, server closing, or a fatal error. */
  private draining = false;
  private ending = false;
  private readonly closed: Promise<void>;

  constructor(
    private readonly socket: Socket,
    private readonly opts: ConnectionOptions,
  ) {
    // ...or this many bytes of READ/WRITE data (at least two maximal requests).
    this.maxInflightBytes = Math.max(64 << 20, 2 * opts.maxRequestBytes);
    this.handshake = new ServerHandshake(opts.catalog, opts.maxRequestBytes, {
      send: (b) => this.send(b),
      enterTransmission: (n) => this.enterTransmission(n),
      close: (reason) => this.endGracefully(reason),
    });
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        // Requests still queued have nobody to answer to.
        this.draining = true;
        this.queue.clear();
        resolve();
      }),
    );
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      if (this.draining) return; // nothing a client sends after DISC or a violation matters
      this.queue.push(chunk);
      this.pump();
    });
    // A reset or a half-closed peer ends only this connection; in-flight work completes into the void.
    socket.on('error', (err) => this.opts.log(`connection error: ${err.message}`));
    socket.on('end', () => this.endGracefully(null));
    this.send(serverGreeting());
  }

  /** Server shutdown: take no new requests, let in-flight ones answer, then close. */
  shutdown(): Promise<void> {
    if (this.transmission === null) this.socket.destroy();
    else this.stopTakingRequests();
    return this.closed;
  }

  private pump(): void {
    if (!this.handshake.done) {
      this.handshake.advance(this.queue);
      if (!this.handshake.done) return;
    }
    const parser = this.parser;
    if (parser === null) return; // negotiation ended without entering transmission
    while (!this.draining && this.canAccept()) {
      const result = parser.next(this.queue);
      if (result.kind === 'need-more') break;
      if (result.kind === 'fatal') return this.abort(result.reason);
      this.dispatch(result.request);
    }
    this.updateReading();
  }

  private enterTransmission(n: Negotiated): void {
    this.transmission = new Transmission(n.export.device, n.structuredReplies, this.opts.stats);
    this.parser = new RequestParser(this.opts.maxRequestBytes);
  }

  private dispatch(req: NbdRequest): void {
    if (req.type === NBD_CMD_DISC) {
      // Soft disconnect: answer what is in flight, then close. Nothing may follow DISC.
      this.stopTakingRequests();
      return;
    }
    const bytes = !req.oversized && (req.type === NBD_CMD_READ || req.type === NBD_CMD_WRITE) ? req.length : 0;
    this.inflight++;
    this.inflightBytes += bytes;
    void this.transmission!.handle(req).then((reply) => {
      this.inflight--;
      this.inflightBytes -= bytes;
      this.send(reply);
      if (this.draining) this.finishIfIdle();
      else this.pump();
    });
  }

  private canAccept(): boolean {
    return this.inflight < MAX_INFLIGHT_REQUESTS && this.inflightBytes < this.maxInflightBytes && !this.writeBlocked;
  }

  private updateReading(): void {
    if (this.draining) return; // reading stopped for good
    const shouldPause = !this.canAccept();
    if (shouldPause && !this.paused) {
      this.paused = true;
      this.socket.pause();
    } else if (!shouldPause && this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }

  /**
   * Replies that complete in the same tick go out in one writev: cork on the
   * first, uncork on the next tick.
   */
  private send(bytes: Buffer): void {
    const socket = this.socket;
    if (socket.destroyed || !socket.writable) return;
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      process.nextTick(() => {
        this.corked = false;
        socket.uncork();
      });
    }
    socket.write(bytes);
    if (socket.writableLength > MAX_UNSENT_REPLY_BYTES && !this.writeBlocked) {
      // 'drain' is due: write() has returned false since the buffer passed the high-water mark.
      this.writeBlocked = true;
      socket.once('drain', () => {
        this.writeBlocked = false;
        this.pump();
      });
    }
  }

  private stopTakingRequests(): void {
    if (this.draining) return;
    this.draining = true;
    this.queue.clear();
    this.socket.pause();
    this.finishIfIdle();
  }

  private finishIfIdle(): void {
    if (this.inflight === 0) this.endGracefully(null);
  }

  /** Flush what we sent, then close both directions; `reason` (a refusal) goes to the log. */
  private endGracefully(reason: string | null): void {
    if (reason !== null) this.opts.log(`closing connection: ${reason}`);
    this.draining = true;
    this.queue.clear();
    if (this.inflight > 0 || this.ending || this.socket.destroyed) return; // the last completion closes
    this.ending = true;
    this.socket.end(() => this.socket.destroy());
  }

  /** A protocol violation that leaves the stream unframed: hard disconnect. */
  private abort(reason: string): void {
    this.opts.log(`dropping connection: ${reason}`);
    this.draining = true;
    this.queue.clear();
    this.socket.destroy();
  }
}
