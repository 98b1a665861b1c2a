/**
 * Child process for the concurrent-overwrite crash test: mounts the filesystem on
 * an image, makes one 1 MiB file (FILE_SYNC), prints "READY ino gen", then 32
 * workers overwrite 4 KiB blocks of that one file with FILE_SYNC writes, each
 * worker its own blocks (block % 32 === worker), one write in flight per worker:
 *   BEGIN block version     before the write
 *   ACK block version       after it resolved
 * Block content is blockContent(block, version). The parent SIGKILLs it after a
 * number of ACKs and checks that every block holds its last acknowledged version
 * (or the one in flight).
 *
 *   node --import tsx overwrite-crash-runner.ts IMAGE
 */
import { FileBlockDevice } from '../../../src/block/file-device.ts';
import { openFileSystem } from '../../../src/functions/fileserver/fs/index.ts';
import { OWNER, pattern, ROOT, ROOT_GEN } from './helpers.ts';

export const FILE_BLOCKS = 256;
export const WORKERS = 32;

/** Version `v` of block `b`: its header names both, the rest is a pattern seeded by them. */
export function blockContent(b: number, v: number): Uint8Array {
  const out = pattern(4096, b * 100_000 + v + 1);
  new DataView(out.buffer).setUint32(0, b, true);
  new DataView(out.buffer).setUint32(4, v, true);
  return out;
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  const [image] = process.argv.slice(2);
  const dev = await FileBlockDevice.open(image, 64 << 20);
  const fs = await openFileSystem(dev);
  const say = (line: string) => process.stdout.write(line + '\n');
  const f = await fs.create(ROOT, ROOT_GEN, 'shared', { ...OWNER, exclusive: true });
  const initial = new Uint8Array(FILE_BLOCKS * 4096);
  for (let b = 0; b < FILE_BLOCKS; b++) initial.set(blockContent(b, 0), b * 4096);
  await fs.write(f.ino, f.generation, 0, initial, true);
  say(`READY ${f.ino} ${f.generation}`);
  await Promise.all(
    Array.from({ length: WORKERS }, async (_, w) => {
      for (let i = 0; ; i++) {
        const b = w + WORKERS * (i % (FILE_BLOCKS / WORKERS));
        const v = 1 + Math.floor(i / (FILE_BLOCKS / WORKERS));
        say(`BEGIN ${b} ${v}`);
        await fs.write(f.ino, f.generation, b * 4096, blockContent(b, v), true);
        say(`ACK ${b} ${v}`);
      }
    }),
  );
}
