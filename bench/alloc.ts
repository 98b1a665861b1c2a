/**
 * Heap allocated per 4 KiB read on the request path, counted rather than timed
 * (V8's sampling heap profiler, collected objects included). Each side of the
 * guest queue counts in its own heap: the controller's device + volume + poller,
 * and the guest's driver.
 *
 *   npm run bench -- alloc
 */
import { Session } from 'node:inspector/promises';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { VolumeStore } from '../src/storage/volume-store.ts';
import { BlockCache } from '../src/storage/block-cache.ts';
import { VirtioBlkDevice } from '../src/queue/blk-device.ts';
import { VirtioBlkDriver } from '../src/queue/blk-driver.ts';
import { createRegion } from '../src/queue/layout.ts';
import { Poller } from '../src/queue/poller.ts';
import { defaultEngine } from '../src/storage/engine.ts';
import type { IoTarget } from '../src/block/types.ts';
import { spawnTsWorker, firstMessage } from '../test/queue/helpers/spawn-worker.ts';

const N = 100_000;
const HOT_BLOCKS = 256;

interface Count {
  bytesPerRequest: number;
  /** Of which event-loop passes made (Immediate objects): spins, proportional to passes, not requests. */
  loopBytesPerRequest: number;
  /** The biggest allocation sites: function (file:line) and bytes per request. */
  top: Array<[string, number]>;
}

/**
 * Bytes allocated per request by `run(n)`: V8's sampling heap profiler with
 * objects collected by GC included, so every allocation counts, live or not.
 */
async function count(n: number, run: (n: number) => Promise<void>, warm = true): Promise<Count> {
  if (warm) await run(Math.min(n, 20_000)); // warm up: JIT, pools
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.enable');
  await session.post('HeapProfiler.startSampling', { samplingInterval: 32, includeObjectsCollectedByMinorGC: true, includeObjectsCollectedByMajorGC: true } as never);
  await run(n);
  const { profile } = (await session.post('HeapProfiler.stopSampling')) as { profile: { head: Node } };
  session.disconnect();
  let total = 0;
  const sites = new Map<string, number>();
  const walk = (node: Node) => {
    if (node.selfSize > 0) {
      total += node.selfSize;
      const f = node.callFrame;
      const key = `${f.functionName || '(anonymous)'} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`;
      sites.set(key, (sites.get(key) ?? 0) + node.selfSize);
    }
    node.children.forEach(walk);
  };
  walk(profile.head);
  const top = [...sites].sort((x, y) => y[1] - x[1]).slice(0, 6).map(([k, v]) => [k, v / n] as [string, number]);
  let loop = 0;
  for (const [k, v] of sites) if (/Immediate|schedule queue\/poller|spinAgain/.test(k)) loop += v;
  return { bytesPerRequest: total / n, loopBytesPerRequest: loop / n, top };
}

interface Node {
  selfSize: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children: Node[];
}

async function guestSide(): Promise<void> {
  const { region } = workerData as { region: SharedArrayBuffer };
  const driver = new VirtioBlkDriver({ region });
  const buf = new Uint8Array(4096);
  const r = await count(N, async (n) => {
    for (let i = 0; i < n; i++) await driver.pread(buf, (i % HOT_BLOCKS) * 4096);
  });
  parentPort!.postMessage(r);
  driver.close();
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'storvisor-alloc-'));
  try {
    const store = new VolumeStore(dir, new BlockCache(16 << 20));
    store.create('v', 64 << 20);
    const volume = store.openVolume('v');
    const block = Buffer.alloc(4096, 1);
    for (let b = 0; b < HOT_BLOCKS; b++) await volume.pwrite(block, b * 4096);
    const buf = Buffer.alloc(4096);
    const rows: Array<[string, Count]> = [];

    // The promise-free path a guest read takes in the controller (a cache hit completes synchronously).
    let done = 0;
    const target: IoTarget = { ioDone: () => void done++ };
    rows.push(['volume.readTo, cache hit', await count(N, async (n) => {
      for (let i = 0; i < n; i++) volume.readTo(buf, (i % HOT_BLOCKS) * 4096, target, 0);
    })]);
    rows.push(['volume.pread (promise), cache hit', await count(N, async (n) => {
      for (let i = 0; i < n; i++) await volume.pread(buf, (i % HOT_BLOCKS) * 4096);
    })]);

    // A guest read: the driver in a worker, the device side here; each side counts its own heap.
    const region = createRegion({ mode: 'poll', queueSize: 256, dataBytes: 1 << 20, capacityBytes: volume.size });
    const device = new VirtioBlkDevice({ region, backend: volume, name: 'alloc' });
    const poller = new Poller(50, defaultEngine());
    poller.add(device, 'poll');
    const worker = spawnTsWorker(new URL(import.meta.url), { region });
    const guest = firstMessage<Count>(worker);
    // The controller side counts while the guest runs its 100,000 reads (and its warm-up).
    const controllerSide = await count(N + 20_000, () => guest.then(() => {}), false);
    rows.push(['guest read hit: driver side (guest heap)', await guest]);
    rows.push(['guest read hit: device + volume + poller (controller heap)', controllerSide]);
    poller.stop();
    await worker.terminate();
    await store.closeAll();

    const lines = [`# heap allocated per 4 KiB read (${N} requests, V8 sampling heap profiler, collected objects included)\n`, '| path | bytes per request | of which loop passes (Immediate) | biggest sites (bytes per request) |', '|---|---:|---:|---|'];
    for (const [name, r] of rows) lines.push(`| ${name} | ${r.bytesPerRequest.toFixed(0)} | ${r.loopBytesPerRequest.toFixed(0)} | ${r.top.map(([k, v]) => `${k} ${v.toFixed(0)}`).join('; ')} |`);
    console.log(lines.join('\n'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (isMainThread) await main();
else await guestSide();
