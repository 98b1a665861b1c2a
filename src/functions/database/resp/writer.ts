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
const EMPTY = Buffer.alloc(0);
/**
 * Bulk replies up to this size are copied when encoded; larger ones are sent
 * by reference. Stored strings up to it may be overwritten in place
 * (store/keyspace.ts IN_PLACE_MAX): a reply never holds one of them.
 */
export const SMALL_BULK = 16 * 1024;
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

/**
 * Memory reused for the next socket read (the RESP server's shared read
 * buffer): replies are sent by reference only from memory not in here.
 */
const transientBuffers = new WeakSet<ArrayBufferLike>();
let anyTransient = false;

/** `buf` is overwritten by later reads: a bulk reply that is a view of it is copied, not held. */
export function markTransient(buf: Buffer): void {
  transientBuffers.add(buf.buffer);
  anyTransient = true;
}

/** Size of a reply slab (slabs of this size are pooled; a reply larger than one gets its own buffer). */
export const SLAB_BYTES = 64 * 1024;
/**
 * Free slabs kept for reuse, for the whole process (or guest thread): 64 of
 * 64 KiB, 4 MiB at most. Slabs in use are bounded by what the connections
 * hold (their current slab, and queued replies under the output limits);
 * beyond this many free ones a released slab is left to the collector.
 */
export const SLAB_POOL_MAX = 64;

/**
 * A slab replies are encoded into, lent to one writer at a time. The pieces
 * cut from it go to the socket; `done` is the write callback of each piece
 * (bound once per slab, so sending allocates no closure). The slab goes back
 * to the pool only once its writer moved on (or left it idle) and the socket
 * is done with every piece: bytes handed to the socket are never written again
 * before their write completed.
 */
export class Slab {
  /** Pieces handed out and not written yet. */
  refs = 0;
  /** The writer encoding into it, or null once retired (full, or the writer went idle). */
  writer: ReplyWriter | null = null;
  readonly done: (err?: Error | null) => void;

  constructor(readonly buf: Buffer) {
    this.done = () => this.release();
  }

  /** One piece is written (or will never be): back to the pool when nothing else holds it. */
  release(): void {
    if (--this.refs > 0) return;
    const w = this.writer;
    // The writer's current slab with nothing waiting in it: idle, so lend it to whoever writes next.
    if (w !== null && !w.idleRelease(this)) return;
    this.writer = null;
    putSlab(this);
  }
}

const freeSlabs: Slab[] = [];
/** Slabs allocated (not taken from the pool) since start: tests and the bench read it. */
export const slabStats = { allocated: 0, reused: 0 };

function getSlab(): Slab {
  const s = freeSlabs.pop();
  if (s !== undefined) {
    slabStats.reused++;
    return s;
  }
  slabStats.allocated++;
  return new Slab(Buffer.allocUnsafeSlow(SLAB_BYTES));
}

function putSlab(s: Slab): void {
  if (s.buf.length === SLAB_BYTES && freeSlabs.length < SLAB_POOL_MAX) freeSlabs.push(s);
}

/** Free slabs in the pool now. */
export const freeSlabCount = (): number => freeSlabs.length;

/**
 * Encodes replies back to back into a slab, so a tick's replies to one client
 * leave as one Buffer (one socket write) instead of one allocation and one
 * write per reply. `take()` cuts what was written since the last take, with
 * the slab of each piece; the writer goes on in the same slab after it. The
 * taker sends each piece with its slab's `done` as the write callback (or
 * calls it when the piece is not sent): slabs return to a shared pool once
 * written, so steady traffic allocates no slab. A writer holds at most one
 * slab, and none while idle. Bulk values over SMALL_BULK are handed out by
 * reference, not copied.
 */
