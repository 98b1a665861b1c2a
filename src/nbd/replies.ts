import type { NbdRequest } from './request-parser.ts';
import {
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  SIMPLE_REPLY_HEADER_BYTES,
  STRUCTURED_REPLY_HEADER_BYTES,
} from './protocol.ts';

/** A READ reply is built in one buffer: header first, the device reads straight into `data`. */
export interface ReadReply {
  bytes: Buffer;
  data: Buffer;
}

/** The request a reply answers: only its cookie is echoed. */
type Cookie = Pick<NbdRequest, 'cookieHigh' | 'cookieLow'>;

function writeCookie(b: Buffer, at: number, req: Cookie): void {
  b.writeUInt32BE(req.cookieHigh, at);
  b.writeUInt32BE(req.cookieLow, at + 4);
}

export function simpleReply(req: Cookie, error: number): Buffer {
  const b = Buffer.allocUnsafe(SIMPLE_REPLY_HEADER_BYTES);
  b.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error, 4);
  writeCookie(b, 8, req);
  return b;
}

/** `into`: memory to build the reply in (at least header + length bytes; see reply-pool.ts), else a fresh buffer. */
export function simpleReadReply(req: Cookie, length: number, into?: Buffer): ReadReply {
  const bytes = into !== undefined ? into.subarray(0, SIMPLE_REPLY_HEADER_BYTES + length) : Buffer.allocUnsafe(SIMPLE_REPLY_HEADER_BYTES + length);
  bytes.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
  bytes.writeUInt32BE(0, 4);
  writeCookie(bytes, 8, req);
  return { bytes, data: bytes.subarray(SIMPLE_REPLY_HEADER_BYTES) };
}

function structuredHeader(b: Buffer, req: Cookie, type: number, payloadLength: number): void {
  b.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, 0);
  b.writeUInt16BE(NBD_REPLY_FLAG_DONE, 4);
  b.writeUInt16BE(type, 6);
  writeCookie(b, 8, req);
  b.writeUInt32BE(payloadLength, 16);
}

/** One OFFSET_DATA chunk marked DONE: we never split a read (which is why DF is free). */
export function structuredReadReply(req: Cookie, offset: number, length: number, into?: Buffer): ReadReply {
  if (length === 0) {
    // Nothing to cover: a lone NONE chunk ends the reply successfully.
    const bytes = Buffer.allocUnsafe(STRUCTURED_REPLY_HEADER_BYTES);
    structuredHeader(bytes, req, NBD_REPLY_TYPE_NONE, 0);
    return { bytes, data: bytes.subarray(STRUCTURED_REPLY_HEADER_BYTES) };
  }
  const total = STRUCTURED_REPLY_HEADER_BYTES + 8 + length;
  const bytes = into !== undefined ? into.subarray(0, total) : Buffer.allocUnsafe(total);
  structuredHeader(bytes, req, NBD_REPLY_TYPE_OFFSET_DATA, 8 + length);
  // The offset in two halves: no BigInt per reply (offsets are below 2^53).
  bytes.writeUInt32BE(Math.floor(offset / 2 ** 32), STRUCTURED_REPLY_HEADER_BYTES);
  bytes.writeUInt32BE(offset >>> 0, STRUCTURED_REPLY_HEADER_BYTES + 4);
  return { bytes, data: bytes.subarray(STRUCTURED_REPLY_HEADER_BYTES + 8) };
}

/** An ERROR chunk (DONE) carrying a short human-readable message. */
export function structuredErrorReply(req: Cookie, error: number, message: string): Buffer {
  const msg = Buffer.from(message.slice(0, 1024));
  const bytes = Buffer.allocUnsafe(STRUCTURED_REPLY_HEADER_BYTES + 6 + msg.length);
  structuredHeader(bytes, req, NBD_REPLY_TYPE_ERROR, 6 + msg.length);
  bytes.writeUInt32BE(error, STRUCTURED_REPLY_HEADER_BYTES);
  bytes.writeUInt16BE(msg.length, STRUCTURED_REPLY_HEADER_BYTES + 4);
  msg.copy(bytes, STRUCTURED_REPLY_HEADER_BYTES + 6);
  return bytes;
}
