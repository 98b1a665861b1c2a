/**
 * More than 65,536 requests through a 4-entry queue on the device
 * side, driven by hand: the free-running 16-bit indexes wrap and every
 * request is still taken exactly once and completed exactly once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { VirtioBlkDevice } from '../../src/queue/blk-device.ts';
import {
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_T_IN,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  createRegion,
} from '../../src/queue/layout.ts';
import { GuestRing, SpyBlockDevice, settle } from './helpers/guest-ring.ts';

test('70,000 reads through a 4-entry queue are each executed and completed exactly once across the index wrap', async () => {
  const capacity = 64 * 1024;
  const region = createRegion({ mode: 'poll', queueSize: 4, dataBytes: 64 * 1024, capacityBytes: capacity });
  const memory = new MemoryBlockDevice(capacity);
  for (let s = 0; s < capacity / 512; s++) memory.bytes.fill(s, s * 512, (s + 1) * 512);
  const spy = new SpyBlockDevice(memory);
  const device = new VirtioBlkDevice({ region, backend: spy, name: 'wrap' });
  const ring = new GuestRing(region);
  // Two fixed chains (heads 0 and 2), each: header, 512-byte data, status.
  const chains = [0, 2].map((head, k) => {
    const hdr = ring.data(k * 1024);
    const data = ring.data(4096 + k * 1024);
    ring.desc(head, hdr, 16, VIRTQ_DESC_F_NEXT, head + 1);
    // The data and status share one writable buffer here (data then status byte), as a Linux guest may send it.
    ring.desc(head + 1, data, 513, VIRTQ_DESC_F_WRITE);
    return { head, hdr, data };
  });
  const total = 70_000;
  let completed = 0;
  for (let i = 0; i < total; i += 2) {
    const sectors = [i % 128, (i + 1) % 128];
    chains.forEach((c, k) => ring.header(c.hdr, VIRTIO_BLK_T_IN, sectors[k]!));
    ring.offer(0, 2);
    assert.equal(device.poll(), 2);
    // Completions arrive in microtasks; fall back to a full turn if they need more.
    for (let spin = 0; spin < 50 && ring.usedIdx !== ((i + 2) & 0xffff); spin++) await Promise.resolve();
    while (ring.usedIdx !== ((i + 2) & 0xffff)) await settle();
    const used = ring.takeUsed().sort((a, b) => a.id - b.id);
    assert.deepEqual(used, [{ id: 0, len: 513 }, { id: 2, len: 513 }]);
    chains.forEach((c, k) => {
      const bytes = ring.bytes(c.data, 513);
      assert.equal(bytes[512], VIRTIO_BLK_S_OK);
      assert.equal(bytes[0], sectors[k]);
      assert.equal(bytes[511], sectors[k]);
    });
    completed += used.length;
  }
  assert.equal(completed, total);
  assert.equal(spy.calls.length, total);
  assert.equal(device.stats().reads, total);
  assert.equal(ring.usedIdx, total & 0xffff);
});
