import type { Lease, LentReadTarget, WriteTarget } from './lent-read.ts';
import { NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, NBD_SIMPLE_REPLY_MAGIC, NBD_STRUCTURED_REPLY_MAGIC, SIMPLE_REPLY_HEADER_BYTES, STRUCTURED_REPLY_HEADER_BYTES } from './protocol.ts';

/** What a lent reply reports to (the connection). */
export interface LentReplyOwner {
  lentDone(op: LentReply, data: Buffer, lease: Lease): void;
  lentFailed(op: LentReply, err: Error): void;
  /** The socket is done with the payload of `op` (its lease is released by then). */
  lentWritten(op: LentReply): void;
}

/**
 * One READ on the lent path (pooled per connection): the request's cookie and
 * range, its own header bytes (written to the socket ahead of the lent payload),
 * and the lease held until the socket has written the payload. Its callbacks
 * are bound once, so a read allocates nothing here.
 */
export class LentReply implements LentReadTarget {
  cookieHigh = 0;
  cookieLow = 0;
  offset = 0;
  length = 0;
  lease: Lease | null = null;
  /** Inside readLent: a failure reported now is kept in `failure` for the caller. */
  starting = false;
  failure: Error | null = null;
  private readonly raw = Buffer.allocUnsafeSlow(STRUCTURED_REPLY_HEADER_BYTES + 8);
  private readonly simple = this.raw.subarray(0, SIMPLE_REPLY_HEADER_BYTES);
  private readonly structured = this.raw.subarray(0, STRUCTURED_REPLY_HEADER_BYTES + 8);
  /** The socket's write callback for the payload. */
  readonly written: () => void;

  constructor(private readonly owner: LentReplyOwner) {
    this.written = () => {
      const lease = this.lease;
      this.lease = null;
      lease?.release();
      this.owner.lentWritten(this);
    };
  }

  lentDone(data: Buffer, lease: Lease): void {
    this.owner.lentDone(this, data, lease);
  }

  lentFailed(err: Error): void {
    this.owner.lentFailed(this, err);
  }

  /** The reply header for a successful read of this op's range (valid until the op is reused). */
  header(structured: boolean): Buffer {
    const b = this.raw;
    if (!structured) {
      b.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
      b.writeUInt32BE(0, 4);
      b.writeUInt32BE(this.cookieHigh, 8);
      b.writeUInt32BE(this.cookieLow, 12);
      return this.simple;
    }
    b.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, 0);
    b.writeUInt16BE(NBD_REPLY_FLAG_DONE, 4);
    b.writeUInt16BE(NBD_REPLY_TYPE_OFFSET_DATA, 6);
    b.writeUInt32BE(this.cookieHigh, 8);
    b.writeUInt32BE(this.cookieLow, 12);
    b.writeUInt32BE(8 + this.length, 16);
    b.writeUInt32BE(Math.floor(this.offset / 2 ** 32), STRUCTURED_REPLY_HEADER_BYTES);
    b.writeUInt32BE(this.offset >>> 0, STRUCTURED_REPLY_HEADER_BYTES + 4);
    return this.structured;
  }
}

/** What a write reply reports to (the connection). */
export interface WriteReplyOwner {
  writeDone(op: WriteReply, err: Error | null): void;
}

/** One WRITE on the promise-free path (pooled per connection). */
export class WriteReply implements WriteTarget {
  cookieHigh = 0;
  cookieLow = 0;
  length = 0;
  /** Inside writeFrom: an outcome reported now is kept for the caller (`early`: undefined = none yet). */
  starting = false;
  early: Error | null | undefined = undefined;

  constructor(private readonly owner: WriteReplyOwner) {}

  writeDone(err: Error | null): void {
    if (this.starting) this.early = err;
    else this.owner.writeDone(this, err);
  }
}
