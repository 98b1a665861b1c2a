import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fsck } from '../../../src/functions/fileserver/fs/index.ts';
import { bytes, listAll, memFs, OWNER, reopen, ROOT, ROOT_GEN, text } from './helpers.ts';

const code = (c: string) => ({ name: 'StorvisorError', code: `SV_ERR_FS_${c}` });
/** A read's bytes and eof (its attributes are checked elsewhere). */
const dataEof = (r: { data: Uint8Array; eof: boolean }) => ({ data: r.data, eof: r.eof });

test('a fresh volume is formatted and its root is an empty directory', async () => {
  const { fs, dev } = await memFs();
  const root = await fs.getattr(ROOT, ROOT_GEN);
  assert.equal(root.type, 'dir');
  assert.equal(root.nlink, 2);
  assert.equal(fs.rootIno, ROOT);
  assert.equal(fs.blockSize, 4096);
  assert.deepEqual(await listAll(fs, ROOT, ROOT_GEN), []);
  assert.equal((await fsck(dev)).ok, true);
});

test('fsid and contents survive close and remount', async () => {
  const { fs, dev } = await memFs();
  const f = await fs.create(ROOT, ROOT_GEN, 'keep', { ...OWNER, exclusive: true });
  await fs.write(f.ino, f.generation, 0, bytes('persisted'), false);
  const fsid = fs.fsid;
  await fs.close();
  const again = await reopen(dev);
  assert.equal(again.fsid, fsid);
  const a = await again.lookup(ROOT, ROOT_GEN, 'keep');
  assert.equal(text((await again.read(a.ino, a.generation, 0, 100)).data), 'persisted');
});

test('create makes a file with the given owner and mode', async () => {
  const { fs } = await memFs();
  const a = await fs.create(ROOT, ROOT_GEN, 'f', { mode: 0o100640, uid: 7, gid: 8, exclusive: true });
  assert.equal(a.type, 'file');
  assert.equal(a.mode, 0o640);
  assert.equal(a.uid, 7);
  assert.equal(a.gid, 8);
  assert.equal(a.nlink, 1);
  assert.equal(a.size, 0);
  assert.deepEqual(await fs.lookup(ROOT, ROOT_GEN, 'f'), a);
});

test('exclusive create of an existing name fails with EXIST, unchecked create returns it', async () => {
  const { fs } = await memFs();
  const a = await fs.create(ROOT, ROOT_GEN, 'f', { ...OWNER, exclusive: true });
  await assert.rejects(fs.create(ROOT, ROOT_GEN, 'f', { ...OWNER, exclusive: true }), code('EXIST'));
  assert.equal((await fs.create(ROOT, ROOT_GEN, 'f', { ...OWNER, exclusive: false })).ino, a.ino);
  await fs.mkdir(ROOT, ROOT_GEN, 'd', OWNER);
  await assert.rejects(fs.create(ROOT, ROOT_GEN, 'd', { ...OWNER, exclusive: false }), code('ISDIR'));
});

test('bad names are INVAL and names over 255 bytes are NAMETOOLONG', async () => {
  const { fs } = await memFs();
  const o = { ...OWNER, exclusive: true };
  for (const bad of ['', '.', '..', 'a/b', 'nul\0', '\uD800']) {
    await assert.rejects(fs.create(ROOT, ROOT_GEN, bad, o), code('INVAL'), JSON.stringify(bad));
  }
  await assert.rejects(fs.create(ROOT, ROOT_GEN, 'x'.repeat(256), o), code('NAMETOOLONG'));
  // 255 bytes of UTF-8 is fine even when it is fewer characters.
  const name = 'é'.repeat(127) + 'x';
  assert.equal((await fs.create(ROOT, ROOT_GEN, name, o)).type, 'file');
  await assert.rejects(fs.create(ROOT, ROOT_GEN, 'é'.repeat(128), o), code('NAMETOOLONG'));
  assert.deepEqual((await listAll(fs, ROOT, ROOT_GEN)).map((e) => e.name), [name]);
});

