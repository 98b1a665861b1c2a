/**
 * Guest side of the cross-thread tests: random reads and writes through a
 * VirtioBlkDriver, checked against a reference copy kept in the worker.
 * Four lanes run concurrently, each on its own quarter of the device, so the
 * expected contents never depend on how concurrent requests interleave.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { VirtioBlkDriver } from '../../../src/queue/blk-driver.ts';

interface Job {
  region: SharedArrayBuffer;
  budgets: { spinBudgetUs?: number; maxSpinBudgetUs?: number };
  seed: number;
  opsPerLane: number;
}

const { region, seed, opsPerLane, budgets } = workerData as Job;
const driver = new VirtioBlkDriver({ region, ...budgets });
const ref = new Uint8Array(driver.size);
const lanes = 4;
const laneBytes = Math.floor(driver.size / lanes);
let rng = seed >>> 0 || 1;
const random = () => {
  rng ^= rng << 13; rng >>>= 0;
  rng ^= rng >>> 17;
  rng ^= rng << 5; rng >>>= 0;
  return rng / 2 ** 32;
};
let mismatches = 0;

async function lane(index: number): Promise<void> {
  const base = index * laneBytes;
  for (let i = 0; i < opsPerLane; i++) {
    const aligned = random() < 0.5;
    let length = 1 + Math.floor(random() * 24 * 1024);
    let offset = base + Math.floor(random() * (laneBytes - length));
    if (aligned) {
      offset = base + Math.floor((offset - base) / 4096) * 4096;
      length = Math.max(4096, Math.floor(length / 4096) * 4096);
      if (offset + length > base + laneBytes) offset = base + laneBytes - length;
    }
    if (random() < 0.5) {
      const data = new Uint8Array(length);
      for (let j = 0; j < length; j += 97) data[j] = Math.floor(random() * 256);
      await driver.pwrite(data, offset);
      ref.set(data, offset);
    } else {
      const buf = new Uint8Array(length);
      await driver.pread(buf, offset);
      if (Buffer.compare(buf, ref.subarray(offset, offset + length)) !== 0) mismatches++;
    }
  }
}

try {
  await Promise.all(Array.from({ length: lanes }, (_, i) => lane(i)));
  await driver.flush();
  parentPort!.postMessage({ ok: true, mismatches, reference: ref, stats: driver.stats() });
} catch (err) {
  parentPort!.postMessage({ ok: false, error: String((err as Error)?.stack ?? err) });
} finally {
  driver.close();
}
