/**
 * A hostile guest against the device side and the poller: re-posting a head
 * that is still in flight, and keeping a ring full to starve a neighbour.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtioBlkDevice } from '../../src/queue/blk-device.ts';
import { Poller, QUEUE_BUDGET } from '../../src/queue/poller.ts';
import { Ctl, VIRTIO_BLK_T_IN, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, createRegion } from '../../src/queue/layout.ts';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { DeferredBlockDevice } from './helpers/deferred-device.ts';
import { GuestRing, settle } from './helpers/guest-ring.ts';

const CAPACITY = 1 << 20;

/** A queue with `n` well-formed 512-byte read chains, heads 0..n-1 (three descriptors each). */
function readChains(region: SharedArrayBuffer, n: number): GuestRing {
  const ring = new GuestRing(region);
  for (let h = 0; h < n; h++) {
    const d = h * 3;
    const hdr = ring.data(h * 1024);
    ring.header(hdr, VIRTIO_BLK_T_IN, h % 64);
    ring.desc(d, hdr, 16, VIRTQ_DESC_F_NEXT, d + 1);
    ring.desc(d + 1, ring.data(h * 1024 + 512), 256, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, d + 2);
    ring.desc(d + 2, ring.data(h * 1024 + 768), 1, VIRTQ_DESC_F_WRITE);
  }
  return ring;
}

test('a head posted again while it is in flight breaks the queue and never runs twice', async () => {
  const region = createRegion({ queueSize: 16, dataBytes: 64 * 1024, capacityBytes: CAPACITY, mode: 'poll' });
  const backend = new DeferredBlockDevice(CAPACITY);
  const reports: string[] = [];
  const device = new VirtioBlkDevice({ region, backend, name: 'hostile', onBroken: (r) => reports.push(r) });
  const ring = readChains(region, 1);
  // Header says 256 bytes: make the data a whole sector so the request is valid.
  ring.desc(1, ring.data(512), 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
  ring.offer(0);
  assert.equal(device.poll(), 1);
  await backend.waitHeld(1);
  // The same head again, and again: a guest trying to keep more requests in flight than its queue holds.
  for (let i = 0; i < 10; i++) ring.offer(0);
  device.poll();
  assert.equal(device.broken, true);
  assert.match(reports[0] ?? '', /head 0 posted again while in flight/);
  assert.equal(backend.held.length, 1, 'the re-posted head never reached the backend');
  assert.equal(Atomics.load(new Int32Array(region), Ctl.broken), 1);
  backend.held[0]!.release();
  await settle();
  assert.equal(device.inFlight, 0);
});

test('a guest that keeps its ring full does not starve a neighbour: each pass takes a budget from each queue', async () => {
  const mk = (n: number) => {
    const region = createRegion({ queueSize: 256, dataBytes: 256 * 1024, capacityBytes: CAPACITY, mode: 'poll' });
    const ring = readChains(region, n);
    for (let h = 0; h < n; h++) ring.desc(h * 3 + 1, ring.data(h * 1024 + 512), 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, h * 3 + 2);
    const device = new VirtioBlkDevice({ region, backend: new MemoryBlockDevice(CAPACITY), name: `q${n}` });
    return { ring, device };
  };
  const flood = mk(80);
  const quiet = mk(1);
  flood.ring.offer(...Array.from({ length: 80 }, (_, h) => h));
  quiet.ring.offer(0);
  const poller = new Poller(50);
  poller.add(flood.device, 'poll');
  poller.add(quiet.device, 'poll');
  await new Promise((r) => setImmediate(r)); // exactly one pass has run
  const taken = (d: VirtioBlkDevice) => d.stats().requests;
  assert.equal(taken(quiet.device), 1, 'the quiet guest was served in the first pass');
  assert.ok(taken(flood.device) <= QUEUE_BUDGET, `the flooding guest got ${taken(flood.device)} in one pass (budget ${QUEUE_BUDGET})`);
  // The flood is still served in full over the next passes.
  for (let i = 0; i < 10 && taken(flood.device) < 80; i++) await new Promise((r) => setImmediate(r));
  assert.equal(taken(flood.device), 80);
  poller.stop();
});
