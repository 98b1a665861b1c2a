/**
 * Builds the golden image of on-volume format version 1: a 1 MiB volume with a
 * fixed uuid and clock and a few of every kind of object. The committed
 * fixture is this output, gzipped; golden.test.ts checks byte-for-byte that the
 * code still writes exactly this, and that it still reads it.
 *
 * Regenerate (only when the format version changes!):
 *   node --import tsx test/fileserver/fs/golden.ts --write
 */
import { writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { MemoryBlockDevice } from '../../../src/block/memory-device.ts';
import { mkfs, openFileSystem } from '../../../src/functions/fileserver/fs/index.ts';

export const GOLDEN_PATH = new URL('./fixtures/golden-v1.img.gz', import.meta.url);
export const GOLDEN_TIME = 1_700_000_000_000;
export const GOLDEN_UUID = Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i);
export const README = 'storvisor golden image, format version 1\n';

export async function buildGolden(): Promise<Uint8Array> {
  const dev = new MemoryBlockDevice(1 << 20);
  await mkfs(dev, { uuid: GOLDEN_UUID, nowMs: GOLDEN_TIME, inodes: 64, journalBlocks: 32 });
  let tick = GOLDEN_TIME;
  const fs = await openFileSystem(dev, { clock: () => (tick += 1000) });
  const o = { mode: 0o644, uid: 1000, gid: 1000 };
  const docs = await fs.mkdir(1, 1, 'docs', { ...o, mode: 0o755 });
  const readme = await fs.create(docs.ino, docs.generation, 'readme.txt', { ...o, exclusive: true });
  await fs.write(readme.ino, readme.generation, 0, new TextEncoder().encode(README), true);
  await fs.link(readme.ino, readme.generation, 1, 1, 'readme-link');
  await fs.symlink(1, 1, 'latest', 'docs/readme.txt', o);
  const sparse = await fs.create(1, 1, 'sparse.bin', { ...o, exclusive: true });
  await fs.write(sparse.ino, sparse.generation, 200_000, new Uint8Array(100).fill(0x5a), false);
  await fs.commit();
  const gone = await fs.create(1, 1, 'removed', { ...o, exclusive: true });
  await fs.remove(1, 1, 'removed');
  await fs.rename(1, 1, 'readme-link', docs.ino, docs.generation, 'again.txt');
  void gone;
  await fs.close();
  return dev.bytes;
}

if (process.argv.includes('--write')) {
  const image = await buildGolden();
  writeFileSync(GOLDEN_PATH, gzipSync(image, { level: 9 }));
  console.log(`wrote ${GOLDEN_PATH.pathname}`);
}