test('lookup resolves . and .. and reports NOENT for a missing name', async () => {
  const { fs } = await memFs();
  const d = await fs.mkdir(ROOT, ROOT_GEN, 'd', OWNER);
  assert.equal((await fs.lookup(d.ino, d.generation, '.')).ino, d.ino);
  assert.equal((await fs.lookup(d.ino, d.generation, '..')).ino, ROOT);
  assert.equal((await fs.lookup(ROOT, ROOT_GEN, '..')).ino, ROOT);
  await assert.rejects(fs.lookup(ROOT, ROOT_GEN, 'nope'), code('NOENT'));
});

test('operations on a file where a directory is needed fail with NOTDIR', async () => {
  const { fs } = await memFs();
  const f = await fs.create(ROOT, ROOT_GEN, 'f', { ...OWNER, exclusive: true });
  await assert.rejects(fs.lookup(f.ino, f.generation, 'x'), code('NOTDIR'));
  await assert.rejects(fs.readdir(f.ino, f.generation, 0, 10), code('NOTDIR'));
  await assert.rejects(fs.mkdir(f.ino, f.generation, 'x', OWNER), code('NOTDIR'));
});

test('a freed inode number is STALE for its old generation, and out-of-range numbers are BADHANDLE', async () => {
  const { fs } = await memFs();
  const f = await fs.create(ROOT, ROOT_GEN, 'f', { ...OWNER, exclusive: true });
  await fs.remove(ROOT, ROOT_GEN, 'f');
  await assert.rejects(fs.getattr(f.ino, f.generation), code('STALE'));
  const g = await fs.create(ROOT, ROOT_GEN, 'g', { ...OWNER, exclusive: true });
  assert.equal(g.ino, f.ino, 'inode number is reused');
  assert.notEqual(g.generation, f.generation);
  await assert.rejects(fs.read(f.ino, f.generation, 0, 1), code('STALE'));
  await assert.rejects(fs.getattr(0, 1), code('BADHANDLE'));
  await assert.rejects(fs.getattr(1 << 30, 1), code('BADHANDLE'));
  await assert.rejects(fs.getattr(1.5, 1), code('BADHANDLE'));
});

test('write then read returns the bytes, and reads past the end are short with eof', async () => {
  const { fs } = await memFs();
  const f = await fs.create(ROOT, ROOT_GEN, 'f', { ...OWNER, exclusive: true });
  const a = await fs.write(f.ino, f.generation, 0, bytes('hello world'), true);
  assert.equal(a.size, 11);
  assert.deepEqual(dataEof(await fs.read(f.ino, f.generation, 6, 100)), { data: bytes('world'), eof: true });
  assert.deepEqual(dataEof(await fs.read(f.ino, f.generation, 0, 5)), { data: bytes('hello'), eof: false });
  assert.deepEqual(dataEof(await fs.read(f.ino, f.generation, 50, 5)), { data: new Uint8Array(0), eof: true });
});

test('unstable writes are visible at once and durable after commit', async () => {
  const { fs, dev } = await memFs();
  const f = await fs.create(ROOT, ROOT_GEN, 'f', { ...OWNER, exclusive: true });
  await fs.write(f.ino, f.generation, 4090, bytes('across-a-block'), false);
  assert.equal((await fs.getattr(f.ino, f.generation)).size, 4104);
  assert.equal(text((await fs.read(f.ino, f.generation, 4090, 14)).data), 'across-a-block');
  await fs.commit(f.ino, f.generation);
  // Mount a second instance on the same bytes without closing the first: only durable state is there.
  const copy = await reopen(cloneDevice(dev));
  assert.equal(text((await copy.read(f.ino, f.generation, 4090, 14)).data), 'across-a-block');
});

test('data and metadata ops misuse: ISDIR for directories, INVAL for symlinks and bad arguments', async () => {
  const { fs } = await memFs();
  const d = await fs.mkdir(ROOT, ROOT_GEN, 'd', OWNER);
  const l = await fs.symlink(ROOT, ROOT_GEN, 'l', 'target', OWNER);
  await assert.rejects(fs.read(d.ino, d.generation, 0, 1), code('ISDIR'));
  await assert.rejects(fs.write(d.ino, d.generation, 0, bytes('x'), true), code('ISDIR'));
  await assert.rejects(fs.read(l.ino, l.generation, 0, 1), code('INVAL'));
  await assert.rejects(fs.readlink(d.ino, d.generation), code('INVAL'));
  const f = await fs.create(ROOT, ROOT_GEN, 'f', { ...OWNER, exclusive: true });
  await assert.rejects(fs.read(f.ino, f.generation, -1, 1), code('INVAL'));
  await assert.rejects(fs.write(f.ino, f.generation, 2 ** 50, bytes('x'), true), code('FBIG'));
  await assert.rejects(fs.readdir(ROOT, ROOT_GEN, -5, 10), code('INVAL'));
  await assert.rejects(fs.setattr(f.ino, f.generation, { size: -1 }), code('INVAL'));
  await assert.rejects(fs.setattr(d.ino, d.generation, { size: 0 }), code('ISDIR'));
});

