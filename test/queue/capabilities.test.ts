import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { FileBlockDevice } from '../../src/block/file-device.ts';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { VirtioBlkDevice, virtioStatusOf } from '../../src/queue/blk-device.ts';
import { VirtioBlkDriver } from '../../src/queue/blk-driver.ts';
import { createRegion, regionLayout, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_UNSUPP } from '../../src/queue/layout.ts';
import { ioError, notSupported, outOfRange, readOnly, shutDown } from '../../src/util/errors.ts';
import { runDeviceLoop } from './helpers/device-loop.ts';
import { closeOpenPairs, track } from './helpers/pair.ts';
import { tempDir } from '../helpers/tmp.ts';

afterEach(closeOpenPairs);

const CAPACITY = 256 * 1024;

function attach(backend: MemoryBlockDevice | FileBlockDevice) {
  const region = createRegion({ mode: 'poll', queueSize: 16, dataBytes: 256 * 1024, capacityBytes: CAPACITY });
  const device = new VirtioBlkDevice({ region, backend, name: 'caps' });
  const driver = new VirtioBlkDriver({ region });
  const loop = runDeviceLoop(device, { mode: 'poll' });
  track({ async close() { driver.close(); await loop.stop(); } });
  return { region, device, driver };
}

test('over a backend that would only write zeroes, the device offers no discard or write-zeroes and the driver sees none', async (t) => {
  const file = await FileBlockDevice.open(join(tempDir(t), 'plain.img'), CAPACITY);
  t.after(() => file.close());
  const { region, driver } = attach(file);
  const layout = regionLayout(region);
  assert.equal(layout.maxDiscardSectors, 0);
  assert.equal(layout.maxWriteZeroesSectors, 0);
  assert.equal(driver.capabilities.trim, false);
  assert.equal(driver.capabilities.zeroes, false);
});

test('a driver without discard keeps the data on trim, and zeroes by writing', async (t) => {
  const file = await FileBlockDevice.open(join(tempDir(t), 'plain.img'), CAPACITY);
  t.after(() => file.close());
  const { device, driver } = attach(file);
  await driver.pwrite(new Uint8Array(8192).fill(9), 0);
  await driver.trim(0, 4096);
  await driver.zero(4096 + 100, 1000);
  const back = new Uint8Array(8192);
  await driver.pread(back, 0);
  assert.ok(back.subarray(0, 4196).every((b) => b === 9), 'trim is advisory: nothing discarded');
  assert.ok(back.subarray(4196, 5196).every((b) => b === 0));
  assert.ok(back.subarray(5196).every((b) => b === 9));
  assert.equal(device.stats().discards, 0);
  assert.equal(device.stats().writeZeroes, 0);
  assert.equal(device.stats().unsupported, 0);
});

test('over a backend that does them, discard and write-zeroes are offered and used', async () => {
  const backend = new MemoryBlockDevice(CAPACITY);
  backend.bytes.fill(5);
  const { device, driver } = attach(backend);
  assert.equal(driver.capabilities.trim, true);
  assert.equal(driver.capabilities.zeroes, true);
  await driver.zero(0, 8192);
  await driver.trim(8192, 8192);
  assert.equal(device.stats().writeZeroes, 1);
  assert.equal(device.stats().discards, 1);
  assert.ok(backend.bytes.subarray(0, 16384).every((b) => b === 0));
});

test('virtio-blk maps a backend failure to UNSUPP only for ENOTSUP, to IOERR for everything else', () => {
  assert.equal(virtioStatusOf(notSupported('x')), VIRTIO_BLK_S_UNSUPP);
  for (const err of [ioError('x'), outOfRange(0, 1, 0), readOnly('x'), shutDown('x'), new Error('plain'), { code: 'ENOSPC' }, undefined]) {
    assert.equal(virtioStatusOf(err), VIRTIO_BLK_S_IOERR);
  }
});
