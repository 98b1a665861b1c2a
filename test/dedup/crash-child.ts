/**
 * Crash-test runner: opens a DedupVolume on a FileBlockDevice in this child process and
 * runs the seeded mixed workload from data.ts, printing "ack <i>" once every operation
 * up to i is durable (after a flush or a FUA write). The test SIGKILLs it mid-load.
 * argv: <backing file> <backing bytes> <logical blocks> <seed> <ops>
 */
import { FileBlockDevice } from '../../src/block/file-device.ts';
import { DedupVolume } from '../../src/functions/dedup/volume.ts';
import { BLOCK, contentFor, workload } from './data.ts';

const [file, bytes, blocks, seed, count] = process.argv.slice(2);
const device = await FileBlockDevice.open(file!, Number(bytes));
const vol = await DedupVolume.open(device, {
  logicalSize: Number(blocks) * BLOCK,
  compression: 'lz4',
  dedup: true,
  cacheBytes: 1 << 20,
  log: (msg) => console.error(msg),
});
process.stdout.write('ready\n');
const ops = workload(Number(seed), Number(count), Number(blocks));
for (let i = 0; i < ops.length; i++) {
  const op = ops[i]!;
  if (op.kind === 'flush') {
    await vol.flush();
    process.stdout.write(`ack ${i}\n`); // stdout to a pipe is synchronous on Linux: never lost
  } else if (op.kind === 'zero') {
    await vol.zero(op.lbn * BLOCK, op.count * BLOCK);
  } else {
    const buf = new Uint8Array(op.count * BLOCK);
    op.seeds.forEach((s, k) => buf.set(contentFor(s), k * BLOCK));
    await vol.pwrite(buf, op.lbn * BLOCK, { fua: op.fua });
    if (op.fua) process.stdout.write(`ack ${i}\n`);
  }
}
await vol.close();
await device.close();
process.stdout.write('done\n');
