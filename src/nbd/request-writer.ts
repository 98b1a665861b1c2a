import type { Socket } from 'node:net';
import { NBD_REQUEST_MAGIC, REQUEST_HEADER_BYTES } from './protocol.ts';

/** Headers are carved from arenas of this size; a spent arena is left to the GC, never reused. */
const ARENA_BYTES = 64 * 1024;
const TWO_POW_32 = 2 ** 32;

/**
 * The client's outgoing side. Request headers issued in the same tick are
 * written back to back into an arena and handed to the socket as one buffer
 * (a burst of 32 reads is one write, not 32); WRITE payloads go out as the
 * caller's own buffer, never copied. The socket is corked for the tick so
 * everything leaves in one writev.
 *
 * An arena region is never rewritten: the socket may still hold it until the
 * kernel takes it, so a full arena is simply replaced.
 */
export class RequestWriter {
  private arena = Buffer.allocUnsafe(ARENA_BYTES);
  private batchStart = 0;
  private end = 0;
  private corked = false;
  private readonly uncork = () => {
    this.corked = false;
    this.flushHeaders();
    this.socket.uncork();
  };

  constructor(private readonly socket: Socket) {}

  request(type: number, flags: number, cookie: number, offset: number, length: number, payload: Uint8Array | null): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    if (this.end + REQUEST_HEADER_BYTES > ARENA_BYTES) {
      this.flushHeaders();
      this.arena = Buffer.allocUnsafe(ARENA_BYTES);
      this.batchStart = this.end = 0;
    }
    const b = this.arena;
    const at = this.end;
    b.writeUInt32BE(NBD_REQUEST_MAGIC, at);
    b.writeUInt16BE(flags, at + 4);
    b.writeUInt16BE(type, at + 6);
    b.writeUInt32BE(0, at + 8);
    b.writeUInt32BE(cookie, at + 12);
    b.writeUInt32BE(Math.floor(offset / TWO_POW_32), at + 16);
    b.writeUInt32BE(offset % TWO_POW_32, at + 20);
    b.writeUInt32BE(length, at + 24);
    this.end += REQUEST_HEADER_BYTES;
    if (payload !== null && payload.byteLength > 0) {
      this.flushHeaders(); // the payload must follow its own header on the wire
      this.socket.write(payload);
    }
  }

  private flushHeaders(): void {
    if (this.end === this.batchStart) return;
    this.socket.write(this.arena.subarray(this.batchStart, this.end));
    this.batchStart = this.end;
  }
}
