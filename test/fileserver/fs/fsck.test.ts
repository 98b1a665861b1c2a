import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryBlockDevice } from '../../../src/block/memory-device.ts';
import { fsck, openFileSystem } from '../../../src/functions/fileserver/fs/index.ts';
import { decodeInode, encodeInode } from '../../../src/functions/fileserver/fs/inode.ts';
import { decodeSuperblock, INODE_SIZE } from '../../../src/functions/fileserver/fs/superblock.ts';
import { bytes, OWNER, ROOT, ROOT_GEN } from './helpers.ts';

/** A small closed filesystem with a file and a directory, and its layout. */
async function image() {
  const dev = new MemoryBlockDevice(8 << 20);
  const fs = await openFileSystem(dev);
  const f = await fs.create(ROOT, ROOT_GEN, 'file', { ...OWNER, exclusive: true });
  await fs.write(f.ino, f.generation, 0, bytes('content'), true);
  const d = await fs.mkdir(ROOT, ROOT_GEN, 'dir', OWNER);
  await fs.close();
  const sb = decodeSuperblock(dev.bytes.subarray(0, 4096), dev.size);
  return { dev, sb, f, d };
}

test('fsck reports a clean image as ok with its counts', async () => {
  const { dev } = await image();
  const r = await fsck(dev);
  assert.equal(r.ok, true);
  assert.deepEqual(r.problems, []);
  assert.equal(r.stats.files, 1);
  assert.equal(r.stats.dirs, 2);
  assert.equal(r.stats.dirEntries, 2);
});

test('fsck reports an all-zero device as not a filesystem', async () => {
  const r = await fsck(new MemoryBlockDevice(1 << 20));
  assert.deepEqual(r, { ok: false, problems: ['superblock: bad magic (not a storvisor filesystem)'], stats: r.stats });
});

test('fsck reports a damaged superblock checksum', async () => {
  const { dev } = await image();
  dev.bytes[100] ^= 1;
  assert.deepEqual((await fsck(dev)).problems, ['superblock: checksum mismatch']);
});

test('fsck reports a block marked used that nothing owns', async () => {
  const { dev, sb } = await image();
  const leaked = sb.totalBlocks - 1;
  dev.bytes[sb.blockBitmapStart * 4096 + (leaked >> 3)] |= 1 << (leaked & 7);
  assert.deepEqual((await fsck(dev)).problems, [`block ${leaked} is marked in use but nothing owns it`]);
});

test('fsck reports a block in use that the bitmap calls free', async () => {
  const { dev, sb } = await image();
  const root = sb.dataStart; // the root directory's B-tree root
  dev.bytes[sb.blockBitmapStart * 4096 + (root >> 3)] &= ~(1 << (root & 7));
  assert.deepEqual((await fsck(dev)).problems, [`block ${root} is in use by inode 1 but marked free`]);
});

test('fsck reports a wrong link count', async () => {
  const { dev, sb } = await image();
  const table = dev.bytes.subarray(sb.inodeTableStart * 4096, (sb.inodeTableStart + 1) * 4096);
  const root = decodeInode(table, ROOT * INODE_SIZE);
  root.nlink = 7;
  encodeInode(root, table, ROOT * INODE_SIZE);
  assert.deepEqual((await fsck(dev)).problems, ['directory 1 has link count 7, expected 3']);
});

test('fsck reports a corrupt directory block', async () => {
  const { dev, sb } = await image();
  dev.bytes[sb.dataStart * 4096 + 30] ^= 0xff;
  const r = await fsck(dev);
  assert.equal(r.ok, false);
  assert.ok(r.problems.includes(`directory 1: directory block ${sb.dataStart} is corrupt`), r.problems.join('\n'));
});
