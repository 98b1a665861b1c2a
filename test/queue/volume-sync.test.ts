/**
 * A guest on a file volume (#10): its queue is write-back, its writes go to the
 * file without a sync each, and a FUA write is one fdatasync after all of its
 * chunks, where each chunk used to be an O_DSYNC write of its own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockCache } from '../../src/storage/block-cache.ts';
import { VolumeStore } from '../../src/storage/volume-store.ts';
import { FileBackend } from '../../src/storage/backend.ts';
import { VirtioBlkDevice, writebackFor } from '../../src/queue/blk-device.ts';
import { VirtioBlkDriver } from '../../src/queue/blk-driver.ts';
import { createRegion } from '../../src/queue/layout.ts';
import { runDeviceLoop } from './helpers/device-loop.ts';
import { pattern } from './helpers/pair.ts';
import { tempDir } from '../helpers/tmp.ts';

const MiB = 1024 * 1024;
const CHUNK = 128 * 1024;

test('a FUA write of four chunks on a file volume is four unsynced writes and one fdatasync, and reads back whole', async (t) => {
  const store = new VolumeStore(tempDir(t), new BlockCache(1 * MiB));
  store.create('v', 8 * MiB);
  const volume = store.openVolume('v');
  assert.equal(writebackFor(volume), true);
  const region = createRegion({ mode: 'poll', queueSize: 64, dataBytes: 4 * MiB, capacityBytes: volume.size, sizeMax: CHUNK, writeback: writebackFor(volume) });
  const device = new VirtioBlkDevice({ region, backend: volume, name: 'v' });
  const driver = new VirtioBlkDriver({ region });
  const loop = runDeviceLoop(device, { mode: 'poll' });
  try {
    const before = volume.stats();
    const data = pattern(4 * CHUNK, 21);
    await driver.pwrite(data, 2 * MiB, { fua: true });
    const after = volume.stats();
    assert.equal(after.backend_writes! - before.backend_writes!, 4);
    assert.equal(after.backend_syncs! - before.backend_syncs!, 1);
    assert.equal(device.stats().flushes, 1);
    // Read back from the file itself, past the volume's cache.
    const file = FileBackend.open(store.imagePath('v'), { direct: false, readOnly: true });
    try {
      const back = new Uint8Array(data.byteLength);
      await file.read(back, 0, back.byteLength, 2 * MiB);
      assert.deepEqual(back, data);
    } finally {
      file.close();
    }
  } finally {
    driver.close();
    await loop.stop();
    await store.closeAll();
  }
});