test('setattr changes mode, owner and times, and truncates and extends with zeroes', async () => {
  const { fs } = await memFs();
  const f = await fs.create(ROOT, ROOT_GEN, 'f', { ...OWNER, exclusive: true });
  await fs.write(f.ino, f.generation, 0, new Uint8Array(10000).fill(7), true);
  let a = await fs.setattr(f.ino, f.generation, { mode: 0o600, uid: 5, gid: 6, atimeMs: 1000, mtimeMs: 2000 });
  assert.deepEqual([a.mode, a.uid, a.gid, a.atimeMs, a.mtimeMs], [0o600, 5, 6, 1000, 2000]);
  a = await fs.setattr(f.ino, f.generation, { size: 5000 });
  assert.equal(a.size, 5000);
  assert.equal(a.used, 2 * 4096);
  a = await fs.setattr(f.ino, f.generation, { size: 9000 });
  const { data } = await fs.read(f.ino, f.generation, 0, 9000);
  assert.ok(data.subarray(0, 5000).every((b) => b === 7));
  assert.ok(data.subarray(5000).every((b) => b === 0), 'bytes past the old end read as zeroes');
});

test('old bytes past a truncated end read as zeroes after a write extends the file', async () => {
  const { fs } = await memFs();
  for (const stable of [true, false]) {
    const f = await fs.create(ROOT, ROOT_GEN, `t${stable}`, { ...OWNER, exclusive: true });
    await fs.write(f.ino, f.generation, 0, new Uint8Array(10000).fill(7), true);
    await fs.setattr(f.ino, f.generation, { size: 5000 });
    await fs.write(f.ino, f.generation, 20000, bytes('!'), stable);
    const { data } = await fs.read(f.ino, f.generation, 0, 20001);
    assert.ok(data.subarray(0, 5000).every((b) => b === 7));
    assert.ok(data.subarray(5000, 20000).every((b) => b === 0), `stable=${stable}: the gap reads as zeroes`);
    assert.equal(text(data.subarray(20000)), '!');
  }
});

test('mkdir sets link counts, rmdir needs an empty directory', async () => {
  const { fs, dev } = await memFs();
  const d = await fs.mkdir(ROOT, ROOT_GEN, 'd', OWNER);
  assert.equal(d.type, 'dir');
  assert.equal(d.nlink, 2);
  assert.equal((await fs.getattr(ROOT, ROOT_GEN)).nlink, 3);
  await fs.create(d.ino, d.generation, 'inside', { ...OWNER, exclusive: true });
  await assert.rejects(fs.rmdir(ROOT, ROOT_GEN, 'd'), code('NOTEMPTY'));
  await assert.rejects(fs.remove(ROOT, ROOT_GEN, 'd'), code('ISDIR'));
  await fs.remove(d.ino, d.generation, 'inside');
  await fs.rmdir(ROOT, ROOT_GEN, 'd');
  assert.equal((await fs.getattr(ROOT, ROOT_GEN)).nlink, 2);
  await assert.rejects(fs.rmdir(ROOT, ROOT_GEN, 'd'), code('NOENT'));
  await fs.create(ROOT, ROOT_GEN, 'f', { ...OWNER, exclusive: true });
  await assert.rejects(fs.rmdir(ROOT, ROOT_GEN, 'f'), code('NOTDIR'));
  assert.deepEqual((await fsck(dev)).problems, []);
});

