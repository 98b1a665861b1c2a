import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fsck, openFileSystem, type OpenOptions } from '../../../src/functions/fileserver/fs/index.ts';
import { BLOCK_SIZE } from '../../../src/functions/fileserver/fs/superblock.ts';
import { FaultDevice } from './fault-device.ts';
import { OWNER, pattern, ROOT, ROOT_GEN } from './helpers.ts';

const code = (c: string) => (e: unknown) => (e as { code?: string }).code === `SV_ERR_FS_${c}`;
const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

async function open(dev: FaultDevice, opts: OpenOptions = {}) {
  const fs = await openFileSystem(dev, opts);
  return { fs, dataFrom: fs.sb.dataStart * BLOCK_SIZE };
}

async function writeFile(fs: Awaited<ReturnType<typeof openFileSystem>>, name: string, data: Uint8Array) {
  const f = await fs.create(ROOT, ROOT_GEN, name, { ...OWNER, exclusive: true });
  await fs.write(f.ino, f.generation, 0, data, true);
  return f;
}

/**
 * A volume whose lowest free data blocks held a removed file's data: a
 * writeback that leaked its pointers would point there.
 */
async function volumeWithFreedBlocks() {
  const dev = new FaultDevice(32 << 20);
  const { fs: first } = await open(dev);
  await writeFile(first, 'victim', pattern(200 * 1024, 1));
  await writeFile(first, 'keep', pattern(100 * 1024, 2));
  await first.remove(ROOT, ROOT_GEN, 'victim');
  await first.close(); // the checkpoint makes the victim's blocks allocatable again
  const { fs, dataFrom } = await open(dev);
  return { dev, fs, dataFrom };
}

test('a data write failing with EIO mid-writeback reports IO and commits none of the writeback', async () => {
  const { dev, fs, dataFrom } = await volumeWithFreedBlocks();
  const a = await fs.create(ROOT, ROOT_GEN, 'a', { ...OWNER, exclusive: true });
  const base = await fsck(dev.snapshot());
  assert.deepEqual(base.problems, []);
  const statBefore = await fs.statfs();
  // 1.5 MiB: 384 data blocks and an indirect block, written as a 1 MiB run and a
  // 512 KiB run (the largest device write is 1 MiB); the second one fails.
  // Written as 32 KiB unstable writes: small enough to be buffered until the commit.
  const whole = pattern(1536 * 1024, 3);
  for (let off = 0; off < whole.byteLength; off += 32 * 1024) await fs.write(a.ino, a.generation, off, whole.subarray(off, off + 32 * 1024), false);
  dev.failWrites(dataFrom, dev.size, { skip: 1, kind: 'EIO' });
  await assert.rejects(fs.commit(a.ino, a.generation), code('IO'));
  assert.equal(dev.failed, 1, 'the fault fired');
  dev.clearFaults();
  await fs.commit(a.ino, a.generation); // the failure was reported to the commit that met it: not again

  const attr = await fs.getattr(a.ino, a.generation);
  assert.equal(attr.size, 0, 'the file keeps its last committed size');
  assert.equal(attr.used, 0, 'and owns no blocks');
  assert.deepEqual((await fs.read(a.ino, a.generation, 0, 4096)).data, new Uint8Array(0));
  assert.equal((await fs.statfs()).freeBytes, statBefore.freeBytes, 'no block is lost to the failed writeback');

  // The next transaction commits the blocks the failed one dirtied: they must carry nothing of it.
  const b = await writeFile(fs, 'b', pattern(60 * 1024, 4));
  const afterNext = await fsck(dev.snapshot());
  assert.ok(afterNext.stats.journalRecords > 0, 'the check reads through the committed journal records');
  assert.deepEqual(afterNext.problems, [], 'no leaked block, no block owned twice');
  const bBlocks = (await fs.getattr(b.ino, b.generation)).used / BLOCK_SIZE;
  assert.equal(afterNext.stats.freeBlocks, base.stats.freeBlocks - bBlocks, 'only the new file took blocks');

  // The file can be written again; no file reads another's data.
  await fs.write(a.ino, a.generation, 0, pattern(200 * 1024, 5), true);
  assert.ok(same((await fs.read(a.ino, a.generation, 0, 200 * 1024)).data, pattern(200 * 1024, 5)));
  assert.ok(same((await fs.read(b.ino, b.generation, 0, 60 * 1024)).data, pattern(60 * 1024, 4)));
  const keep = await fs.lookup(ROOT, ROOT_GEN, 'keep');
  assert.ok(same((await fs.read(keep.ino, keep.generation, 0, 100 * 1024)).data, pattern(100 * 1024, 2)));
  await fs.close();
  const end = await fsck(dev.mem);
  assert.deepEqual(end.problems, []);
  const { fs: again } = await open(dev);
  assert.equal(again.stats().freeBlocks, end.stats.freeBlocks, 'the mounted free count matches the bitmap');
  await again.close();
});

