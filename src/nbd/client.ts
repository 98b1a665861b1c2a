import { connect as netConnect, type Socket } from 'node:net';
import type { WriteFlags } from '../block/types.ts';
import { BlockDeviceBase, type BlockCapabilities } from '../block/device.ts';
import { StorvisorError, shutDown, nbdProtocol } from '../util/errors.ts';
import { ByteQueue } from './byte-queue.ts';
import { negotiate, type ExportInfo } from './client-handshake.ts';
import { RequestWriter } from './request-writer.ts';
import { errorFromNbd } from './error-map.ts';
import {
  NBD_CMD_DISC,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_ESHUTDOWN,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_SIMPLE_REPLY_MAGIC,
  SIMPLE_REPLY_HEADER_BYTES,
} from './protocol.ts';

/** One request awaiting its reply. Slots (and these objects) are reused: the cookie is the slot index. */
interface Pending {
  resolve: () => void;
  reject: (err: Error) => void;
  /** Destination of a READ's data; null for other commands. */
  readInto: Uint8Array | null;
  type: number;
  busy: boolean;
}

const idle = () => {};

/** Trim and zero carry no payload, but their length field is 32 bits: split below that. */
const MAX_RANGE_COMMAND_BYTES = 1 << 30;

/**
 * A BlockDevice reached over NBD: what the `gateway` deployment uses to talk
 * to a controller volume. Requests are pipelined on one connection and
 * matched to replies by cookie (the slot index of the pending request).
 * Simple replies only: READ data is copied from socket chunks straight into
 * the caller's buffer, with no intermediate reply buffer.
 */
export class NbdClient extends BlockDeviceBase {
  readonly size: number;
  readonly blockSize: number;
  readonly readOnly: boolean;
  /** We cannot know the server's caching; callers flush (cheap when the server is write-through). */
  readonly writeThrough = false;
  /** What the server offered (FUA without SEND_FUA is a write then a flush). */
  readonly capabilities: BlockCapabilities;

  private readonly maxPayload: number;
  private readonly pending: Pending[] = [];
  private readonly freeSlots: number[] = [];
  private inflight = 0;
  private readonly header = Buffer.allocUnsafe(SIMPLE_REPLY_HEADER_BYTES);
  /** The slot whose READ data is still arriving (-1: expecting a reply header), and how much has. */
  private receivingSlot = -1;
  private receivingFilled = 0;
  private failure: StorvisorError | null = null;
  private readonly writer: RequestWriter;
  private idleWaiters: (() => void)[] = [];
  private closing: Promise<void> | null = null;
  /** Resolves when the socket has closed. */
  private readonly socketClosed: Promise<void>;