test('symlink stores its target and readlink returns it', async () => {
  const { fs } = await memFs();
  const l = await fs.symlink(ROOT, ROOT_GEN, 'link', '../some/where', OWNER);
  assert.equal(l.type, 'symlink');
  assert.equal(l.size, 13);
  assert.equal(await fs.readlink(l.ino, l.generation), '../some/where');
  await assert.rejects(fs.symlink(ROOT, ROOT_GEN, 'long', 'x'.repeat(1025), OWNER), code('NAMETOOLONG'));
  await assert.rejects(fs.symlink(ROOT, ROOT_GEN, 'empty', '', OWNER), code('INVAL'));
  await assert.rejects(fs.symlink(ROOT, ROOT_GEN, 'link', 'x', OWNER), code('EXIST'));
});

test('link adds a name and remove frees the inode only with the last name', async () => {
  const { fs, dev } = await memFs();
  const f = await fs.create(ROOT, ROOT_GEN, 'a', { ...OWNER, exclusive: true });
  await fs.write(f.ino, f.generation, 0, bytes('shared'), true);
  const d = await fs.mkdir(ROOT, ROOT_GEN, 'd', OWNER);
  assert.equal((await fs.link(f.ino, f.generation, d.ino, d.generation, 'b')).nlink, 2);
  await assert.rejects(fs.link(f.ino, f.generation, d.ino, d.generation, 'b'), code('EXIST'));
  await assert.rejects(fs.link(d.ino, d.generation, ROOT, ROOT_GEN, 'dirlink'), code('ISDIR'));
  await fs.remove(ROOT, ROOT_GEN, 'a');
  const b = await fs.lookup(d.ino, d.generation, 'b');
  assert.equal(b.nlink, 1);
  assert.equal(text((await fs.read(b.ino, b.generation, 0, 10)).data), 'shared');
  await fs.remove(d.ino, d.generation, 'b');
  await assert.rejects(fs.getattr(f.ino, f.generation), code('STALE'));
  await assert.rejects(fs.remove(ROOT, ROOT_GEN, 'a'), code('NOENT'));
  assert.deepEqual((await fsck(dev)).problems, []);
});

test('rename moves files and directories, replaces targets, and refuses loops', async () => {
  const { fs, dev } = await memFs();
  const o = { ...OWNER, exclusive: true };
  const a = await fs.mkdir(ROOT, ROOT_GEN, 'a', OWNER);
  const b = await fs.mkdir(ROOT, ROOT_GEN, 'b', OWNER);
  const f = await fs.create(a.ino, a.generation, 'f', o);
  await fs.rename(a.ino, a.generation, 'f', b.ino, b.generation, 'g');
  assert.equal((await fs.lookup(b.ino, b.generation, 'g')).ino, f.ino);
  await assert.rejects(fs.lookup(a.ino, a.generation, 'f'), code('NOENT'));
  // Replace an existing file: the old one is freed.
  const victim = await fs.create(b.ino, b.generation, 'victim', o);
  await fs.rename(b.ino, b.generation, 'g', b.ino, b.generation, 'victim');
  await assert.rejects(fs.getattr(victim.ino, victim.generation), code('STALE'));
  // Move a directory and fix both parents' link counts and its '..'.
  await fs.rename(ROOT, ROOT_GEN, 'a', b.ino, b.generation, 'a2');
  assert.equal((await fs.lookup(a.ino, a.generation, '..')).ino, b.ino);
  assert.equal((await fs.getattr(b.ino, b.generation)).nlink, 3);
  assert.equal((await fs.getattr(ROOT, ROOT_GEN)).nlink, 3);
  await assert.rejects(fs.rename(ROOT, ROOT_GEN, 'b', a.ino, a.generation, 'loop'), code('INVAL'));
  await assert.rejects(fs.rename(ROOT, ROOT_GEN, 'missing', ROOT, ROOT_GEN, 'x'), code('NOENT'));
  await fs.create(ROOT, ROOT_GEN, 'file', o);
  await assert.rejects(fs.rename(ROOT, ROOT_GEN, 'file', b.ino, b.generation, 'a2'), code('ISDIR'));
  await assert.rejects(fs.rename(b.ino, b.generation, 'a2', ROOT, ROOT_GEN, 'file'), code('NOTDIR'));
  await fs.create(a.ino, a.generation, 'x', o);
  const empty = await fs.mkdir(ROOT, ROOT_GEN, 'empty', OWNER);
  await assert.rejects(fs.rename(ROOT, ROOT_GEN, 'empty', b.ino, b.generation, 'a2'), code('NOTEMPTY'));
  await fs.rename(ROOT, ROOT_GEN, 'file', ROOT, ROOT_GEN, 'file'); // same name: nothing happens
  assert.equal((await fs.getattr(empty.ino, empty.generation)).type, 'dir');
  assert.deepEqual((await fsck(dev)).problems, []);
});

