/**
 * Child process for the crash test: mounts the filesystem on an image file and
 * runs a write/mkdir/rename/remove load from a few concurrent workers, printing
 * "BEGIN op" before and "ACK op" after each operation resolves. The parent
 * SIGKILLs it at a random moment and checks every acknowledged operation.
 *
 *   node --import tsx crash-runner.ts IMAGE EPOCH
 *
 * Lines (fields separated by spaces):
 *   W name size seed     created and wrote stable (FILE_SYNC) content
 *   U name size seed     created, wrote unstable in pieces, then commit()
 *   R from to            renamed
 *   M name               mkdir
 *   X name               removed
 */
import { FileBlockDevice } from '../../../src/block/file-device.ts';
import { openFileSystem } from '../../../src/functions/fileserver/fs/index.ts';
import { OWNER, pattern, ROOT, ROOT_GEN } from './helpers.ts';

const [image, epochArg] = process.argv.slice(2);
const epoch = Number(epochArg);
const dev = await FileBlockDevice.open(image, 64 << 20);
const fs = await openFileSystem(dev);
const say = (line: string) => process.stdout.write(line + '\n');

async function op(line: string, run: () => Promise<unknown>): Promise<void> {
  say(`BEGIN ${line}`);
  await run();
  say(`ACK ${line}`);
}

async function worker(w: number): Promise<void> {
  for (let i = 0; ; i++) {
    const name = `e${epoch}w${w}f${i}`;
    const seed = epoch * 1_000_000 + w * 10_000 + i;
    const size = 1 + ((seed * 7919) % 40_000);
    const data = pattern(size, seed);
    if (i % 4 === 3) {
      await op(`U ${name} ${size} ${seed}`, async () => {
        const a = await fs.create(ROOT, ROOT_GEN, name, { ...OWNER, exclusive: true });
        for (let off = 0; off < size; off += 5000) await fs.write(a.ino, a.generation, off, data.subarray(off, off + 5000), false);
        await fs.commit(a.ino, a.generation);
      });
    } else {
      await op(`W ${name} ${size} ${seed}`, async () => {
        const a = await fs.create(ROOT, ROOT_GEN, name, { ...OWNER, exclusive: true });
        await fs.write(a.ino, a.generation, 0, data, true);
      });
    }
    if (i % 3 === 1) await op(`R ${name} ${name}r`, () => fs.rename(ROOT, ROOT_GEN, name, ROOT, ROOT_GEN, `${name}r`));
    if (i % 5 === 2) await op(`M ${name}d`, () => fs.mkdir(ROOT, ROOT_GEN, `${name}d`, OWNER));
    if (i % 7 === 5 && i % 3 !== 1) await op(`X ${name}`, () => fs.remove(ROOT, ROOT_GEN, name));
  }
}

say('READY');
await Promise.all([0, 1, 2, 3].map(worker));
