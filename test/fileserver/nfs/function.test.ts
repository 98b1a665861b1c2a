import { test } from 'node:test';
import assert from 'node:assert/strict';
import fileserver, { createFileServer, parseFileServerOptions } from '../../../src/functions/fileserver/index.ts';
import { MemoryBlockDevice } from '../../../src/block/memory-device.ts';
import { MemoryFileSystem } from '../../../src/functions/fileserver/nfs/memory-fs.ts';
import { NfsClient } from './helpers/nfs-client.ts';

const ctx = (device: MemoryBlockDevice, options: Record<string, unknown> = {}) => ({
  device,
  listen: { host: '127.0.0.1', port: 0 },
  options: parseFileServerOptions(options),
  instance: 'test',
  log: () => {},
});

test('the module default-exports the fileserver StorageFunction, api version 1', () => {
  assert.equal(fileserver.name, 'fileserver');
  assert.equal(fileserver.apiVersion, 1);
  assert.equal(typeof fileserver.start, 'function');
});

test('options default exportPath to /export and reject bad values naming the field', () => {
  assert.deepEqual(parseFileServerOptions({}), {
    exportPath: '/export',
    portmapperPort: undefined,
    stayAwakeUs: undefined,
    clients: ['127.0.0.0/8', '::1'],
    rootSquash: true,
    allSquash: false,
    anonUid: 65534,
    anonGid: 65534,
    authNone: 'refuse',
  });
  assert.throws(() => parseFileServerOptions({ exportPath: 'relative' }), /options\.exportPath must be an absolute path/);
  assert.throws(() => parseFileServerOptions({ portmapperPort: 70000 }), /options\.portmapperPort must be a port number/);
});

test('options.stayAwakeUs takes 0 to 1000 µs and refuses anything else naming the field', () => {
  assert.equal(parseFileServerOptions({ stayAwakeUs: 0 }).stayAwakeUs, 0);
  assert.equal(parseFileServerOptions({ stayAwakeUs: 1000 }).stayAwakeUs, 1000);
  for (const bad of [-1, 1001, 1.5, '150']) {
    assert.throws(() => parseFileServerOptions({ stayAwakeUs: bad }), /options\.stayAwakeUs must be an integer from 0 to 1000/);
  }
});

test('the function serves the filesystem it opened on ctx.device and closes it on stop', async () => {
  const device = new MemoryBlockDevice(1 << 20);
  let opened: MemoryFileSystem | undefined;
  let closed = 0;
  const fn = createFileServer(async (d) => {
    assert.equal(d, device);
    opened = new MemoryFileSystem();
    const close = opened.close.bind(opened);
    opened.close = async () => (closed++, close());
    return opened;
  });
  const running = await fn.start(ctx(device, { exportPath: '/data' }));
  const c = await NfsClient.connect(running.address.port);
  const root = await c.root('/data');
  assert.equal((await c.create(root, 'f', 0)).status, 0);
  assert.ok(running.stats().calls >= 2);
  await c.close();
  await Promise.all([running.stop(), running.stop()]);
  assert.equal(closed, 1, 'stop is idempotent and closes the filesystem once');
  assert.ok(opened);
});

test('files and handles survive a restart of the function on the same device (on-volume filesystem)', async (t) => {
  const device = new MemoryBlockDevice(64 << 20);
  const first = await fileserver.start(ctx(device));
  const c1 = await NfsClient.connect(first.address.port);
  const root = await c1.root();
  const fh = (await c1.create(root, 'keep', 1, { mode: 0o600 })).fh!;
  assert.equal((await c1.write(fh, 0, Buffer.from('durable'), 2)).status, 0);
  await c1.close();
  await first.stop();

  const second = await fileserver.start(ctx(device));
  t.after(() => second.stop());
  const c2 = await NfsClient.connect(second.address.port);
  t.after(() => c2.close());
  assert.deepEqual(await c2.root(), root, 'the root handle is stable');
  const r = await c2.read(fh, 0, 100);
  assert.deepEqual([r.status, r.data?.toString()], [0, 'durable']);
});

test('a retransmitted EXCLUSIVE create succeeds on the on-volume filesystem (the verifier survives in atime/mtime)', async (t) => {
  const device = new MemoryBlockDevice(64 << 20);
  const running = await fileserver.start(ctx(device));
  t.after(() => running.stop());
  const c = await NfsClient.connect(running.address.port);
  t.after(() => c.close());
  const root = await c.root();
  const verf = Buffer.from([0xff, 0xee, 0xdd, 0xcc, 0x01, 0x02, 0x03, 0x04]);
  const first = await c.create(root, 'excl', 2, verf);
  assert.equal(first.status, 0);
  const again = await c.create(root, 'excl', 2, verf);
  assert.deepEqual([again.status, again.fh], [0, first.fh]);
  assert.equal((await c.create(root, 'excl', 2, Buffer.alloc(8, 9))).status, 17);
});

test('a full volume answers WRITE with NOSPC and the file keeps its acknowledged content', async (t) => {
  const device = new MemoryBlockDevice(2 << 20);
  const running = await fileserver.start(ctx(device));
  t.after(() => running.stop());
  const c = await NfsClient.connect(running.address.port);
  t.after(() => c.close());
  const fh = (await c.create(await c.root(), 'fill', 1, { mode: 0o644 })).fh!;
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  let off = 0;
  let status = 0;
  for (; off < 4 << 20; off += chunk.length) {
    status = (await c.write(fh, off, chunk, 2)).status;
    if (status !== 0) break;
  }
  assert.equal(status, 28, 'NOSPC');
  const size = Number((await c.getattr(fh)).attr!.size);
  assert.equal(size, off, 'the failed write did not change the size');
  const r = await c.read(fh, off - chunk.length, chunk.length);
  assert.deepEqual(r.data, chunk);
});
