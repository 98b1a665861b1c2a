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
