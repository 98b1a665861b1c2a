/** The device's kick arming and the driver's call handling, step by step. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { VirtioBlkDevice } from '../../src/queue/blk-device.ts';
import {
  Ctl,
  VIRTIO_BLK_T_FLUSH,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_USED_F_NO_NOTIFY,
  createRegion,
  ringDoorbell,
} from '../../src/queue/layout.ts';
import { GuestRing, settle } from './helpers/guest-ring.ts';

function setup() {
  const region = createRegion({ mode: 'adaptive', queueSize: 8, dataBytes: 16 * 1024, capacityBytes: 4096 });
  const device = new VirtioBlkDevice({ region, backend: new MemoryBlockDevice(4096), name: 'kick' });
  const ring = new GuestRing(region);
  ring.header(ring.data(0), VIRTIO_BLK_T_FLUSH, 0);
  ring.desc(0, ring.data(0), 16, VIRTQ_DESC_F_NEXT, 1);
  ring.desc(1, ring.data(16), 1, VIRTQ_DESC_F_WRITE);
  return { region, device, ring };
}

test('disableKick sets NO_NOTIFY and enableKick clears it', () => {
  const { device, ring } = setup();
  device.disableKick();
  assert.equal(ring.views.u16[ring.views.usedFlags], VIRTQ_USED_F_NO_NOTIFY);
  assert.equal(device.enableKick(), true);
  assert.equal(ring.views.u16[ring.views.usedFlags], 0);
});

test('enableKick reports false when a request is already available', () => {
  const { device, ring } = setup();
  ring.offer(0);
  assert.equal(device.enableKick(), false);
  assert.equal(device.poll(), 1);
  assert.equal(device.enableKick(), true);
});

test('waitKick returns kick at once when the driver kicked after enableKick', async () => {
  const { device, ring } = setup();
  assert.equal(device.enableKick(), true);
  ring.offer(0);
  ringDoorbell(ring.views, Ctl.kick); // lands before the device starts waiting
  assert.equal(await device.waitKick(10_000), 'kick');
});

test('waitKick wakes on a kick that arrives while it sleeps', async () => {
  const { device, ring } = setup();
  assert.equal(device.enableKick(), true);
  const woke = device.waitKick(10_000);
  setImmediate(() => ringDoorbell(ring.views, Ctl.kick));
  assert.equal(await woke, 'kick');
});

test('waitKick times out when nobody kicks', async () => {
  const { device } = setup();
  assert.equal(device.enableKick(), true);
  assert.equal(await device.waitKick(5), 'timeout');
});

test('the device rings the call doorbell only when the driver has not set NO_INTERRUPT', async () => {
  const { device, ring } = setup();
  const calls = () => Atomics.load(ring.views.ctl, Ctl.call);
  ring.views.u16[ring.views.availFlags] = VIRTQ_AVAIL_F_NO_INTERRUPT;
  ring.offer(0);
  device.poll();
  await settle();
  assert.equal(ring.takeUsed().length, 1);
  assert.equal(calls(), 0);
  ring.views.u16[ring.views.availFlags] = 0;
  ring.offer(0);
  device.poll();
  await settle();
  assert.equal(ring.takeUsed().length, 1);
  assert.equal(calls(), 1);
});
