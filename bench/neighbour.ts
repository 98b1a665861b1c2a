/**
 * A quiet guest's latency beside a hostile neighbour that keeps its ring full:
 * the poller's per-queue budget and round-robin are what keep it bounded.
 * Both "guests" are hand-driven rings in this thread (the neighbour re-posts
 * every completed request at once); the quiet one sends one 4 KiB read at a
 * time and times it from offer to used entry.
 *
 *   npm run bench -- neighbour
 */
import { VirtioBlkDevice } from '../src/queue/blk-device.ts';
import { Poller } from '../src/queue/poller.ts';
import { VIRTIO_BLK_T_IN, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, createRegion } from '../src/queue/layout.ts';
import { MemoryBlockDevice } from '../src/block/memory-device.ts';
import { GuestRing } from '../test/queue/helpers/guest-ring.ts';

const CAPACITY = 16 << 20;
const FLOOD_HEADS = 340; // three descriptors each, in a 1024-entry queue

function guest(heads: number) {
  const region = createRegion({ queueSize: heads > 1 ? 1024 : 16, dataBytes: 8 << 20, capacityBytes: CAPACITY, mode: 'poll' });
  const ring = new GuestRing(region);
  for (let h = 0; h < heads; h++) {
    const d = h * 3;
    const hdr = ring.data(h * 8192);
    ring.header(hdr, VIRTIO_BLK_T_IN, (h * 8) % (CAPACITY / 512));
    ring.desc(d, hdr, 16, VIRTQ_DESC_F_NEXT, d + 1);
    ring.desc(d + 1, ring.data(h * 8192 + 4096), 4096, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, d + 2);
    ring.desc(d + 2, ring.data(h * 8192 + 16), 1, VIRTQ_DESC_F_WRITE);
  }
  const device = new VirtioBlkDevice({ region, backend: new MemoryBlockDevice(CAPACITY), name: `g${heads}` });
  return { ring, device };
}

async function run(hostile: boolean, queueBudget?: number): Promise<{ p50: number; p99: number; max: number; neighbourRequests: number }> {
  const poller = new Poller(50, undefined, { queueBudget });
  const quiet = guest(1);
  poller.add(quiet.device, 'poll');
  const flood = guest(FLOOD_HEADS);
  let stop = false;
  if (hostile) {
    poller.add(flood.device, 'poll');
    flood.ring.offer(...Array.from({ length: FLOOD_HEADS }, (_, h) => h));
    const refill = () => {
      const used = flood.ring.takeUsed();
      if (used.length) flood.ring.offer(...used.map((u) => u.id));
      if (!stop) setImmediate(refill);
    };
    setImmediate(refill);
  }
  const lat: number[] = [];
  for (let i = 0; i < 5000; i++) {
    const t0 = performance.now();
    quiet.ring.offer(0);
    while (quiet.ring.takeUsed().length === 0) await new Promise((r) => setImmediate(r));
    lat.push((performance.now() - t0) * 1000);
  }
  stop = true;
  poller.stop();
  lat.sort((a, b) => a - b);
  return { p50: lat[lat.length >> 1]!, p99: lat[Math.floor(lat.length * 0.99)]!, max: lat[lat.length - 1]!, neighbourRequests: flood.device.stats().requests };
}

const alone = await run(false);
const beside = await run(true);
const unbounded = await run(true, Infinity);
console.log('# a quiet guest\'s 4 KiB read latency (µs), alone and beside a neighbour that keeps its ring full\n');
console.log('| quiet guest | p50 | p99 | max | neighbour requests served meanwhile |');
console.log('|---|---:|---:|---:|---:|');
for (const [name, r] of [['alone', alone], ['beside a flooding neighbour', beside], ['beside it, without the per-queue budget (as before)', unbounded]] as const) {
  console.log(`| ${name} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.max.toFixed(0)} | ${r.neighbourRequests} |`);
}