test('ENOSPC from the device during an over-the-limit writeback fails that write and the next commit, once', async () => {
  const dev = new FaultDevice(32 << 20);
  const { fs, dataFrom } = await open(dev, { maxDirtyBytes: 64 * 1024 });
  const f = await fs.create(ROOT, ROOT_GEN, 'c', { ...OWNER, exclusive: true });
  const data = pattern(96 * 1024, 6);
  await fs.write(f.ino, f.generation, 0, data.subarray(0, 32 * 1024), false); // acknowledged, still in memory
  dev.failWrites(dataFrom, dev.size, { kind: 'ENOSPC' }); // the writeback's one data write (24 consecutive blocks)
  await assert.rejects(fs.write(f.ino, f.generation, 32 * 1024, data.subarray(32 * 1024), false), code('NOSPC'));
  assert.equal(dev.failed, 1, 'the fault fired');
  dev.clearFaults();
  // The acknowledged unstable write was lost with the failed writeback: COMMIT must say so.
  await assert.rejects(fs.commit(f.ino, f.generation), code('NOSPC'));
  await fs.commit(f.ino, f.generation);
  assert.equal((await fs.getattr(f.ino, f.generation)).size, 0);
  await fs.write(f.ino, f.generation, 0, data, true);
  assert.ok(same((await fs.read(f.ino, f.generation, 0, data.byteLength)).data, data));
  assert.deepEqual((await fsck(dev.snapshot())).problems, []);
  await fs.close();
  assert.deepEqual((await fsck(dev.mem)).problems, []);
});

test('a symlink whose target block cannot be written fails with IO and leaks no inode or block', async () => {
  const dev = new FaultDevice(16 << 20);
  const { fs, dataFrom } = await open(dev);
  const before = await fs.statfs();
  dev.failWrites(dataFrom, dev.size, { kind: 'EIO' });
  await assert.rejects(fs.symlink(ROOT, ROOT_GEN, 'l', 'target', OWNER), code('IO'));
  assert.equal(dev.failed, 1);
  await assert.rejects(fs.lookup(ROOT, ROOT_GEN, 'l'), code('NOENT'));
  const after = await fs.statfs();
  assert.equal(after.freeFiles, before.freeFiles);
  assert.equal(after.freeBytes, before.freeBytes);
  await fs.symlink(ROOT, ROOT_GEN, 'l', 'target', OWNER);
  assert.equal(await fs.readlink((await fs.lookup(ROOT, ROOT_GEN, 'l')).ino, (await fs.lookup(ROOT, ROOT_GEN, 'l')).generation), 'target');
  assert.deepEqual((await fsck(dev.snapshot())).problems, []);
  await fs.close();
});

