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
import type { BlockDevice, IoTarget } from '../src/block/types.ts';
import { NbdServer } from '../src/nbd/server.ts';
import { NbdClient } from '../src/nbd/client.ts';
import { statCpuSeconds } from './lib/cpu.ts';
import { spawnTsWorker, firstMessage } from '../test/queue/helpers/spawn-worker.ts';

const N = Number(process.env.ALLOC_N ?? 100_000);
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
  const top = [...sites].sort((x, y) => y[1] - x[1]).slice(0, Number(process.env.ALLOC_SITES ?? 6)).map(([k, v]) => [k, v / n] as [string, number]);
  let loop = 0;
  for (const [k, v] of sites) if (/Immediate|schedule queue\/poller|spinAgain/.test(k)) loop += v;
  return { bytesPerRequest: total / n, loopBytesPerRequest: loop / n, top };
}

interface Node {
  selfSize: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children: Node[];
}

/** The guest's NBD server over the driver, counting its own heap while the parent's client reads (lent or, with `copy`, through pread). */
async function guestNbdSide(region: SharedArrayBuffer, copy: boolean): Promise<void> {
  const driver = new VirtioBlkDriver({ region });
  // Without readLent the server takes the ordinary path: pread into a pooled reply buffer (a copy and promises per read).
  const device: BlockDevice = copy
    ? { size: driver.size, blockSize: driver.blockSize, readOnly: false, writeThrough: driver.writeThrough, capabilities: driver.capabilities, pread: (b, o) => driver.pread(b, o), pwrite: (b, o, f) => driver.pwrite(b, o, f), flush: () => driver.flush(), trim: (o, l) => driver.trim(o, l), zero: (o, l) => driver.zero(o, l) }
    : driver;
  const server = new NbdServer({ exports: [{ name: 'v', description: 'alloc', device }], defaultExport: 'v', log: () => {} });
  const { port } = await server.listen('127.0.0.1', 0);
  // Two phases the parent drives: CPU time alone (no profiler: sampling every 32 bytes costs far more than the requests), then the heap count.
  let cpu0 = 0;
  let counting: Promise<Count> | null = null;
  let endCount: () => void = () => {};
  parentPort!.on('message', (m: string) => {
    if (m === 'cpu-start') cpu0 = statCpuSeconds('/proc/thread-self/stat');
    else if (m === 'cpu-end') parentPort!.postMessage({ cpuUs: ((statCpuSeconds('/proc/thread-self/stat') - cpu0) * 1e6) / N });
    else if (m === 'count-start') {
      const ended = new Promise<void>((r) => (endCount = r));
      counting = count(N, () => ended, false);
    } else if (m === 'count-end') {
      endCount();
      void counting!.then((r) => parentPort!.postMessage(r));
    }
  });
  parentPort!.postMessage({ port });
  await new Promise<void>((r) => parentPort!.once('close', r));
  await server.close();
  driver.close();
}

async function guestSide(): Promise<void> {
  const { region, nbd, copy } = workerData as { region: SharedArrayBuffer; nbd?: boolean; copy?: boolean };
  if (nbd) return guestNbdSide(region, copy === true);
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

    if (process.env.ALLOC_ONLY !== 'nbd') {
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
    }

    // The guest's whole read path (ALLOC_ONLY=nbd: only these rows): its NBD server replying from lent region memory, and (before #8) through pread and a copy.
    for (const copy of [false, true]) {
      // notify: the guest's CPU per request is then its work, not its spinning.
      const region2 = createRegion({ mode: 'notify', queueSize: 256, dataBytes: 4 << 20, capacityBytes: volume.size });
      const device2 = new VirtioBlkDevice({ region: region2, backend: volume, name: 'alloc-nbd' });
      const poller2 = new Poller(50, defaultEngine());
      poller2.add(device2, 'notify');
      const w = spawnTsWorker(new URL(import.meta.url), { region: region2, nbd: true, copy });
      const { port } = await firstMessage<{ port: number }>(w);
      const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: 'v' });
      const reads = async (n: number) => {
        for (let i = 0; i < n; i++) await client.pread(buf, (i % HOT_BLOCKS) * 4096);
      };
      await reads(20_000); // warm up
      const phase = async <T>(start: string, end: string): Promise<T> => {
        const reply = new Promise<T>((resolve) => w.once('message', resolve));
        w.postMessage(start);
        await reads(N);
        w.postMessage(end);
        return reply;
      };
      const { cpuUs } = await phase<{ cpuUs: number }>('cpu-start', 'cpu-end');
      const r = await phase<Count>('count-start', 'count-end');
      rows.push([`guest NBD read hit QD1, ${copy ? 'pread + copy (before #8)' : 'lent region memory'}: NBD server + driver (guest heap; guest thread ${cpuUs.toFixed(1)} µs CPU/req)`, r]);
      await client.close();
      poller2.stop();
      await w.terminate();
    }
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
