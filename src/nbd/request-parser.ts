import type { ByteQueue } from './byte-queue.ts';
import { NBD_CMD_WRITE, NBD_REQUEST_MAGIC, REQUEST_HEADER_BYTES } from './protocol.ts';

/** One transmission request as it came off the wire. */
export interface NbdRequest {
  flags: number;
  type: number;
  /** The 64-bit cookie (handle), opaque to us: two 32-bit halves to echo back without a BigInt or a copy. */
  cookieHigh: number;
  cookieLow: number;
  /** Byte offset; beyond Number.MAX_SAFE_INTEGER it is reported as Infinity (always out of range). */
  offset: number;
  length: number;
  /** The WRITE payload; null for other commands and for an oversized WRITE (its payload was discarded). */
  payload: Buffer | null;
  /** True when `length` exceeded the payload limit: the request must be answered with an error. */
  oversized: boolean;
}

export type ParseResult =
  | { kind: 'need-more' }
  | { kind: 'request'; request: NbdRequest }
  | { kind: 'fatal'; reason: string };

const NEED_MORE: ParseResult = { kind: 'need-more' };
const TWO_POW_32 = 2 ** 32;

/**
 * The transmission-phase parser: header (28 bytes), then the payload for a
 * WRITE. The payload length is checked against the limit the moment the
 * header is complete, so an oversized WRITE is skipped as it streams in
 * instead of being buffered. A bad magic is fatal: the stream can no longer
 * be framed, so the only safe move is to close.
 */
export class RequestParser {
  private header: NbdRequest | null = null; // a WRITE waiting for its payload
  private discardRemaining = 0;
  private readonly scratch = Buffer.allocUnsafe(REQUEST_HEADER_BYTES);

  constructor(private readonly maxPayloadBytes: number) {}

  next(queue: ByteQueue): ParseResult {
    if (this.discardRemaining > 0) {
      this.discardRemaining -= queue.skip(this.discardRemaining);
      if (this.discardRemaining > 0) return NEED_MORE;
      const request = this.header!;
      this.header = null;
      return { kind: 'request', request };
    }
    if (this.header !== null) {
      const request = this.header;
      if (queue.length < request.length) return NEED_MORE;
      request.payload = queue.take(request.length);
      this.header = null;
      return { kind: 'request', request };
    }
    if (queue.length < REQUEST_HEADER_BYTES) return NEED_MORE;
    const h = queue.take(REQUEST_HEADER_BYTES, this.scratch);
    const magic = h.readUInt32BE(0);
    if (magic !== NBD_REQUEST_MAGIC) return { kind: 'fatal', reason: `bad request magic 0x${magic.toString(16)}` };
    const offsetHigh = h.readUInt32BE(16);
    const offset = offsetHigh < 0x200000 ? offsetHigh * TWO_POW_32 + h.readUInt32BE(20) : Infinity;
    const request: NbdRequest = {
      flags: h.readUInt16BE(4),
      type: h.readUInt16BE(6),
      cookieHigh: h.readUInt32BE(8),
      cookieLow: h.readUInt32BE(12),
      offset,
      length: h.readUInt32BE(24),
      payload: null,
      oversized: false,
    };
    if (request.type !== NBD_CMD_WRITE) {
      request.oversized = request.length > this.maxPayloadBytes;
      return { kind: 'request', request };
    }
    if (request.length > this.maxPayloadBytes) {
      request.oversized = true;
      this.header = request;
      this.discardRemaining = request.length;
      return this.next(queue);
    }
    this.header = request;
    return this.next(queue);
  }
}
