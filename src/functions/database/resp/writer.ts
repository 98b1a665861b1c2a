/**
 * RESP2 reply values and their encoding. Commands return a Reply value; the
 * connection encodes it once. Keeping replies as values (not bytes) lets tests
 * compare them with what redis-server sends.
 */

/** "+OK" style status reply. */
export class SimpleString {
  constructor(readonly text: string) {}
}

/** "-ERR ..." reply; `message` includes the error code word (ERR, WRONGTYPE, ...). */
export class ErrorReply {
  constructor(readonly message: string) {}
}

/** Several replies to one command, sent back to back (SUBSCRIBE a b answers once per channel). */
export class ReplySequence {
  constructor(readonly items: Reply[]) {}
}

/** "*-1": the null array (e.g. LPOP key count on a missing key). */
export const NULL_ARRAY = Symbol('null array');

/** A reply: status, error, integer, bulk string (Buffer), null bulk (null), array, or null array. */
export type Reply = SimpleString | ErrorReply | number | bigint | Buffer | null | Reply[] | typeof NULL_ARRAY | ReplySequence;

export const OK = new SimpleString('OK');
export const PONG = new SimpleString('PONG');

const CRLF_BYTES = Buffer.from('\r\n');
/** Bulk replies up to this size are copied into one buffer; larger ones are sent by reference. */
const SMALL_BULK = 16 * 1024;
const NULL_BULK = Buffer.from('$-1\r\n');
const NULL_ARRAY_BYTES = Buffer.from('*-1\r\n');
const OK_BYTES = Buffer.from('+OK\r\n');

/** Shared replies, so hot commands allocate nothing for them. */
const smallIntegers: Buffer[] = Array.from({ length: 1024 }, (_, i) => Buffer.from(`:${i}\r\n`));

/** Encode a reply, pushing the resulting buffers onto `out` (no big concatenations). */
export function encodeReply(reply: Reply, out: Buffer[]): void {
  if (reply === null) {
    out.push(NULL_BULK);
  } else if (reply === NULL_ARRAY) {
    out.push(NULL_ARRAY_BYTES);
  } else if (Buffer.isBuffer(reply)) {
    if (reply.length <= SMALL_BULK) {
      // One allocation for header, data and CRLF: most replies are small.
      const header = `$${reply.length}\r\n`;
      const b = Buffer.allocUnsafe(header.length + reply.length + 2);
      b.write(header, 0, 'latin1');
      reply.copy(b, header.length);
      b[b.length - 2] = 13;
      b[b.length - 1] = 10;
      out.push(b);
    } else {
      out.push(Buffer.from(`$${reply.length}\r\n`, 'latin1'), reply, CRLF_BYTES);
    }
  } else if (typeof reply === 'number' || typeof reply === 'bigint') {
    if (typeof reply === 'number' && reply >= 0 && reply < smallIntegers.length) out.push(smallIntegers[reply]);
    else out.push(Buffer.from(`:${reply}\r\n`, 'latin1'));
  } else if (reply === OK) {
    out.push(OK_BYTES);
  } else if (reply instanceof SimpleString) {
    out.push(Buffer.from(`+${reply.text}\r\n`, 'latin1'));
  } else if (reply instanceof ErrorReply) {
    // Redis replaces newlines inside error text so the reply stays one line.
    out.push(Buffer.from(`-${reply.message.replace(/[\r\n]/g, ' ')}\r\n`, 'latin1'));
  } else if (reply instanceof ReplySequence) {
    for (const item of reply.items) encodeReply(item, out);
  } else {
    out.push(Buffer.from(`*${reply.length}\r\n`, 'latin1'));
    for (const item of reply) encodeReply(item, out);
  }
}

/** Encode a reply into one buffer (tests and small paths). */
export function encodeReplyToBuffer(reply: Reply): Buffer {
  const out: Buffer[] = [];
  encodeReply(reply, out);
  return Buffer.concat(out);
}

/** Slabs replies are written into; a slab is used until full, sent bytes are never written again. */
const SLAB_BYTES = 64 * 1024;

