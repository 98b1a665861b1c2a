import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fsck } from '../../../src/functions/fileserver/fs/index.ts';
import { memFs, OWNER, pattern, reopen, ROOT, ROOT_GEN } from './helpers.ts';

/** A read's bytes and eof (its attributes are checked elsewhere). */
const dataEof = (r: { data: Uint8Array; eof: boolean }) => ({ data: r.data, eof: r.eof });

const code = (c: string) => ({ name: 'StorvisorError', code: `SV_ERR_FS_${c}` });
const GiB = 2 ** 30;

test('a sparse file reads zeroes in its holes and allocates only what was written', async () => {
  const { fs, dev } = await memFs();
  const f = await fs.create(ROOT, ROOT_GEN, 'sparse', { ...OWNER, exclusive: true });
  await fs.write(f.ino, f.generation, 10 << 20, pattern(4096, 1), true);
  const a = await fs.getattr(f.ino, f.generation);
  assert.equal(a.size, (10 << 20) + 4096);
  assert.ok(a.used <= 3 * 4096, `used ${a.used}: one data block plus indirect blocks`);
  const hole = await fs.read(f.ino, f.generation, 5 << 20, 65536);
  assert.ok(hole.data.every((b) => b === 0));
  assert.deepEqual((await fs.read(f.ino, f.generation, 10 << 20, 4096)).data, pattern(4096, 1));
  assert.deepEqual((await fsck(dev)).problems, []);
});

test('a file crossing direct, single, double and triple indirect blocks keeps every byte', async () => {
  const { fs, dev } = await memFs(64);
  const f = await fs.create(ROOT, ROOT_GEN, 'big', { ...OWNER, exclusive: true });
  const offsets = [0, 10 * 4096 + 100, 12 * 4096, 1035 * 4096 + 4000, 5 << 20, 4 * GiB + 12345, 5 * GiB];
  for (const [i, off] of offsets.entries()) await fs.write(f.ino, f.generation, off, pattern(5000, i + 1), i % 2 === 0);
  await fs.commit(f.ino, f.generation);
  const check = async (fsys: typeof fs) => {
    for (const [i, off] of offsets.entries()) {
      assert.deepEqual((await fsys.read(f.ino, f.generation, off, 5000)).data, pattern(5000, i + 1), `at ${off}`);
    }
  };
  await check(fs);
  assert.equal((await fs.getattr(f.ino, f.generation)).size, 5 * GiB + 5000);
  await fs.close();
  assert.deepEqual((await fsck(dev)).problems, []);
  const again = await reopen(dev);
  await check(again);
  // Truncating back to 6 MiB frees the triple-indirect tree and keeps the rest.
  await again.setattr(f.ino, f.generation, { size: 6 << 20 });
  assert.deepEqual((await again.read(f.ino, f.generation, 5 << 20, 5000)).data, pattern(5000, 5));
  assert.deepEqual(dataEof(await again.read(f.ino, f.generation, 6 << 20, 10)), { data: new Uint8Array(0), eof: true });
  await again.close();
  assert.deepEqual((await fsck(dev)).problems, []);
});

test('a file written sequentially in 1 MiB chunks reads back identically', async () => {
  const { fs } = await memFs(64);
  const f = await fs.create(ROOT, ROOT_GEN, 'seq', { ...OWNER, exclusive: true });
  const data = pattern(12 << 20, 99);
  for (let off = 0; off < data.byteLength; off += 1 << 20) {
    await fs.write(f.ino, f.generation, off, data.subarray(off, off + (1 << 20)), false);
  }
  await fs.commit();
  const back = await fs.read(f.ino, f.generation, 0, data.byteLength);
  assert.equal(back.eof, true);
  assert.ok(Buffer.from(back.data).equals(Buffer.from(data)));
});

test('a full volume answers NOSPC and leaves the file as it was', async () => {
  const { fs, dev } = await memFs(2);
  const f = await fs.create(ROOT, ROOT_GEN, 'fill', { ...OWNER, exclusive: true });
  const chunk = pattern(64 * 1024, 3);
  let off = 0;
  for (;;) {
    try {
      await fs.write(f.ino, f.generation, off, chunk, true);
      off += chunk.byteLength;
    } catch (e) {
      assert.equal((e as { code?: string }).code, 'SV_ERR_FS_NOSPC');
      break;
    }
    assert.ok(off < 4 << 20, 'a 2 MiB volume must fill up');
  }
  const a = await fs.getattr(f.ino, f.generation);
  assert.equal(a.size, off, 'the failed write changed nothing');
  await assert.rejects(fs.write(f.ino, f.generation, off, chunk, false), code('NOSPC'));
  assert.equal((await fs.getattr(f.ino, f.generation)).size, off);
  assert.deepEqual((await fsck(dev)).problems, []);
  // Freeing the file makes its space usable again (after the journal checkpoints the free).
  await fs.remove(ROOT, ROOT_GEN, 'fill');
  const g = await fs.create(ROOT, ROOT_GEN, 'again', { ...OWNER, exclusive: true });
  await fs.write(g.ino, g.generation, 0, pattern(off, 4), true);
  assert.deepEqual((await fs.read(g.ino, g.generation, 0, off)).data, pattern(off, 4));
  await fs.close();
  assert.deepEqual((await fsck(dev)).problems, []);
});

test('running out of inodes answers NOSPC', async () => {
  const { fs, dev } = await memFs(4, { mkfs: { inodes: 32 } });
  let made = 0;
  await assert.rejects(async () => {
    for (;;) {
      await fs.create(ROOT, ROOT_GEN, `i${made}`, { ...OWNER, exclusive: true });
      made++;
    }
  }, code('NOSPC'));
  assert.equal(made, 30, 'inodes 0 (reserved) and 1 (root) are taken');
  assert.equal((await fs.statfs()).freeFiles, 0);
  await assert.rejects(fs.lookup(ROOT, ROOT_GEN, `i${made}`), code('NOENT'));
  assert.deepEqual((await fsck(dev)).problems, []);
});
