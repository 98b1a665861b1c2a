/**
 * Guest side of the cross-process stress test: a child process maps the region
 * it was handed (fds 3, 4, 5: region, kick, call), runs random reads and
 * writes through a VirtioBlkDriver, checks every read against a reference copy
 * and reports a crc32 of the reference over IPC. Lanes own disjoint ranges, so
 * expected contents never depend on how concurrent requests interleave.
 */
import { crc32 } from 'node:zlib';
import { VirtioBlkDriver } from '../../../src/queue/blk-driver.ts';
import { attachGuestRegion } from '../../../src/deploy/guest/process-region.ts';

const args = JSON.parse(process.argv[2]!) as { regionBytes: number; seed: number; ops: number; lanes: number; maxBytes: number; spinBudgetUs?: number };
const { region, close } = attachGuestRegion({ region: 3, kick: 4, call: 5 }, args.regionBytes);
const driver = new VirtioBlkDriver({ region, spinBudgetUs: args.spinBudgetUs ?? 50 });
const ref = new Uint8Array(driver.size);
const laneBytes = Math.floor(driver.size / args.lanes / 4096) * 4096;
let rng = args.seed >>> 0 || 1;
const random = () => {
  rng ^= rng << 13; rng >>>= 0;
  rng ^= rng >>> 17;
  rng ^= rng << 5; rng >>>= 0;
  return rng / 2 ** 32;
};
let mismatches = 0;
let done = 0;

async function lane(index: number): Promise<void> {
  const base = index * laneBytes;
  const scratch = new Uint8Array(args.maxBytes);
  const perLane = Math.ceil(args.ops / args.lanes);
  for (let i = 0; i < perLane; i++) {
    // Mostly sector-aligned (the fast path); one in eight unaligned (read-modify-write in the driver).
    let length = 1 + Math.floor(random() * args.maxBytes);
    if (random() < 0.875) length = Math.max(512, Math.floor(length / 512) * 512);
    let offset = base + Math.floor(random() * (laneBytes - length));
    if (length % 512 === 0) offset = base + Math.floor((offset - base) / 512) * 512;
    const view = scratch.subarray(0, length);
    if (random() < 0.5) {
      const word = (random() * 2 ** 32) >>> 0;
      for (let j = 0; j + 4 <= length; j += 4) { view[j] = word; view[j + 1] = j >>> 8; view[j + 2] = i; view[j + 3] = index; }
      await driver.pwrite(view, offset);
      ref.set(view, offset);
    } else {
      await driver.pread(view, offset);
      if (Buffer.compare(view, ref.subarray(offset, offset + length)) !== 0) mismatches++;
    }
    done++;
  }
}

try {
  await Promise.all(Array.from({ length: args.lanes }, (_, i) => lane(i)));
  await driver.flush();
  process.send!({ ok: true, mismatches, done, crc: crc32(ref), stats: driver.stats() });
} catch (err) {
  process.send!({ ok: false, error: String((err as Error)?.stack ?? err) });
} finally {
  driver.close();
  close();
  process.disconnect();
}
