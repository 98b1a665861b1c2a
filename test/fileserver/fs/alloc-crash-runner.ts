/**
 * Child process for the allocating-write crash test: mounts the filesystem on an
 * image, creates FILES files, prints "READY", then WORKERS_PER_FILE workers per
 * file write FILE_SYNC into new blocks of it (write-before-map): worker k of a
 * file writes blocks k, k + STRIDE, k + 2*STRIDE, ... (so blocks STRIDE/2.. of
 * each stride stay holes); the last worker of each file writes only the first
 * PARTIAL bytes of its blocks (a zero-padded new block). Beside them a churn
 * worker fills and removes scratch files, so freed blocks holding other data
 * come back to the allocator. Lines:
 *   BEGIN file block     before the write
 *   ACK file block       after it resolved
 * The parent SIGKILLs it after a number of ACKs and checks every block.
 *
 *   node --import tsx alloc-crash-runner.ts IMAGE
 */
import { FileBlockDevice } from '../../../src/block/file-device.ts';
import { openFileSystem } from '../../../src/functions/fileserver/fs/index.ts';
import { OWNER, pattern, ROOT, ROOT_GEN } from './helpers.ts';

export const FILES = 4;
export const WORKERS_PER_FILE = 4;
export const STRIDE = 8;
export const PARTIAL = 3000;
export const IMAGE_BYTES = 64 << 20;
/** The tag scratch files carry instead of a file index. */
export const CHURN = 99;

/** Block `b` of file `f`: its header names both, the rest is a pattern seeded by them; the last worker's blocks are PARTIAL bytes long. */
export function blockContent(f: number, b: number): Uint8Array {
  const out = pattern(4096, f * 1_000_003 + b + 1);
  const v = new DataView(out.buffer);
  v.setUint32(0, 0x57424d21, true); // "!MBW"
  v.setUint32(4, f, true);
  v.setUint32(8, b, true);
  return b % STRIDE === WORKERS_PER_FILE - 1 ? out.subarray(0, PARTIAL) : out;
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  const [image] = process.argv.slice(2);
  const dev = await FileBlockDevice.open(image, IMAGE_BYTES);
  const fs = await openFileSystem(dev);
  const say = (line: string) => process.stdout.write(line + '\n');
  const files = [];
  for (let f = 0; f < FILES; f++) files.push(await fs.create(ROOT, ROOT_GEN, `f${f}`, { ...OWNER, exclusive: true }));
  say('READY');
  const churn = async () => {
    for (let n = 0; ; n++) {
      const name = `scratch${n % 3}`;
      const s = await fs.create(ROOT, ROOT_GEN, name, { ...OWNER, exclusive: false });
      for (let b = 0; b < 16; b++) await fs.write(s.ino, s.generation, b * 4096, blockContent(CHURN, b), true);
      await fs.remove(ROOT, ROOT_GEN, name);
    }
  };
  await Promise.all([
    churn(),
    ...files.flatMap((file, f) =>
      Array.from({ length: WORKERS_PER_FILE }, async (_, k) => {
        for (let i = 0; ; i++) {
          const b = k + STRIDE * i;
          say(`BEGIN ${f} ${b}`);
          await fs.write(file.ino, file.generation, b * 4096, blockContent(f, b), true);
          say(`ACK ${f} ${b}`);
        }
      }),
    ),
  ]);
}