export class ReplyWriter {
  private slab: Slab | null = null;
  private start = 0;
  private pos = 0;
  /**
   * Buffers to send before the slab bytes from `start` (large bulks, released
   * replies, cut slab pieces), in order: the first `count` entries. Written by
   * index and never shortened (emptying an array frees its backing store, and
   * the next push allocates one again: per reply at -P 1).
   */
  private readonly parts: Buffer[] = [];
  /** The slab of each part (null: not a slab piece). */
  private readonly owners: (Slab | null)[] = [];
  private count = 0;

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

  /** Append already encoded bytes by reference (after everything written so far); `owner` is their slab, if any. */
  append(bytes: Buffer, owner: Slab | null = null): void {
    this.cut();
    this.add(bytes, owner);
  }

  /**
   * Everything written since the last take, in order (nothing when nothing
   * was), with the slab of each piece in `owners` (null for the others).
   * Every slab piece taken must be released once: `owner.done` as the write
   * callback, or `owner.release()` when it is dropped.
   */
  take(out: Buffer[], owners: (Slab | null)[]): void {
    this.cut();
    for (let i = 0; i < this.count; i++) {
      out.push(this.parts[i]);
      owners.push(this.owners[i]);
    }
    this.clear();
  }

  /**
   * Hand everything written since the last take to `send`, in order, with
   * the slab of each piece (as take, without lists in between: the send path
   * of every flush), and whether it is the only piece (nothing to gather
   * into one writev with it). `send` must not write to this writer.
   */
  drain(send: (bytes: Buffer, owner: Slab | null, alone: boolean) => void): void {
    this.cut();
    const alone = this.count === 1;
    for (let i = 0; i < this.count; i++) send(this.parts[i], this.owners[i], alone);
    this.clear();
  }

  private add(bytes: Buffer, owner: Slab | null): void {
    this.parts[this.count] = bytes;
    this.owners[this.count] = owner;
    this.count++;
    this.partsBytes += bytes.length;
  }

  /** Forget the parts handed out (dropping the references, keeping the arrays' room). */
  private clear(): void {
    for (let i = 0; i < this.count; i++) {
      this.parts[i] = EMPTY;
      this.owners[i] = null;
    }
    this.count = 0;
    this.partsBytes = 0;
  }

  /** @internal A slab piece was written and `s` holds nothing else: keep it (not idle) or give it up. */
  idleRelease(s: Slab): boolean {
    if (this.slab !== s) return true;
    if (this.pos > this.start) return false; // replies are being written into it
    this.slab = null;
    this.start = 0;
    this.pos = 0;
    return true;
  }

  private cut(): void {
    if (this.pos > this.start) {
      const s = this.slab!;
      s.refs++;
      this.add(s.buf.subarray(this.start, this.pos), s);
      this.start = this.pos;
    }
  }

  /** Make room for n bytes in the current slab (a fresh one if they do not fit); returns its buffer. */
  private room(n: number): Buffer {
    const cur = this.slab;
    if (cur !== null && this.pos + n <= cur.buf.length) return cur.buf;
    this.cut();
    if (cur !== null) {
      cur.writer = null;
      if (cur.refs === 0) putSlab(cur);
    }
    const next = n <= SLAB_BYTES ? getSlab() : new Slab(Buffer.allocUnsafeSlow(n));
    next.writer = this;
    this.slab = next;
    this.start = 0;
    this.pos = 0;
    return next.buf;
  }

  private raw(b: Buffer): void {
    const buf = this.room(b.length);
    buf.set(b, this.pos);
    this.pos += b.length;
  }

  private ascii(s: string): void {
    const buf = this.room(s.length);
    this.pos += buf.write(s, this.pos, 'latin1');
  }

  private bulk(b: Buffer): void {
    const n = b.length;
    if (n > SMALL_BULK) {
      this.ascii(`$${n}\r\n`);
      // Held until written: a view of a read buffer that the next read overwrites (an argument echoed back) is copied.
      this.append(anyTransient && transientBuffers.has(b.buffer) ? Buffer.from(b) : b);
      this.raw(CRLF_BYTES);
      return;
    }
    const slab = this.room(n + 20);
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
