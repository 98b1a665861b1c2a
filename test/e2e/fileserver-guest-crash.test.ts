/**
 * The file server guest is killed during a FILE_SYNC write load: the controller
 * restarts it on the same port, every write and create it acknowledged as stable
 * is there, and fsck of the volume is clean afterwards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NfsClient } from '../fileserver/nfs/helpers/nfs-client.ts';
import { FileBlockDevice } from '../../src/block/file-device.ts';
import { fsck } from '../../src/functions/fileserver/fs/index.ts';
import type { ThreadGuest } from '../../src/deploy/guest/thread-guest.ts';
import { startController, waitRunning } from '../helpers/controller.ts';

const CHUNK = 16 * 1024;
const SIZE_MIB = 128;
const pattern = (file: number, offset: number) => {
  const b = Buffer.alloc(CHUNK);
  for (let i = 0; i < CHUNK; i += 8) b.writeUInt32BE(file, i), b.writeUInt32BE((offset + i) >>> 0, i + 4);
  return b;
};

test('a file server guest killed mid-write comes back with every stable write, and fsck is clean', async (t) => {
  const c = await startController(t, {
    nbd: null,
    volumes: [{ name: 'fs', sizeMiB: SIZE_MIB }],
    functions: [{ name: 'nfs', function: 'fileserver', volume: 'fs', deploy: 'guest', restart: 'on-failure' }],
  });
  const { port } = await waitRunning(c, 'nfs');
  const client = await NfsClient.connect(port);
  const root = await client.root();
  const acked = new Map<string, number>();
  let total = 0;
  let killed = false;
  await Promise.all(
    Array.from({ length: 4 }, async (_, f) => {
      const name = `file-${f}`;
      try {
        const created = await client.create(root, name, 1, { mode: 0o644 });
        assert.equal(created.status, 0);
        acked.set(name, 0);
        for (let off = 0; ; off += CHUNK) {
          const w = await client.write(created.fh!, off, pattern(f, off), 2);
          assert.equal(w.status, 0);
          acked.set(name, off + CHUNK);
          if (++total === 120 && !killed) {
            killed = true;
            void (c.deployment('nfs') as ThreadGuest).kill();
          }
        }
      } catch (err) {
        if (!killed) throw err;
      }
    }),
  );
  await client.close().catch(() => {});
  assert.ok(killed);

  assert.equal((await waitRunning(c, 'nfs', 1)).port, port, 'the guest came back on its port');
  const again = await NfsClient.connect(port);
  const root2 = await again.root();
  for (const [name, bytes] of acked) {
    const found = await again.lookup(root2, name);
    assert.equal(found.status, 0, `${name} was created and acknowledged`);
    const f = Number(name.split('-')[1]);
    for (let off = 0; off < bytes; off += CHUNK) {
      const r = await again.read(found.fh!, off, CHUNK);
      assert.ok(r.data!.equals(pattern(f, off)), `${name} @${off} lost in the crash`);
    }
  }
  await again.close();
  const image = c.store.imagePath('fs');
  await c.stop();
  const device = await FileBlockDevice.open(image, SIZE_MIB << 20, { readOnly: true });
  const report = await fsck(device);
  await device.close();
  assert.deepEqual(report.problems, []);
});
