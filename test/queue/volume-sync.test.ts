/**
 * A guest on a file volume (#10): its queue is write-back, its writes go to the
 * file without a sync each, and a FUA write is one fdatasync after all of its
 * chunks, where each chunk used to be an O_DSYNC write of its own. A FUA write
 * of one chunk (a database log batch) is one O_DSYNC write, and its FLUSH
 * then has nothing to sync.
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

/** A file volume, a write-back queue over it in poll mode, and its driver. */
function fileQueue(t: { after(fn: () => Promise<void> | void): void }) {
  const store = new VolumeStore(tempDir(t), new BlockCache(1 * MiB));
  store.create('v', 8 * MiB);
  const volume = store.openVolume('v');
  const region = createRegion({ mode: 'poll', queueSize: 64, dataBytes: 4 * MiB, capacityBytes: volume.size, sizeMax: CHUNK, writeback: writebackFor(volume) });
  const device = new VirtioBlkDevice({ region, backend: volume, name: 'v' });
  const driver = new VirtioBlkDriver({ region });
  const loop = runDeviceLoop(device, { mode: 'poll' });
  t.after(async () => {
    driver.close();
    await loop.stop();
    await store.closeAll();
  });
  const counts = () => {
    const v = volume.stats();
    const d = device.stats();
    return { writes: v.backend_writes!, syncs: v.backend_syncs!, synced: d.syncedWrites, elided: d.flushesElided };
  };
  const fileBytes = async (offset: number, length: number) => {
    const file = FileBackend.open(store.imagePath('v'), { direct: false, readOnly: true });
    try {
      const back = new Uint8Array(length);
      await file.read(back, 0, length, offset);
      return back;
    } finally {
      file.close();
    }
  };
  return { driver, counts, fileBytes };
}

const delta = (a: Record<string, number>, b: Record<string, number>) => Object.fromEntries(Object.keys(b).map((k) => [k, b[k]! - a[k]!]));

test('a one-chunk FUA write on a file volume is one synced write and no fdatasync, and reads back whole', async (t) => {
  const q = fileQueue(t);
  await q.driver.flush(); // the queue's first flush syncs whatever an earlier guest left
  const before = q.counts();
  const data = pattern(8192, 5);
  await q.driver.pwrite(data, 1 * MiB, { fua: true });
  assert.deepEqual(delta(before, q.counts()), { writes: 1, syncs: 0, synced: 1, elided: 1 });
  assert.deepEqual(await q.fileBytes(1 * MiB, data.byteLength), data);
});

test('a FLUSH after an unsynced write syncs even when the FUA write just before it went synced', async (t) => {
  const q = fileQueue(t);
  await q.driver.flush();
  const before = q.counts();
  const first = pattern(4096, 6);
  const second = pattern(4096, 7);
  await q.driver.pwrite(first, 0);
  await q.driver.pwrite(second, 4096, { fua: true });
  assert.deepEqual(delta(before, q.counts()), { writes: 2, syncs: 1, synced: 1, elided: 0 });
  assert.deepEqual(await q.fileBytes(0, 8192), new Uint8Array(Buffer.concat([first, second])));
});

test('the first FLUSH of a queue syncs with nothing written on it, and a FLUSH with nothing new since one that synced does not', async (t) => {
  const q = fileQueue(t);
  const before = q.counts();
  await q.driver.flush();
  assert.deepEqual(delta(before, q.counts()), { writes: 0, syncs: 1, synced: 0, elided: 0 });
  await q.driver.flush();
  assert.deepEqual(delta(before, q.counts()), { writes: 0, syncs: 1, synced: 0, elided: 1 });
});