test('readdir pages through entries with stable cookies while others are added', async () => {
  const { fs } = await memFs();
  const o = { ...OWNER, exclusive: true };
  for (let i = 0; i < 300; i++) await fs.create(ROOT, ROOT_GEN, `n${i}`, o);
  const first = await fs.readdir(ROOT, ROOT_GEN, 0, 100);
  assert.equal(first.entries.length, 100);
  assert.equal(first.eof, false);
  assert.ok(first.entries.every((e) => e.cookie > 0));
  for (let i = 300; i < 400; i++) await fs.create(ROOT, ROOT_GEN, `n${i}`, o);
  const seen = new Set(first.entries.map((e) => e.name));
  let cookie = first.entries.at(-1)!.cookie;
  for (;;) {
    const r = await fs.readdir(ROOT, ROOT_GEN, cookie, 77);
    for (const e of r.entries) {
      assert.ok(!seen.has(e.name), `${e.name} listed twice`);
      seen.add(e.name);
    }
    if (r.eof) break;
    cookie = r.entries.at(-1)!.cookie;
  }
  for (let i = 0; i < 300; i++) assert.ok(seen.has(`n${i}`), `n${i} missing`);
  await assert.rejects(fs.readdir(ROOT, ROOT_GEN, 0, 0), code('INVAL'));
});

test('statfs counts blocks and inodes as they are used and freed', async () => {
  const { fs } = await memFs();
  const before = await fs.statfs();
  assert.equal(before.totalBytes, 32 << 20);
  const f = await fs.create(ROOT, ROOT_GEN, 'f', { ...OWNER, exclusive: true });
  await fs.write(f.ino, f.generation, 0, new Uint8Array(40960), true);
  const during = await fs.statfs();
  assert.equal(during.freeFiles, before.freeFiles - 1);
  assert.ok(during.freeBytes <= before.freeBytes - 40960);
  await fs.remove(ROOT, ROOT_GEN, 'f');
  const after = await fs.statfs();
  assert.equal(after.freeFiles, before.freeFiles);
  assert.equal(after.freeBytes, before.freeBytes);
});

test('concurrent operations on different files and the same directory all complete consistently', async () => {
  const { fs, dev } = await memFs();
  const o = { ...OWNER, exclusive: true };
  const files = await Promise.all(Array.from({ length: 50 }, (_, i) => fs.create(ROOT, ROOT_GEN, `c${i}`, o)));
  await Promise.all(files.map((f, i) => fs.write(f.ino, f.generation, i * 100, bytes(`data-${i}`), i % 2 === 0)));
  await Promise.all([
    ...files.slice(0, 10).map((_, i) => fs.remove(ROOT, ROOT_GEN, `c${i}`)),
    ...files.slice(10, 20).map((_, i) => fs.rename(ROOT, ROOT_GEN, `c${i + 10}`, ROOT, ROOT_GEN, `r${i}`)),
    fs.commit(),
  ]);
  assert.equal((await listAll(fs, ROOT, ROOT_GEN)).length, 40);
  const r = await fs.lookup(ROOT, ROOT_GEN, 'r3');
  assert.equal(text((await fs.read(r.ino, r.generation, 1300, 7)).data), 'data-13');
  const free = (await fs.statfs()).freeBytes;
  await fs.close();
  const report = await fsck(dev);
  assert.deepEqual(report.problems, []);
  assert.equal(report.stats.freeBlocks * 4096, free, 'no reservation leaked or double-returned');
});

test('operations after close fail with IO', async () => {
  const { fs } = await memFs();
  await fs.close();
  await assert.rejects(fs.getattr(ROOT, ROOT_GEN), { name: 'StorvisorError', code: 'SV_ERR_FS_IO', message: 'filesystem is closed' });
});

import { MemoryBlockDevice } from '../../../src/block/memory-device.ts';
function cloneDevice(dev: MemoryBlockDevice): MemoryBlockDevice {
  const c = new MemoryBlockDevice(dev.size);
  c.bytes.set(dev.bytes);
  return c;
}
