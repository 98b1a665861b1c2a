import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import type { BlockDevice } from '../../src/block/types.ts';
import { NbdClient } from '../../src/nbd/client.ts';
import { ioError, noSpace, StorvisorError } from '../../src/util/errors.ts';
import { fakeServer, simpleReplyTo } from './fake-server.ts';
import { MiB, startServer } from './helpers.ts';
import { requireTools } from '../helpers/tools.ts';

type T = Parameters<typeof startServer>[0];

async function connectTo(t: T, port: number, exportName = 'vol'): Promise<NbdClient> {
  const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName });
  t.after(() => client.close());
  return client;
}

const errnoIs = (errno: string) => (err: unknown) => err instanceof StorvisorError && err.errno === errno;

test('the client learns size, block size and read-only from the handshake', async (t) => {
  const { port } = await startServer(t, new MemoryBlockDevice(3 * MiB, { blockSize: 512, readOnly: true }));
  const client = await connectTo(t, port);
  assert.equal(client.size, 3 * MiB);
  assert.equal(client.blockSize, 512);
  assert.equal(client.readOnly, true);
});

test('random data written at unaligned offsets reads back identical', async (t) => {
  const device = new MemoryBlockDevice(4 * MiB);
  const { port } = await startServer(t, device);
  const client = await connectTo(t, port);
  const data = randomBytes(300_001);
  await client.pwrite(data, 12_345);
  assert.ok(Buffer.from(device.bytes.subarray(12_345, 12_345 + data.length)).equals(data), 'device has the data');
  const back = Buffer.alloc(data.length);
  await client.pread(back, 12_345);
  assert.ok(back.equals(data));
});

test('hundreds of concurrent reads and writes are matched to the right replies', async (t) => {
  const size = 4 * MiB;
  const device = new MemoryBlockDevice(size);
  const { port } = await startServer(t, device);
  const client = await connectTo(t, port);
  const blocks = size / 4096;
  const expected = Buffer.alloc(size);
  // Writes to distinct blocks, all in flight at once.
  const order = Array.from({ length: blocks }, (_, i) => i).sort(() => Math.random() - 0.5).slice(0, 512);
  await Promise.all(
    order.map((b) => {
      const data = randomBytes(4096);
      data.copy(expected, b * 4096);
      return client.pwrite(data, b * 4096);
    }),
  );
  const reads = await Promise.all(
    order.map(async (b) => {
      const buf = Buffer.alloc(4096);
      await client.pread(buf, b * 4096);
      return [b, buf] as const;
    }),
  );
  for (const [b, buf] of reads) assert.ok(buf.equals(expected.subarray(b * 4096, (b + 1) * 4096)), `block ${b}`);
  assert.ok(Buffer.from(device.bytes).equals(expected));
});

test('requests larger than the server maximum are split transparently', async (t) => {
  const device = new MemoryBlockDevice(2 * MiB);
  const { port, server } = await startServer(t, device, { maxRequestBytes: 64 * 1024 });
  const client = await connectTo(t, port);
  const data = randomBytes(MiB);
  await client.pwrite(data, 4096);
  const back = Buffer.alloc(MiB);
  await client.pread(back, 4096);
  assert.ok(back.equals(data));
  assert.equal(server.stats().writes, 16);
  assert.equal(server.stats().errors, 0);
});

test('zero, trim, flush and FUA writes reach the device', async (t) => {
  const device = new MemoryBlockDevice(MiB);
  device.bytes.fill(0x55);
  const { port } = await startServer(t, device);
  const client = await connectTo(t, port);
  await client.zero(4096, 8192);
  await client.trim(65536, 4096);
  await client.pwrite(Buffer.alloc(512, 0x77), 0, { fua: true });
  await client.flush();
  assert.ok(device.bytes.subarray(4096, 12288).every((b) => b === 0));
  assert.ok(device.bytes.subarray(65536, 69632).every((b) => b === 0));
  assert.equal(device.bytes[0], 0x77);
  assert.equal(device.bytes[12288], 0x55);
});

test('an out-of-range request is rejected with ERANGE before it is sent', async (t) => {
  const { port, server } = await startServer(t, new MemoryBlockDevice(MiB));
  const client = await connectTo(t, port);
  await assert.rejects(client.pread(Buffer.alloc(4096), MiB - 100), errnoIs('ERANGE'));
  await assert.rejects(client.pwrite(Buffer.alloc(1), MiB), errnoIs('ERANGE'));
  assert.equal(server.stats().requests, 0);
});

test('writes to a read-only export reject with EROFS', async (t) => {
  const { port } = await startServer(t, new MemoryBlockDevice(MiB, { readOnly: true }));
  const client = await connectTo(t, port);
  await assert.rejects(client.pwrite(Buffer.alloc(512), 0), errnoIs('EROFS'));
  await assert.rejects(client.zero(0, 512), errnoIs('EROFS'));
});

/** A device whose every data operation fails with the given error. */
function failingDevice(err: () => Error): BlockDevice {
  const base = new MemoryBlockDevice(MiB);
  return {
    size: base.size,
    blockSize: base.blockSize,
    readOnly: false,
    writeThrough: false,
    pread: async () => Promise.reject(err()),
    pwrite: async () => Promise.reject(err()),
    flush: async () => Promise.reject(err()),
    trim: async () => Promise.reject(err()),
    zero: async () => Promise.reject(err()),
  };
}

