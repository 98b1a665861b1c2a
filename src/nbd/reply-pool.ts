import { SIMPLE_REPLY_HEADER_BYTES, STRUCTURED_REPLY_HEADER_BYTES } from './protocol.ts';

/**
 * Reusable memory for READ replies. A fresh reply buffer per read costs more
 * than the read itself once requests are large: a 1 MiB Buffer is new memory,
 * and its first touch takes a page fault per 4 KiB (a VM exit each on this
 * kind of machine), then the garbage collector frees it again. A reply taken
 * from here is written into and handed to the socket; the socket's write
 * callback gives it back (`release`, bound once per buffer: no closure per
 * request). A reply the socket never confirms is simply collected.
 *
 * Buffers come in power-of-two payload classes from 4 KiB up to
 * MAX_POOLED_PAYLOAD (plus room for a header); larger replies are not pooled.
 * Free buffers kept are bounded by `maxRetainedBytes` across the classes;
 * buffers in use are bounded by the connections' in-flight and unsent-reply
 * limits, not here.
 */
export const MAX_POOLED_PAYLOAD = 4 << 20;
const MIN_CLASS_BITS = 12;
const MAX_CLASS_BITS = 22; // MAX_POOLED_PAYLOAD
/** Enough for either reply header (the structured one carries an 8-byte offset too). */
const HEADER_ROOM = Math.max(SIMPLE_REPLY_HEADER_BYTES, STRUCTURED_REPLY_HEADER_BYTES + 8);
export const DEFAULT_RETAINED_BYTES = 32 << 20;

export class PooledReply {
  /** The bytes to send: a view of `raw` set for the current reply. */
  bytes: Buffer;
  /** Give the buffer back (the socket's write callback). */
  readonly release: () => void;

  constructor(
    readonly raw: Buffer,
    readonly cls: number,
    pool: ReplyPool,
  ) {
    this.bytes = raw.subarray(0, 0);
    this.release = () => pool.give(this);
  }
}

export class ReplyPool {
  private readonly free: PooledReply[][] = [];
  private retained = 0;
  readonly counters = { taken: 0, created: 0, unpooled: 0 };

  constructor(private readonly maxRetainedBytes = DEFAULT_RETAINED_BYTES) {
    for (let b = MIN_CLASS_BITS; b <= MAX_CLASS_BITS; b++) this.free.push([]);
  }

  /** A buffer for a reply carrying `payload` bytes (its header included), or null when that is too large to pool. */
  take(payload: number): PooledReply | null {
    if (payload > MAX_POOLED_PAYLOAD) {
      this.counters.unpooled++;
      return null;
    }
    let bits = MIN_CLASS_BITS;
    while (1 << bits < payload) bits++;
    const cls = bits - MIN_CLASS_BITS;
    this.counters.taken++;
    const reply = this.free[cls]!.pop();
    if (reply !== undefined) {
      this.retained -= reply.raw.length;
      return reply;
    }
    this.counters.created++;
    return new PooledReply(Buffer.allocUnsafeSlow((1 << bits) + HEADER_ROOM), cls, this);
  }

  /** @internal A reply's write finished: keep the buffer while under the bound. */
  give(reply: PooledReply): void {
    reply.bytes = reply.raw.subarray(0, 0);
    if (this.retained + reply.raw.length > this.maxRetainedBytes) return;
    this.retained += reply.raw.length;
    this.free[reply.cls]!.push(reply);
  }

  /** Free bytes kept for reuse. */
  get retainedBytes(): number {
    return this.retained;
  }
}
