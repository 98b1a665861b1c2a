/**
 * The file server guest is killed during a FILE_SYNC write load: the controller
 * restarts it on the same port, every write and create it acknowledged as stable
 * is there, and fsck of the volume is clean afterwards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { verifyStableWrites, writeUntilKilled } from '../fileserver/nfs/helpers/stable-writes.ts';
import { FileBlockDevice } from '../../src/block/file-device.ts';
import { fsck } from '../../src/functions/fileserver/fs/index.ts';
import type { ThreadGuest } from '../../src/deploy/guest/thread-guest.ts';
import { startController, waitRunning } from '../helpers/controller.ts';

const SIZE_MIB = 128;

test('a file server guest killed mid-write comes back with every stable write, and fsck is clean', async (t) => {
  const c = await startController(t, {
    nbd: null,
    volumes: [{ name: 'fs', sizeMiB: SIZE_MIB }],
    functions: [{ name: 'nfs', function: 'fileserver', volume: 'fs', deploy: 'guest', restart: 'on-failure' }],
  });
  const { port } = await waitRunning(c, 'nfs');
  const { acked, killed } = await writeUntilKilled(port, 120, () => void (c.deployment('nfs') as ThreadGuest).kill());
  assert.ok(killed);

  assert.equal((await waitRunning(c, 'nfs', 1)).port, port, 'the guest came back on its port');
  await verifyStableWrites(port, acked);
  const image = c.store.imagePath('fs');
  await c.stop();
  const device = await FileBlockDevice.open(image, SIZE_MIB << 20, { readOnly: true });
  const report = await fsck(device);
  await device.close();
  assert.deepEqual(report.problems, []);
});