test('device errors travel over the wire and come back as the same errno', async (t) => {
  for (const [make, errno] of [
    [() => ioError('disk on fire'), 'EIO'],
    [() => noSpace('pool full'), 'ENOSPC'],
  ] as const) {
    const { port } = await startServer(t, failingDevice(make));
    const client = await connectTo(t, port);
    await assert.rejects(client.pread(Buffer.alloc(512), 0), errnoIs(errno));
    await assert.rejects(client.pwrite(Buffer.alloc(512), 0), errnoIs(errno));
    await assert.rejects(client.flush(), errnoIs(errno));
    // The connection survives an error reply.
    await assert.rejects(client.zero(0, 512), errnoIs(errno));
  }
});

test('an unknown export name rejects with ENOENT', async (t) => {
  const { port } = await startServer(t);
  await assert.rejects(NbdClient.connect({ host: '127.0.0.1', port, exportName: 'nope' }), errnoIs('ENOENT'));
});

test('requests after close, and requests cut off by a server shutdown, reject with ESHUTDOWN', async (t) => {
  const { port, server } = await startServer(t);
  const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: 'vol' });
  await client.pread(Buffer.alloc(512), 0);
  await server.close();
  await assert.rejects(client.pread(Buffer.alloc(512), 0), errnoIs('ESHUTDOWN'));
  await client.close();

  const again = await startServer(t);
  const c2 = await NbdClient.connect({ host: '127.0.0.1', port: again.port, exportName: 'vol' });
  await c2.close();
  await assert.rejects(c2.pread(Buffer.alloc(512), 0), errnoIs('ESHUTDOWN'));
});

/**
 * A TCP front for `nbdkit -s memory 64M`: each connection gets its own nbdkit
 * speaking NBD on its stdin/stdout, so no port has to be guessed or polled for.
 */
async function nbdkitMemory(t: T): Promise<number> {
  const children = new Set<ReturnType<typeof spawn>>();
  const front = createServer((socket) => {
    const child = spawn('nbdkit', ['-s', '--exit-with-parent', 'memory', '64M'], { stdio: ['pipe', 'pipe', 'inherit'] });
    children.add(child);
    socket.pipe(child.stdin!);
    child.stdout!.pipe(socket);
    socket.on('error', () => child.kill());
    child.on('exit', () => {
      children.delete(child);
      socket.end();
    });
  });
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    for (const c of children) c.kill();
    await new Promise((resolve) => front.close(resolve));
  });
  return (front.address() as { port: number }).port;
}

test('the client interoperates with nbdkit (memory plugin)', async (t) => {
  requireTools('nbdkit');
  const port = await nbdkitMemory(t);
  const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: '' });
  assert.equal(client.size, 64 * MiB);
  assert.equal(client.readOnly, false);
  const data = randomBytes(256 * 1024);
  await Promise.all([client.pwrite(data, 0), client.pwrite(data, 10 * MiB + 3, { fua: true })]);
  await client.zero(MiB, 4096);
  await client.flush();
  const a = Buffer.alloc(data.length);
  const b = Buffer.alloc(data.length);
  await Promise.all([client.pread(a, 0), client.pread(b, 10 * MiB + 3)]);
  assert.ok(a.equals(data) && b.equals(data));
  await client.close();
});

test('the client falls back to NBD_OPT_EXPORT_NAME when the server refuses NBD_OPT_GO', async (t) => {
  const port = await fakeServer(t, {
    refuseGo: true,
    size: 3 * MiB,
    onRequest: (h, socket) => socket.write(Buffer.concat([simpleReplyTo(h), Buffer.alloc(h.readUInt32BE(24), 0x5a)])),
  });
  const client = await connectTo(t, port, 'old');
  assert.equal(client.size, 3 * MiB);
  const buf = Buffer.alloc(100);
  await client.pread(buf, 0);
  assert.ok(buf.every((b) => b === 0x5a));
});

test('wire errors map back to errno names: EPERM→EROFS, EINVAL, ENOSPC, EIO, ESHUTDOWN', async (t) => {
  const errors = [1, 22, 28, 5, 108];
  const port = await fakeServer(t, {
    onRequest: (h, socket) => socket.write(simpleReplyTo(h, errors[h.readUInt32BE(12) % errors.length]!)),
  });
  const client = await connectTo(t, port);
  const results = await Promise.allSettled(errors.map(() => client.flush()));
  assert.deepEqual(
    results.map((r) => (r.status === 'rejected' ? (r.reason as StorvisorError).errno : 'ok')),
    ['EROFS', 'EINVAL', 'ENOSPC', 'EIO', 'ESHUTDOWN'],
  );
});

test('a reply with a bad magic or an unknown cookie fails every pending request with EIO', async (t) => {
  for (const corrupt of [(h: Buffer) => simpleReplyTo(h, 0, 0x12345678), (h: Buffer) => simpleReplyTo(Buffer.alloc(28, 0xff))]) {
    const port = await fakeServer(t, { onRequest: (h, socket) => socket.write(corrupt(h)) });
    const client = await connectTo(t, port);
    const err = await client.flush().then(() => null, (e: StorvisorError) => e);
    assert.equal(err?.errno, 'EIO');
    assert.equal(err?.code, 'SV_ERR_NBD_PROTOCOL');
    await assert.rejects(client.pread(Buffer.alloc(1), 0), errnoIs('EIO'));
  }
});