test('a metadata read error halfway through a remove makes the filesystem read-only and a remount recovers', async () => {
  const dev = new FaultDevice(16 << 20);
  const { fs: first } = await open(dev);
  await writeFile(first, 'big', pattern(100 * 1024, 7)); // has an indirect block
  const other = await writeFile(first, 'other', pattern(1000, 8));
  await first.close();
  const { fs, dataFrom } = await open(dev, { log: () => {} });
  await fs.lookup(ROOT, ROOT_GEN, 'big'); // directory and inode now cached; the indirect block is not
  dev.failReads(dataFrom, dev.size, { kind: 'EIO' });
  // The entry is already gone from the cached directory block when freeing the blocks needs the indirect block.
  await assert.rejects(fs.remove(ROOT, ROOT_GEN, 'big'), (e: unknown) => (e as { errno?: string }).errno === 'EIO');
  assert.equal(dev.failed, 1);
  dev.clearFaults();
  await assert.rejects(fs.create(ROOT, ROOT_GEN, 'x', { ...OWNER, exclusive: true }), code('ROFS'));
  await assert.rejects(fs.write(other.ino, other.generation, 0, pattern(10, 9), false), code('ROFS'));
  await assert.rejects(fs.mkdir(ROOT, ROOT_GEN, 'd', OWNER), /read-only after an error/);
  // Nothing of the half-done remove reached the volume.
  assert.deepEqual((await fsck(dev.mem)).problems, []);
  const { fs: again } = await open(dev);
  const big = await again.lookup(ROOT, ROOT_GEN, 'big');
  assert.ok(same((await again.read(big.ino, big.generation, 0, 100 * 1024)).data, pattern(100 * 1024, 7)));
  await again.remove(ROOT, ROOT_GEN, 'big');
  await again.close();
  assert.deepEqual((await fsck(dev.mem)).problems, []);
});

test('a failed journal write makes the filesystem read-only and a remount finds the last committed state', async () => {
  const dev = new FaultDevice(16 << 20);
  const { fs } = await open(dev, { log: () => {} });
  const kept = await writeFile(fs, 'kept', pattern(30_000, 10));
  const journalEnd = (fs.sb.journalStart + fs.sb.journalBlocks) * BLOCK_SIZE;
  dev.failWrites(BLOCK_SIZE, journalEnd, { kind: 'EIO' });
  await assert.rejects(writeFile(fs, 'lost', pattern(30_000, 11)), code('IO'));
  assert.equal(dev.failed, 1);
  dev.clearFaults();
  await assert.rejects(fs.create(ROOT, ROOT_GEN, 'later', { ...OWNER, exclusive: true }), code('ROFS'));
  await assert.rejects(fs.write(kept.ino, kept.generation, 0, pattern(10, 12), false), code('ROFS'));
  assert.deepEqual((await fsck(dev.mem)).problems, []);
  const { fs: again } = await open(dev);
  await assert.rejects(again.lookup(ROOT, ROOT_GEN, 'lost'), code('NOENT'));
  const k = await again.lookup(ROOT, ROOT_GEN, 'kept');
  assert.ok(same((await again.read(k.ino, k.generation, 0, 30_000)).data, pattern(30_000, 10)));
  await again.create(ROOT, ROOT_GEN, 'later', { ...OWNER, exclusive: true });
  await again.close();
  assert.deepEqual((await fsck(dev.mem)).problems, []);
});

test('a large unstable write the device fails reports IO on the WRITE itself, and the file and free space stay as they were', async () => {
  const { dev, fs, dataFrom } = await volumeWithFreedBlocks();
  const a = await fs.create(ROOT, ROOT_GEN, 'a', { ...OWNER, exclusive: true });
  const statBefore = await fs.statfs();
  dev.failWrites(dataFrom, dev.size, { kind: 'EIO' });
  await assert.rejects(fs.write(a.ino, a.generation, 0, pattern(1 << 20, 5), false), code('IO'));
  dev.clearFaults();
  await fs.commit(a.ino, a.generation); // nothing was acknowledged: nothing to report
  const attr = await fs.getattr(a.ino, a.generation);
  assert.equal(attr.size, 0);
  assert.equal(attr.used, 0);
  assert.equal((await fs.statfs()).freeBytes, statBefore.freeBytes, 'the claimed blocks are free again');
  await fs.close();
  assert.deepEqual((await fsck(dev.snapshot())).problems, []);
});
