/**
 * Child process for the large truncate/remove crash test. Mounts the filesystem
 * on IMAGE with a tiny truncate step (4 blocks, so an 8 MiB file takes
 * 512 transactions and 8 commits), makes 'big' (8 MiB) and 'small', prints
 * READY, then runs one large `remove` or `truncate` (to TRUNC_SIZE) between
 * BEGIN and ACK lines. It kills itself with SIGKILL just before its KILL_AT-th
 * device write after BEGIN (or right after ACK if the operation finished first):
 * a crash at a chosen point, no timing involved.
 *
 *   node --import tsx truncate-crash-runner.ts IMAGE remove|truncate KILL_AT
 */
import { FileBlockDevice } from '../../../src/block/file-device.ts';
import type { BlockDevice, WriteFlags } from '../../../src/block/types.ts';
import { openFileSystem } from '../../../src/functions/fileserver/fs/index.ts';
import { OWNER, pattern, ROOT, ROOT_GEN } from './helpers.ts';

export const BIG = 8 << 20;
export const SMALL = 100_000;
export const TRUNC_SIZE = (1 << 20) + 100;
export const STEP_BLOCKS = 4;

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  const [image, mode, killAtArg] = process.argv.slice(2);
  const killAt = Number(killAtArg);
  const file = await FileBlockDevice.open(image, 64 << 20);
  let armed = false;
  let writes = 0;
  const die = () => process.kill(process.pid, 'SIGKILL');
  const dev: BlockDevice = {
    get size() {
      return file.size;
    },
    blockSize: file.blockSize,
    readOnly: false,
    writeThrough: file.writeThrough,
    pread: (b, o) => file.pread(b, o),
    pwrite(b: Uint8Array, o: number, f?: WriteFlags) {
      if (armed && ++writes >= killAt) die();
      return file.pwrite(b, o, f);
    },
    flush: () => file.flush(),
    trim: (o, l) => file.trim(o, l),
    zero: (o, l) => file.zero(o, l),
  };
  const fs = await openFileSystem(dev, { truncateStepBlocks: STEP_BLOCKS });
  const say = (line: string) => process.stdout.write(line + '\n');
  const big = await fs.create(ROOT, ROOT_GEN, 'big', { ...OWNER, exclusive: true });
  for (let off = 0; off < BIG; off += 1 << 20) await fs.write(big.ino, big.generation, off, pattern(1 << 20, off + 1), false);
  await fs.commit(big.ino, big.generation);
  const small = await fs.create(ROOT, ROOT_GEN, 'small', { ...OWNER, exclusive: true });
  await fs.write(small.ino, small.generation, 0, pattern(SMALL, 7), true);
  say('READY');
  armed = true;
  say('BEGIN');
  if (mode === 'remove') await fs.remove(ROOT, ROOT_GEN, 'big');
  else await fs.setattr(big.ino, big.generation, { size: TRUNC_SIZE });
  say('ACK');
  die();
}