/**
 * Encodes replies back to back into a slab, so a tick's replies to one client
 * leave as one Buffer (one socket write) instead of one allocation and one
 * write per reply. `take()` cuts what was written since the last take; the
 * slab goes on after it (the bytes handed out stay untouched until the
 * socket is done with them, as Node's own buffer pool works). Bulk values
 * over SMALL_BULK are handed out by reference, not copied.
 */
export class ReplyWriter {
  private slab: Buffer = Buffer.allocUnsafe(SLAB_BYTES);
  private start = 0;
  private pos = 0;
  /** Buffers to send before the slab bytes from `start` (large bulks, released replies), in order. */
  private readonly parts: Buffer[] = [];

  /** Bytes of `parts`. */
  private partsBytes = 0;

  /** Bytes written (or appended) since the last take. */
  get pendingBytes(): number {
    return this.partsBytes + this.pos - this.start;
  }

  /** Encode one reply after everything written before. */
  write(reply: Reply): void {
    if (reply === null) this.raw(NULL_BULK);
    else if (reply === NULL_ARRAY) this.raw(NULL_ARRAY_BYTES);
    else if (Buffer.isBuffer(reply)) this.bulk(reply);
    else if (typeof reply === 'number') {
      if (reply >= 0 && reply < smallIntegers.length) this.raw(smallIntegers[reply]);
      else this.ascii(`:${reply}\r\n`);
    } else if (typeof reply === 'bigint') this.ascii(`:${reply}\r\n`);
    else if (reply === OK) this.raw(OK_BYTES);
    else if (reply instanceof SimpleString) this.ascii(`+${reply.text}\r\n`);
    else if (reply instanceof ErrorReply) this.ascii(`-${reply.message.replace(/[\r\n]/g, ' ')}\r\n`);
    else if (reply instanceof ReplySequence) for (const item of reply.items) this.write(item);
    else {
      this.ascii(`*${reply.length}\r\n`);
      for (const item of reply) this.write(item);
    }
  }

  /** Append already encoded bytes by reference (after everything written so far). */
  append(bytes: Buffer): void {
    this.cut();
    this.parts.push(bytes);
    this.partsBytes += bytes.length;
  }

  /** Everything written since the last take, in order (empty when nothing was). */
  take(out: Buffer[]): void {
    this.cut();
    for (const p of this.parts) out.push(p);
    this.parts.length = 0;
    this.partsBytes = 0;
  }

  private cut(): void {
    if (this.pos > this.start) {
      this.parts.push(this.slab.subarray(this.start, this.pos));
      this.partsBytes += this.pos - this.start;
      this.start = this.pos;
    }
  }

  private room(n: number): void {
    if (this.pos + n <= this.slab.length) return;
    this.cut();
    this.slab = Buffer.allocUnsafe(Math.max(SLAB_BYTES, n));
    this.start = 0;
    this.pos = 0;
  }

  private raw(b: Buffer): void {
    this.room(b.length);
    this.pos += b.copy(this.slab, this.pos);
  }

  private ascii(s: string): void {
    this.room(s.length);
    this.pos += this.slab.write(s, this.pos, 'latin1');
  }

  private bulk(b: Buffer): void {
    const n = b.length;
    if (n > SMALL_BULK) {
      this.ascii(`$${n}\r\n`);
      this.append(b);
      this.raw(CRLF_BYTES);
      return;
    }
    this.room(n + 20);
    const slab = this.slab;
    let p = this.pos;
    slab[p++] = 0x24; // $
    p = writeDecimal(slab, p, n);
    slab[p++] = 13;
    slab[p++] = 10;
    slab.set(b, p); // TypedArray set: no Buffer.copy argument handling for a small copy
    p += n;
    slab[p++] = 13;
    slab[p++] = 10;
    this.pos = p;
  }
}

/** Write a non-negative integer in decimal at p; returns the position after it. */
function writeDecimal(b: Buffer, p: number, n: number): number {
  if (n < 10) {
    b[p] = 48 + n;
    return p + 1;
  }
  let digits = 0;
  for (let x = n; x > 0; x = Math.floor(x / 10)) digits++;
  for (let i = digits - 1, x = n; i >= 0; i--, x = Math.floor(x / 10)) b[p + i] = 48 + (x % 10);
  return p + digits;
}
