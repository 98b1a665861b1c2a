import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fsck, type VolumeFileSystem } from '../../../src/functions/fileserver/fs/index.ts';
import { memFs, OWNER, pattern, reopen, ROOT, ROOT_GEN } from './helpers.ts';

const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

test('a truncate larger than one step keeps the head, frees the tail in steps and returns every block', async () => {
  const { fs, dev } = await memFs(64, { truncateStepBlocks: 8 });
  const free0 = (await fs.statfs()).freeBytes;
  const f = await fs.create(ROOT, ROOT_GEN, 'big', { ...OWNER, exclusive: true });
  const data = pattern(6 << 20, 1);
  await fs.write(f.ino, f.generation, 0, data, false);
  await fs.commit(f.ino, f.generation);
  const stats = () => (fs as VolumeFileSystem).stats();
  const commits = stats().commits;
  const a = await fs.setattr(f.ino, f.generation, { size: 100_000 });
  assert.equal(a.size, 100_000);
  assert.ok(stats().commits - commits >= 2, 'the truncate committed as it went');
  assert.ok(same((await fs.read(f.ino, f.generation, 0, 200_000)).data, data.subarray(0, 100_000)));
  assert.equal(a.used, 26 * 4096, 'the blocks past the new end are gone (25 data blocks and the indirect block left)');
  await fs.remove(ROOT, ROOT_GEN, 'big');
  await assert.rejects(fs.getattr(f.ino, f.generation), { code: 'SV_ERR_FS_STALE' });
  await fs.close();
  const r = await fsck(dev);
  assert.deepEqual(r.problems, []);
  assert.equal(r.stats.orphans, 0);
  const again = await reopen(dev);
  assert.equal((await again.statfs()).freeBytes, free0, 'every block came back');
  await again.close();
});

test('removing a file larger than one step, and renaming over one, free it whole', async () => {
  const { fs, dev } = await memFs(64, { truncateStepBlocks: 8 });
  const free0 = (await fs.statfs()).freeBytes;
  for (const name of ['a', 'b', 'c']) {
    const f = await fs.create(ROOT, ROOT_GEN, name, { ...OWNER, exclusive: true });
    await fs.write(f.ino, f.generation, 0, pattern(3 << 20, name.charCodeAt(0)), true);
  }
  await fs.remove(ROOT, ROOT_GEN, 'a');
  await fs.rename(ROOT, ROOT_GEN, 'b', ROOT, ROOT_GEN, 'c'); // c's old inode goes
  const c = await fs.lookup(ROOT, ROOT_GEN, 'c');
  assert.ok(same((await fs.read(c.ino, c.generation, 0, 3 << 20)).data, pattern(3 << 20, 'b'.charCodeAt(0))));
  await fs.remove(ROOT, ROOT_GEN, 'c');
  await fs.close();
  assert.deepEqual((await fsck(dev)).problems, []);
  const again = await reopen(dev);
  assert.equal((await again.statfs()).freeBytes, free0);
  await again.close();
});