  private constructor(
    private readonly socket: Socket,
    private readonly queue: ByteQueue,
    private readonly info: ExportInfo,
  ) {
    super();
    this.size = info.size;
    this.blockSize = info.preferredBlockSize;
    this.readOnly = (info.flags & NBD_FLAG_READ_ONLY) !== 0;
    this.maxPayload = info.maxBlockSize;
    this.writer = new RequestWriter(socket);
    this.capabilities = Object.freeze({
      trim: this.has(NBD_FLAG_SEND_TRIM),
      zeroes: this.has(NBD_FLAG_SEND_WRITE_ZEROES),
      flush: this.has(NBD_FLAG_SEND_FLUSH),
      fua: true,
      fastRead: false,
    });
    this.socketClosed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => {
      this.queue.push(chunk);
      this.receive();
    });
    socket.on('error', (err) => this.fail(shutDown(`NBD connection (${err.message})`)));
    socket.on('close', () => this.fail(shutDown('NBD connection')));
    this.receive(); // bytes that arrived together with the end of negotiation
  }

  static async connect(opts: { host: string; port: number; exportName?: string }): Promise<NbdClient> {
    const socket = netConnect({ host: opts.host, port: opts.port, noDelay: true });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve();
      });
      socket.once('error', reject);
    });
    const queue = new ByteQueue();
    try {
      const info = await negotiate(socket, queue, opts.exportName ?? '');
      return new NbdClient(socket, queue, info);
    } catch (err) {
      socket.destroy();
      throw err;
    }
  }

  protected label(): string {
    return 'NBD export';
  }

  async pread(buf: Uint8Array, offset: number): Promise<void> {
    this.checkRead(offset, buf.byteLength);
    if (buf.byteLength <= this.maxPayload) return this.request(NBD_CMD_READ, 0, offset, buf.byteLength, buf, null);
    const parts: Promise<void>[] = [];
    for (let done = 0; done < buf.byteLength; done += this.maxPayload) {
      const part = buf.subarray(done, Math.min(buf.byteLength, done + this.maxPayload));
      parts.push(this.request(NBD_CMD_READ, 0, offset + done, part.byteLength, part, null));
    }
    await Promise.all(parts);
  }

  async pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags): Promise<void> {
    this.checkWrite(offset, buf.byteLength);
    const fua = flags?.fua === true;
    const serverFua = fua && this.has(NBD_FLAG_SEND_FUA);
    const cmdFlags = serverFua ? NBD_CMD_FLAG_FUA : 0;
    if (buf.byteLength <= this.maxPayload) {
      await this.request(NBD_CMD_WRITE, cmdFlags, offset, buf.byteLength, null, buf);
    } else {
      const parts: Promise<void>[] = [];
      for (let done = 0; done < buf.byteLength; done += this.maxPayload) {
        const part = buf.subarray(done, Math.min(buf.byteLength, done + this.maxPayload));
        parts.push(this.request(NBD_CMD_WRITE, cmdFlags, offset + done, part.byteLength, null, part));
      }
      await Promise.all(parts);
    }
    if (fua && !serverFua) await this.flush();
  }

  async flush(): Promise<void> {
    if (!this.has(NBD_FLAG_SEND_FLUSH)) return this.failed();
    return this.request(NBD_CMD_FLUSH, 0, 0, 0, null, null);
  }

  async trim(offset: number, length: number): Promise<void> {
    this.checkWrite(offset, length);
    if (!this.has(NBD_FLAG_SEND_TRIM)) return this.failed(); // trim is advisory
    await this.forEachRange(offset, length, (o, n) => this.request(NBD_CMD_TRIM, 0, o, n, null, null));
  }

  async zero(offset: number, length: number): Promise<void> {
    this.checkWrite(offset, length);
    if (this.has(NBD_FLAG_SEND_WRITE_ZEROES)) {
      await this.forEachRange(offset, length, (o, n) => this.request(NBD_CMD_WRITE_ZEROES, 0, o, n, null, null));
      return;
    }
    const zeroes = new Uint8Array(Math.min(length, this.maxPayload, 1 << 20));
    for (let done = 0; done < length; done += zeroes.byteLength) {
      const n = Math.min(zeroes.byteLength, length - done);
      await this.request(NBD_CMD_WRITE, 0, offset + done, n, null, zeroes.subarray(0, n));
    }
  }

  /** Wait for in-flight requests, send NBD_CMD_DISC, then end the connection. */
  close(): Promise<void> {
    this.closed = true;
    this.closing ??= (async () => {
      while (this.inflight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
      if (!this.failure && !this.socket.destroyed) {
        this.writer.request(NBD_CMD_DISC, 0, 0, 0, 0, null);
        this.socket.end(); // end() flushes the corked DISC
      }
      this.failure ??= shutDown('NBD client');
      await this.socketClosed;
    })();
    return this.closing;
  }

  private has(flag: number): boolean {
    return (this.info.flags & flag) !== 0;
  }

  private failed(): Promise<void> {
    return this.failure ? Promise.reject(this.failure) : Promise.resolve();
  }

  private async forEachRange(offset: number, length: number, op: (o: number, n: number) => Promise<void>) {
    const parts: Promise<void>[] = [];
    for (let done = 0; done < length; done += MAX_RANGE_COMMAND_BYTES) {
      parts.push(op(offset + done, Math.min(MAX_RANGE_COMMAND_BYTES, length - done)));
    }
    await Promise.all(parts);
  }

  private request(
    type: number,
    flags: number,
    offset: number,
    length: number,
    readInto: Uint8Array | null,
    payload: Uint8Array | null,
  ): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(shutDown('NBD client'));
    return new Promise<void>((resolve, reject) => {
      let slot = this.freeSlots.pop();
      if (slot === undefined) {
        slot = this.pending.length;
        this.pending.push({ resolve: idle, reject: idle, readInto: null, type: 0, busy: false });
      }
      const p = this.pending[slot]!;
      p.resolve = resolve;
      p.reject = reject;
      p.readInto = readInto;
      p.type = type;
      p.busy = true;
      this.inflight++;
      this.writer.request(type, flags, slot, offset, length, payload);
    });
  }

  /** The reply state machine: a 16-byte header, then READ data straight into the caller's buffer. */
  private receive(): void {
    const queue = this.queue;
    for (;;) {
      if (this.receivingSlot >= 0) {
        const slot = this.receivingSlot;
        const dst = this.pending[slot]!.readInto!;
        this.receivingFilled += queue.copyInto(dst, this.receivingFilled, dst.byteLength - this.receivingFilled);
        if (this.receivingFilled < dst.byteLength) return;
        this.receivingSlot = -1;
        this.settle(slot, 0);
        continue;
      }
      if (queue.length < SIMPLE_REPLY_HEADER_BYTES) return;
      const h = queue.take(SIMPLE_REPLY_HEADER_BYTES, this.header);
      if (h.readUInt32BE(0) !== NBD_SIMPLE_REPLY_MAGIC) return this.protocolViolation('bad reply magic');
      const error = h.readUInt32BE(4);
      const slot = h.readUInt32BE(12);
      const p = h.readUInt32BE(8) === 0 ? this.pending[slot] : undefined;
      if (p === undefined || !p.busy) return this.protocolViolation('reply to a request that is not in flight');
      if (error === 0 && p.readInto !== null && p.readInto.byteLength > 0) {
        this.receivingSlot = slot;
        this.receivingFilled = 0;
        continue;
      }
      this.settle(slot, error);
    }
  }

  private settle(slot: number, error: number): void {
    const p = this.pending[slot]!;
    const { resolve, reject, type } = p;
    this.release(slot);
    if (error === 0) resolve();
    else reject(errorFromNbd(error, `NBD ${COMMAND_NAMES[type]}`));
    // The spec obliges a client that sees ESHUTDOWN to disconnect softly.
    if (error === NBD_ESHUTDOWN) void this.close();
    if (this.inflight === 0) for (const wake of this.idleWaiters.splice(0)) wake();
  }

  /** Free a slot, dropping references to the caller's promise and buffer. */
  private release(slot: number): void {
    const p = this.pending[slot]!;
    p.resolve = p.reject = idle;
    p.readInto = null;
    p.busy = false;
    this.freeSlots.push(slot);
    this.inflight--;
  }

  private protocolViolation(reason: string): void {
    this.fail(nbdProtocol(`NBD server protocol violation: ${reason}`));
    this.socket.destroy();
  }

  /** The connection is gone: every pending request fails, and every later one. */
  private fail(err: StorvisorError): void {
    this.failure ??= err;
    this.queue.clear();
    this.receivingSlot = -1;
    for (let slot = 0; slot < this.pending.length; slot++) {
      const p = this.pending[slot]!;
      if (!p.busy) continue;
      const reject = p.reject;
      this.release(slot);
      reject(this.failure);
    }
    for (const wake of this.idleWaiters.splice(0)) wake();
  }
}

const COMMAND_NAMES: Record<number, string> = {
  [NBD_CMD_READ]: 'read',
  [NBD_CMD_WRITE]: 'write',
  [NBD_CMD_FLUSH]: 'flush',
  [NBD_CMD_TRIM]: 'trim',
  [NBD_CMD_WRITE_ZEROES]: 'write-zeroes',
};
