/**
 * Test helpers for the database function: a minimal RESP2 client (ioredis is
 * not a dependency), starting the function on a device, and starting a real
 * redis-server to compare against.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import type { TestContext } from 'node:test';
import type { BlockDevice } from '../../src/block/types.ts';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import database from '../../src/functions/database/index.ts';
import type { RunningFunction } from '../../src/functions/types.ts';
import type { Database } from '../../src/functions/database/database.ts';
import type { ClientState, CommandContext } from '../../src/functions/database/commands/types.ts';
import { Hub } from '../../src/functions/database/commands/pubsub.ts';

/** A command context without a server (store and replay tests): one client, its own pub/sub hub. */
export function commandContext(db: Database): CommandContext {
  const client: ClientState = {
    closeAfterReply: false,
    id: 1,
    name: '',
    inExec: false,
    tx: { active: false, failed: false, queued: [], queuedBytes: 0, watched: new Map() },
    pubsub: { channels: new Set(), patterns: new Set() },
    deliver: () => {},
  };
  return {
    db,
    client,
    server: { startedAt: 0, port: 0, appendfsync: 'always', connectedClients: () => 1, blockedClients: () => 0, stats: () => ({}), pubsub: new Hub() },
  };
}

/** A decoded reply, in a shape that compares with deepEqual. */
export type Value = string | number | null | { err: string } | { status: string } | Value[];

/** Parse one reply at `pos`; returns [value, next position] or null if incomplete. */
function parseReply(buf: Buffer, pos: number): [Value, number] | null {
  const lf = buf.indexOf('\r\n', pos);
  if (lf < 0) return null;
  const line = buf.toString('latin1', pos + 1, lf);
  const next = lf + 2;
  switch (buf[pos]) {
    case 0x2b: // +
      return [{ status: line }, next];
    case 0x2d: // -
      return [{ err: line }, next];
    case 0x3a: // :
      return [Number(line), next];
    case 0x24: {
      const n = Number(line);
      if (n < 0) return [null, next];
      if (buf.length < next + n + 2) return null;
      return [buf.toString('latin1', next, next + n), next + n + 2];
    }
    case 0x2a: {
      const n = Number(line);
      if (n < 0) return [null, next];
      const items: Value[] = [];
      let p = next;
      for (let i = 0; i < n; i++) {
        const r = parseReply(buf, p);
        if (r === null) return null;
        items.push(r[0]);
        p = r[1];
      }
      return [items, p];
    }
    default:
      throw new Error(`bad reply byte ${buf[pos]} in ${JSON.stringify(buf.toString('latin1', pos, pos + 40))}`);
  }
}

export function encodeCommand(args: (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a, 'latin1') : a;
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

export class RespClient {
  private buf = Buffer.alloc(0);
  private waiters: { resolve: (v: Value) => void; reject: (e: Error) => void }[] = [];
  private ended = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      this.drain();
    });
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.ended = true;
        for (const w of this.waiters.splice(0)) w.reject(new Error('connection closed'));
        resolve();
      });
    });
    socket.on('error', () => {});
  }

  static async connect(port: number): Promise<RespClient> {
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    return new RespClient(socket);
  }

  private drain(): void {
    while (this.waiters.length > 0) {
      const r = parseReply(this.buf, 0);
      if (r === null) return;
      this.buf = this.buf.subarray(r[1]);
      this.waiters.shift()!.resolve(r[0]);
    }
  }

  /** The next reply on the connection. */
  read(): Promise<Value> {
    if (this.ended) return Promise.reject(new Error('connection closed'));
    const p = new Promise<Value>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.drain();
    return p;
  }

  writeRaw(data: Buffer | string): void {
    this.socket.write(data);
  }

  call(...args: (string | Buffer)[]): Promise<Value> {
    this.socket.write(encodeCommand(args));
    return this.read();
  }

  /** Send many commands in one write and collect every reply. */
  async pipeline(commands: (string | Buffer)[][]): Promise<Value[]> {
    this.socket.write(Buffer.concat(commands.map(encodeCommand)));
    const out: Value[] = [];
    for (let i = 0; i < commands.length; i++) out.push(await this.read());
    return out;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Start the database function on `device` (a fresh 16 MiB memory device by default). */
export async function startDatabase(
  t: TestContext,
  options: { device?: BlockDevice; appendfsync?: 'always' | 'everysec'; maxBulkLength?: number } = {},
): Promise<{ fn: RunningFunction; port: number; device: BlockDevice; logs: string[] }> {
  const device = options.device ?? new MemoryBlockDevice(16 * 1024 * 1024);
  const logs: string[] = [];
  const raw: Record<string, unknown> = { appendfsync: options.appendfsync ?? 'always' };
  if (options.maxBulkLength !== undefined) raw.maxBulkLength = options.maxBulkLength;
  const fn = await database.start({
    device,
    listen: { host: '127.0.0.1', port: 0 },
    options: database.parseOptions!(raw),
    instance: 'test',
    log: (m) => logs.push(m),
  });
  let stopped = false;
  t.after(async () => {
    if (!stopped) await fn.stop();
  });
  const stop = fn.stop.bind(fn);
  (fn as { stop: () => Promise<void> }).stop = async () => {
    stopped = true;
    await stop();
  };
  return { fn, port: fn.address.port, device, logs };
}


/** Start redis-server on a free port with persistence off; stopped after the test. */
export async function startRedisServer(t: TestContext): Promise<number> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', '/tmp'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.after(() => {
    child.kill('SIGKILL');
  });
  // Wait for the "Ready to accept connections" line rather than sleeping.
  await new Promise<void>((resolve, reject) => {
    let text = '';
    child.stdout!.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.includes('Ready to accept connections')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${text}`)));
  });
  return port;
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}
