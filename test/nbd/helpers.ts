import { spawn, spawnSync } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import type { BlockDevice } from '../../src/block/types.ts';
import { ByteQueue } from '../../src/nbd/byte-queue.ts';
import { negotiate, type ExportInfo } from '../../src/nbd/client-handshake.ts';
import { NbdServer, type NbdServerOptions } from '../../src/nbd/server.ts';

type T = { after: (fn: () => unknown) => void };

export const MiB = 1 << 20;

/** An NbdServer on 127.0.0.1, port 0, exporting `device` as `vol` (and as the default). */
export async function startServer(
  t: T,
  device: BlockDevice = new MemoryBlockDevice(16 * MiB),
  extra: Partial<NbdServerOptions> = {},
): Promise<{ server: NbdServer; port: number; device: BlockDevice; logs: string[] }> {
  const logs: string[] = [];
  const server = new NbdServer({
    exports: [{ name: 'vol', description: 'test volume', device }],
    defaultExport: 'vol',
    log: (m) => logs.push(m),
    ...extra,
  });
  const { port } = await server.listen('127.0.0.1', 0);
  t.after(() => server.close());
  return { server, port, device, logs };
}

export function tempDir(t: T): string {
  const dir = mkdtempSync(join(tmpdir(), 'storvisor-nbd-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Run a tool; resolves with exit code and output (never rejects on a non-zero exit). */
export function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * A raw socket with exact-length reads, for speaking (and breaking) the
 * protocol by hand.
 */
export class RawPeer {
  readonly queue = new ByteQueue();
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private ended = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on('data', (c: Buffer) => {
      this.queue.push(c);
      this.wake();
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.ended = true;
        const w = this.waiter;
        this.waiter = null;
        w?.reject(new Error(`connection closed with ${this.queue.length} bytes unread`));
        resolve();
      }),
    );
  }

  static async connect(port: number): Promise<RawPeer> {
    const socket = connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new RawPeer(socket);
  }

  /** Connect and negotiate with NBD_OPT_GO, leaving the socket in transmission for raw requests. */
  static async transmission(port: number, name = 'vol'): Promise<{ peer: RawPeer; info: ExportInfo }> {
    const socket = connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const queue = new ByteQueue();
    const info = await negotiate(socket, queue, name);
    const peer = new RawPeer(socket);
    // Bytes negotiate() read past the end of the handshake belong to the peer now.
    while (queue.length > 0) peer.queue.push(Buffer.from(queue.take(queue.length)));
    return { peer, info };
  }

  read(n: number): Promise<Buffer> {
    if (this.ended && this.queue.length < n) return Promise.reject(new Error('connection closed'));
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
      this.wake();
    });
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const w = this.waiter;
    if (w && this.queue.length >= w.n) {
      this.waiter = null;
      w.resolve(Buffer.from(this.queue.take(w.n)));
    }
  }
}

/** A 28-byte transmission request header. */
export function request(type: number, opts: { flags?: number; cookie?: number; offset?: number | bigint; length?: number; magic?: number } = {}): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt32BE(opts.magic ?? 0x25609513, 0);
  b.writeUInt16BE(opts.flags ?? 0, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(BigInt(opts.cookie ?? 1), 8);
  b.writeBigUInt64BE(BigInt(opts.offset ?? 0), 16);
  b.writeUInt32BE(opts.length ?? 0, 24);
  return b;
}

/** Read one simple reply header: { error, cookie }. */
export async function simpleReply(peer: RawPeer): Promise<{ magic: number; error: number; cookie: bigint }> {
  const h = await peer.read(16);
  return { magic: h.readUInt32BE(0), error: h.readUInt32BE(4), cookie: h.readBigUInt64BE(8) };
}

/** Fixed newstyle up to option haggling: read the greeting, send client flags. */
export async function startHaggling(peer: RawPeer, clientFlags = 1): Promise<void> {
  await peer.read(18);
  const f = Buffer.alloc(4);
  f.writeUInt32BE(clientFlags, 0);
  peer.write(f);
}

export function option(code: number, data: Buffer = Buffer.alloc(0), declaredLength = data.length): Buffer {
  const b = Buffer.alloc(16 + data.length);
  b.write('IHAVEOPT', 0, 'latin1');
  b.writeUInt32BE(code, 8);
  b.writeUInt32BE(declaredLength, 12);
  data.copy(b, 16);
  return b;
}

export async function optionReply(peer: RawPeer): Promise<{ option: number; type: number; data: Buffer }> {
  const h = await peer.read(20);
  const data = await peer.read(h.readUInt32BE(16));
  return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data };
}
