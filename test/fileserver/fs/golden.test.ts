import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { MemoryBlockDevice } from '../../../src/block/memory-device.ts';
import { fsck, openFileSystem } from '../../../src/functions/fileserver/fs/index.ts';
import { buildGolden, GOLDEN_PATH, README } from './golden.ts';
import { listAll, ROOT, ROOT_GEN, text } from './helpers.ts';

const fixture = () => new Uint8Array(gunzipSync(readFileSync(GOLDEN_PATH)));

test('the generator still writes the committed golden image byte for byte', async () => {
  const built = await buildGolden();
  const want = fixture();
  assert.equal(built.byteLength, want.byteLength);
  const firstDiff = built.findIndex((b, i) => b !== want[i]);
  assert.equal(firstDiff, -1, `first differing byte at ${firstDiff} (block ${Math.floor(firstDiff / 4096)})`);
});

test('the golden image starts with the format header: magic, type, version, block size', () => {
  const img = fixture();
  const v = new DataView(img.buffer, img.byteOffset);
  assert.equal(text(img.subarray(0, 4)), 'SVFS');
  assert.equal(v.getUint16(4, true), 1, 'block type: superblock');
  assert.equal(v.getUint16(6, true), 1, 'format version');
  assert.equal(v.getUint32(8, true), 4096, 'block size');
});

test('the golden image mounts, passes fsck and holds the expected tree', async () => {
  const dev = new MemoryBlockDevice(1 << 20);
  dev.bytes.set(fixture());
  const report = await fsck(dev);
  assert.deepEqual(report.problems, []);
  assert.equal(report.stats.files, 2);
  assert.equal(report.stats.dirs, 2);
  assert.equal(report.stats.symlinks, 1);
  const fs = await openFileSystem(dev);
  assert.equal(fs.fsid, 0xa7a6a5a4a3a2a1a0n);
  assert.deepEqual((await listAll(fs, ROOT, ROOT_GEN)).map((e) => e.name).sort(), ['docs', 'latest', 'sparse.bin']);
  const docs = await fs.lookup(ROOT, ROOT_GEN, 'docs');
  const readme = await fs.lookup(docs.ino, docs.generation, 'readme.txt');
  const again = await fs.lookup(docs.ino, docs.generation, 'again.txt');
  assert.equal(again.ino, readme.ino);
  assert.equal(readme.nlink, 2);
  assert.equal(text((await fs.read(readme.ino, readme.generation, 0, 100)).data), README);
  const latest = await fs.lookup(ROOT, ROOT_GEN, 'latest');
  assert.equal(await fs.readlink(latest.ino, latest.generation), 'docs/readme.txt');
  const sparse = await fs.lookup(ROOT, ROOT_GEN, 'sparse.bin');
  assert.equal(sparse.size, 200_100);
  assert.equal(sparse.used, 2 * 4096, 'one data block and its single-indirect block');
  assert.equal(sparse.mtimeMs > 1_700_000_000_000, true);
});
