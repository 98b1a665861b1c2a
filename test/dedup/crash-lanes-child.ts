/**
 * Crash-test runner for concurrent writers: opens a DedupVolume on a FileBlockDevice and
 * runs `lanes` seeded mixed workloads (data.ts) at once, lane k over its own logical
 * blocks [k*laneBlocks, (k+1)*laneBlocks), all sharing one pool of duplicate contents.
 * Prints "ack <lane> <i>" once every operation of that lane up to i is durable (after a
 * flush or a FUA write: a lane's operations run one after another). SIGKILLed mid-load.
 * argv: <backing file> <backing bytes> <lanes> <lane blocks> <seed> <ops per lane>
 */
import { FileBlockDevice } from '../../src/block/file-device.ts';
import { DedupVolume } from '../../src/functions/dedup/volume.ts';
import { BLOCK, contentFor, scaledSeed, workload } from './data.ts';

const [file, bytes, lanesArg, laneBlocksArg, seed, count, scaleArg, workersArg] = process.argv.slice(2);
const lanes = Number(lanesArg);
const laneBlocks = Number(laneBlocksArg);
const scale = Number(scaleArg ?? 1);
const device = await FileBlockDevice.open(file!, Number(bytes));
const vol = await DedupVolume.open(device, {
  logicalSize: lanes * laneBlocks * scale * BLOCK,
  compression: 'lz4',
  dedup: true,
  cacheBytes: 1 << 20,
  workers: Number(workersArg ?? 1),
  log: (msg) => console.error(msg),
});
process.stdout.write('ready\n');

async function lane(k: number): Promise<void> {
  const base = k * laneBlocks;
  const ops = workload(Number(seed) * 100 + k, Number(count), laneBlocks);
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    if (op.kind === 'flush') {
      await vol.flush();
      process.stdout.write(`ack ${k} ${i}\n`); // stdout to a pipe is synchronous on Linux: never lost
    } else if (op.kind === 'zero') {
      await vol.zero((base + op.lbn) * scale * BLOCK, op.count * scale * BLOCK);
    } else {
      const buf = new Uint8Array(op.count * scale * BLOCK);
      op.seeds.forEach((s, j) => {
        for (let m = 0; m < scale; m++) buf.set(contentFor(scaledSeed(s, m, scale)), (j * scale + m) * BLOCK);
      });
      await vol.pwrite(buf, (base + op.lbn) * scale * BLOCK, { fua: op.fua });
      if (op.fua) process.stdout.write(`ack ${k} ${i}\n`);
    }
  }
}

await Promise.all(Array.from({ length: lanes }, (_, k) => lane(k)));
await vol.close();
await device.close();
process.stdout.write('done\n');
