import type { Socket } from 'node:net';
import { notFound, nbdProtocol } from '../util/errors.ts';
import { ByteQueue } from './byte-queue.ts';
import {
  EXPORT_NAME_PADDING,
  IHAVEOPT,
  MAX_STRING_BYTES,
  NBDMAGIC,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_EXPORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_REP_ACK,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  OLDSTYLE_MAGIC,
  OPTION_REPLY_MAGIC,
  isOptionError,
} from './protocol.ts';

/** What the client learns from negotiation. */
export interface ExportInfo {
  size: number;
  flags: number;
  minBlockSize: number;
  preferredBlockSize: number;
  maxBlockSize: number;
}

/** No option reply we care about comes close to this; larger means a confused or hostile server. */
const MAX_OPTION_REPLY_BYTES = 64 * 1024;
/** What we assume about payload limits when the server does not say (the spec's default). */
export const DEFAULT_MAX_BLOCK_SIZE = 32 << 20;

const protocolError = (message: string) => nbdProtocol(`NBD handshake: ${message}`);

/**
 * Reads exact byte counts off a socket during negotiation. Negotiation is a
 * few round trips per connection, so promise-per-read is fine here; the
 * transmission phase uses its own state machine.
 */
class HandshakeReader {
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;
  private readonly onData = (chunk: Buffer) => {
    this.queue.push(chunk);
    this.wake();
  };
  private readonly onEnd = () => this.fail(protocolError('server closed the connection'));
  private readonly onError = (err: Error) => this.fail(err);

  constructor(
    private readonly socket: Socket,
    readonly queue: ByteQueue,
  ) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('error', this.onError);
  }

  read(n: number): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
      this.wake();
    });
  }

  /** Stop listening: the transmission phase takes over the socket (and any queued bytes). */
  detach(): void {
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('error', this.onError);
  }

  private wake(): void {
    const w = this.waiter;
    if (w && this.queue.length >= w.n) {
      this.waiter = null;
      w.resolve(Buffer.from(this.queue.take(w.n)));
    }
  }

  private fail(err: Error): void {
    this.failure ??= err;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(this.failure);
  }
}

function option(code: number, data: Buffer): Buffer {
  const b = Buffer.allocUnsafe(16 + data.length);
  b.writeBigUInt64BE(IHAVEOPT, 0);
  b.writeUInt32BE(code, 8);
  b.writeUInt32BE(data.length, 12);
  data.copy(b, 16);
  return b;
}

/**
 * Client side of fixed newstyle negotiation: NBD_OPT_GO (asking for block
 * sizes), falling back to NBD_OPT_EXPORT_NAME for servers without GO.
 * Resolves with the export's geometry; leftover bytes stay in `queue`.
 */
export async function negotiate(socket: Socket, queue: ByteQueue, exportName: string): Promise<ExportInfo> {
  const name = Buffer.from(exportName);
  if (name.length > MAX_STRING_BYTES) throw protocolError(`export name longer than ${MAX_STRING_BYTES} bytes`);
  const reader = new HandshakeReader(socket, queue);
  try {
    const greeting = await reader.read(16);
    if (greeting.readBigUInt64BE(0) !== NBDMAGIC) throw protocolError('not an NBD server');
    const style = greeting.readBigUInt64BE(8);
    if (style === OLDSTYLE_MAGIC) throw protocolError('oldstyle servers are not supported');
    if (style !== IHAVEOPT) throw protocolError('bad newstyle magic');
    const serverFlags = (await reader.read(2)).readUInt16BE(0);
    if ((serverFlags & NBD_FLAG_FIXED_NEWSTYLE) === 0) throw protocolError('server does not speak fixed newstyle');
    const noZeroes = (serverFlags & NBD_FLAG_NO_ZEROES) !== 0;
    const clientFlags = Buffer.allocUnsafe(4);
    clientFlags.writeUInt32BE(NBD_FLAG_C_FIXED_NEWSTYLE | (noZeroes ? NBD_FLAG_C_NO_ZEROES : 0), 0);
    socket.write(clientFlags);

    const go = Buffer.allocUnsafe(4 + name.length + 4);
    go.writeUInt32BE(name.length, 0);
    name.copy(go, 4);
    go.writeUInt16BE(1, 4 + name.length);
    go.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 6 + name.length);
    socket.write(option(NBD_OPT_GO, go));
    const info = await readGoReplies(reader, exportName);
    if (info !== null) return info;

    socket.write(option(NBD_OPT_EXPORT_NAME, name));
    const reply = await reader.read(10);
    if (!noZeroes) await reader.read(EXPORT_NAME_PADDING);
    return { ...defaults(), size: safeSize(reply.readBigUInt64BE(0)), flags: reply.readUInt16BE(8) };
  } finally {
    reader.detach();
  }
}

function defaults(): ExportInfo {
  return { size: 0, flags: 0, minBlockSize: 1, preferredBlockSize: 4096, maxBlockSize: DEFAULT_MAX_BLOCK_SIZE };
}

function safeSize(size: bigint): number {
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw protocolError(`export size ${size} is too large`);
  return Number(size);
}

/** Replies to NBD_OPT_GO; null means the server does not know GO (use EXPORT_NAME). */
async function readGoReplies(reader: HandshakeReader, exportName: string): Promise<ExportInfo | null> {
  const info = defaults();
  let sawExport = false;
  for (;;) {
    const h = await reader.read(20);
    if (h.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) throw protocolError('bad option reply magic');
    if (h.readUInt32BE(8) !== NBD_OPT_GO) throw protocolError('reply to an option we did not send');
    const type = h.readUInt32BE(12);
    const length = h.readUInt32BE(16);
    if (length > MAX_OPTION_REPLY_BYTES) throw protocolError(`option reply of ${length} bytes`);
    const data = await reader.read(length);
    if (type === NBD_REP_ACK) {
      if (!sawExport) throw protocolError('NBD_OPT_GO acknowledged without NBD_INFO_EXPORT');
      return info;
    }
    if (type === NBD_REP_ERR_UNSUP) return null;
    if (type === NBD_REP_ERR_UNKNOWN) throw notFound(`NBD export ${JSON.stringify(exportName)}`);
    if (isOptionError(type)) {
      throw protocolError(`server refused export ${JSON.stringify(exportName)}: ${data.toString('utf8') || `error 0x${type.toString(16)}`}`);
    }
    if (type !== NBD_REP_INFO || data.length < 2) continue; // unknown replies are ignorable
    const infoType = data.readUInt16BE(0);
    if (infoType === NBD_INFO_EXPORT && data.length === 12) {
      info.size = safeSize(data.readBigUInt64BE(2));
      info.flags = data.readUInt16BE(10);
      sawExport = true;
    } else if (infoType === NBD_INFO_BLOCK_SIZE && data.length === 14) {
      info.minBlockSize = data.readUInt32BE(2);
      info.preferredBlockSize = data.readUInt32BE(6);
      info.maxBlockSize = data.readUInt32BE(10);
    }
  }
}
