import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryBlockDevice } from '../../../src/block/memory-device.ts';
import fileserver, { parseFileServerOptions } from '../../../src/functions/fileserver/index.ts';
import { fsck } from '../../../src/functions/fileserver/fs/index.ts';
import { NfsClient } from '../nfs/helpers/nfs-client.ts';
import { memFs, OWNER, pattern, ROOT, ROOT_GEN } from './helpers.ts';

test('64 clients mount and write at once, FILE_SYNC and UNSTABLE + COMMIT, and every byte reads back', async (t) => {
  const device = new MemoryBlockDevice(64 << 20);
  const running = await fileserver.start({ device, listen: { host: '127.0.0.1', port: 0 }, options: parseFileServerOptions({}), instance: 'test', log: () => {} });
  let stopped = false;
  t.after(() => (stopped ? undefined : running.stop()));
  const clients = await Promise.all(Array.from({ length: 64 }, () => NfsClient.connect(running.address.port)));
  t.after(() => Promise.all(clients.map((c) => c.close())));
  await Promise.all(
    clients.map(async (c, i) => {
      const root = await c.root();
      const made = await c.create(root, `c${i}`, 1, { mode: 0o644 });
      assert.equal(made.status, 0);
      const data = Buffer.from(pattern(96 * 1024, i + 1));
      for (let off = 0; off < data.length; off += 32 * 1024) {
        const w = await c.write(made.fh!, off, data.subarray(off, off + 32 * 1024), i % 2 === 0 ? 2 : 0);
        assert.equal(w.status, 0);
      }
      if (i % 2 === 1) assert.equal((await c.commit(made.fh!)).status, 0);
      assert.deepEqual((await c.read(made.fh!, 0, data.length)).data, data);
    }),
  );
  stopped = true;
  await running.stop();
  assert.deepEqual((await fsck(device)).problems, []);
});

test('a 10 GiB sparse file is created, read at both ends and removed', async () => {
  const { fs, dev } = await memFs(32);
  const free0 = (await fs.statfs()).freeBytes;
  const f = await fs.create(ROOT, ROOT_GEN, 'sparse', { ...OWNER, exclusive: true });
  const end = 10 * 2 ** 30;
  await fs.write(f.ino, f.generation, end - 4096, pattern(4096, 3), true);
  const a = await fs.getattr(f.ino, f.generation);
  assert.equal(a.size, end);
  assert.ok(a.used <= 4 * 4096, `a few blocks used (${a.used})`);
  assert.deepEqual((await fs.read(f.ino, f.generation, 0, 4096)).data, new Uint8Array(4096));
  assert.deepEqual((await fs.read(f.ino, f.generation, end - 4096, 8192)).data, pattern(4096, 3));
  await fs.remove(ROOT, ROOT_GEN, 'sparse');
  assert.equal((await fs.statfs()).freeBytes, free0);
  await fs.close();
  assert.deepEqual((await fsck(dev)).problems, []);
});
