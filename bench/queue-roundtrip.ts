/**
 * Round-trip latency of a 4 KiB read through the shared-memory queue across
 * threads (guest worker ↔ controller main thread), per notification mode,
 * against an in-thread call on the same MemoryBlockDevice as the baseline.
 *
 *   node --import tsx bench/queue-roundtrip.ts [runs=5] [readsPerRun=2000] [spinBudgetUs=50] [maxSpinBudgetUs=1000]
 *
 * "adaptive" uses the fixed budget; "adaptive, growing" lets both sides grow it
 * up to maxSpinBudgetUs when sleeps turn out short (SpinBudget).
 *
 * One file, two roles: the main thread runs the device; a worker started on
 * this same file runs the driver and times each read.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { MemoryBlockDevice } from '../src/block/memory-device.ts';
import { VirtioBlkDevice } from '../src/queue/blk-device.ts';
import { VirtioBlkDriver } from '../src/queue/blk-driver.ts';
import { runDeviceLoop } from '../test/queue/helpers/device-loop.ts';
import { createRegion, type QueueModeName } from '../src/queue/layout.ts';
import type { BlockDevice } from '../src/block/types.ts';
import { firstMessage, spawnTsWorker } from '../test/queue/helpers/spawn-worker.ts';

const CAPACITY = 16 * 1024 * 1024;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Median latency (µs) of sequential random 4 KiB reads, per run. */
async function timeReads(dev: BlockDevice, runs: number, reads: number): Promise<number[]> {
  const buf = new Uint8Array(4096);
  const blocks = CAPACITY / 4096;
  const medians: number[] = [];
  for (let i = 0; i < 200; i++) await dev.pread(buf, (i % blocks) * 4096); // warm up JIT and caches
  for (let r = 0; r < runs; r++) {
    const samples = new Array<number>(reads);
    for (let i = 0; i < reads; i++) {
      const offset = ((i * 7919 + r) % blocks) * 4096;
      const t0 = performance.now();
      await dev.pread(buf, offset);
      samples[i] = (performance.now() - t0) * 1000;
    }
    medians.push(median(samples));
  }
  return medians;
}

async function guest(): Promise<void> {
  const { region, runs, reads, spinBudgetUs, maxSpinBudgetUs } = workerData as {
    region: SharedArrayBuffer; runs: number; reads: number; spinBudgetUs: number; maxSpinBudgetUs: number;
  };
  const driver = new VirtioBlkDriver({ region, spinBudgetUs, maxSpinBudgetUs });
  const medians = await timeReads(driver, runs, reads);
  parentPort!.postMessage({ medians, stats: driver.stats() });
  driver.close();
}

async function measureMode(mode: QueueModeName, runs: number, reads: number, spinBudgetUs: number, maxSpinBudgetUs: number) {
  const region = createRegion({ mode, queueSize: 256, dataBytes: 1024 * 1024, capacityBytes: CAPACITY });
  const device = new VirtioBlkDevice({ region, backend: new MemoryBlockDevice(CAPACITY), name: `bench-${mode}` });
  const loop = runDeviceLoop(device, { mode, spinBudgetUs, maxSpinBudgetUs });
  const worker = spawnTsWorker(new URL(import.meta.url), { region, runs, reads, spinBudgetUs, maxSpinBudgetUs });
  try {
    const reply = await firstMessage<{ medians: number[]; stats: Record<string, number> }>(worker);
    return { ...reply, loop: loop.stats() };
  } finally {
    await loop.stop();
    await worker.terminate();
  }
}

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 5);
  const reads = Number(process.argv[3] ?? 2000);
  const spinBudgetUs = Number(process.argv[4] ?? 50);
  const maxSpinBudgetUs = Number(process.argv[5] ?? 1000);
  const started = performance.now();
  const rows: Array<[string, number[], string]> = [];
  rows.push(['in-thread call (baseline)', await timeReads(new MemoryBlockDevice(CAPACITY), runs, reads), '']);
  const variants = [
    { name: 'queue, poll', mode: 'poll', max: spinBudgetUs },
    { name: 'queue, notify', mode: 'notify', max: spinBudgetUs },
    { name: 'queue, adaptive', mode: 'adaptive', max: spinBudgetUs },
    { name: 'queue, adaptive, growing', mode: 'adaptive', max: maxSpinBudgetUs },
  ] as const;
  for (const v of variants) {
    const r = await measureMode(v.mode, runs, reads, spinBudgetUs, v.max);
    rows.push([v.name, r.medians, `kicks ${r.stats.kicks}, driver sleeps ${r.stats.interruptsWaited}, device sleeps ${r.loop.sleeps}`]);
  }
  console.log(`4 KiB read round trip, ${runs} runs x ${reads} sequential reads (QD1); median of per-run medians; spin budget ${spinBudgetUs} µs (growing: up to ${maxSpinBudgetUs} µs)`);
  console.log('path                        median µs   runs (µs)                          notes');
  for (const [name, medians, notes] of rows) {
    const list = medians.map((m) => m.toFixed(1)).join(' ');
    console.log(`${name.padEnd(28)}${median(medians).toFixed(1).padStart(9)}   ${list.padEnd(35)}${notes}`);
  }
  console.log(`(${((performance.now() - started) / 1000).toFixed(1)} s)`);
}

if (isMainThread) await main();
else await guest();
