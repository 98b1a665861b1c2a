import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { NfsClient } from './helpers/nfs-client.ts';
import { startMemoryServer } from './helpers/server.ts';

// nfsstat3 values (RFC 1813 §2.6)
const OK = 0, NOENT = 2, EXIST = 17, NOTDIR = 20, ISDIR = 21, INVAL = 22, NOSPC = 28;
const NAMETOOLONG = 63, NOTEMPTY = 66, NOT_SYNC = 10002, BAD_COOKIE = 10003, NOTSUPP = 10004, TOOSMALL = 10005;

async function setup(t: TestContext, opts: Parameters<typeof startMemoryServer>[0] = {}) {
  const s = await startMemoryServer(opts);
  const c = await NfsClient.connect(s.port);
  t.after(async () => {
    await c.close();
    await s.server.stop();
  });
  return { ...s, c, root: await c.root() };
}

async function newFile(c: NfsClient, dir: Buffer, name: string, content?: Buffer) {
  const r = await c.create(dir, name, 1, { mode: 0o644 });
  assert.equal(r.status, OK);
  if (content) assert.equal((await c.write(r.fh!, 0, content)).status, OK);
  return r.fh!;
}

test('GETATTR of the root describes a directory with the export fsid', async (t) => {
  const { c, root, fs } = await setup(t);
  const r = await c.getattr(root);
  assert.equal(r.status, OK);
  assert.equal(r.attr!.type, 2);
  assert.equal(r.attr!.fsid, fs.fsid);
  assert.equal(r.attr!.fileid, BigInt(fs.rootIno));
});

test('SETATTR changes mode, owner and size, and reports wcc before and after', async (t) => {
  const { c, root } = await setup(t);
  const fh = await newFile(c, root, 'f', Buffer.alloc(100, 1));
  const r = await c.setattr(fh, { mode: 0o600, uid: 7, gid: 8, size: 10 });
  assert.equal(r.status, OK);
  assert.equal(r.wcc.before!.size, 100n);
  assert.deepEqual([r.wcc.after!.mode, r.wcc.after!.uid, r.wcc.after!.gid, r.wcc.after!.size], [0o600, 7, 8, 10n]);
});

test('SETATTR with a guard that does not match the ctime is NOT_SYNC and changes nothing', async (t) => {
  const { c, root } = await setup(t);
  const fh = await newFile(c, root, 'f');
  const { attr } = await c.getattr(fh);
  const stale = await c.setattr(fh, { mode: 0o600 }, [attr!.ctime[0] + 100, 0]);
  assert.equal(stale.status, NOT_SYNC);
  assert.equal((await c.getattr(fh)).attr!.mode, 0o644);
  const good = await c.setattr(fh, { mode: 0o600 }, attr!.ctime);
  assert.equal(good.status, OK);
  assert.equal(good.wcc.after!.mode, 0o600);
});

test('SETATTR sets client times and server time', async (t) => {
  const { c, root } = await setup(t);
  const fh = await newFile(c, root, 'f');
  const r = await c.setattr(fh, { atime: [1000, 5_000_000], mtime: [2000, 0] });
  assert.deepEqual([r.wcc.after!.atime, r.wcc.after!.mtime], [[1000, 5_000_000], [2000, 0]]);
  const s = await c.setattr(fh, { mtime: 'server' });
  assert.ok(s.wcc.after!.mtime[0] > 2000);
});

test('LOOKUP finds a file, returns its handle and attributes, and NOENT for a missing name', async (t) => {
  const { c, root } = await setup(t);
  const fh = await newFile(c, root, 'here');
  const r = await c.lookup(root, 'here');
  assert.equal(r.status, OK);
  assert.deepEqual(r.fh, fh);
  assert.equal(r.attr!.type, 1);
  assert.ok(r.dirAttr);
  const missing = await c.lookup(root, 'nothere');
  assert.equal(missing.status, NOENT);
  assert.ok(missing.dirAttr, 'dir attributes on failure too');
});

test('LOOKUP in a file is NOTDIR and over-long names are NAMETOOLONG', async (t) => {
  const { c, root } = await setup(t);
  const fh = await newFile(c, root, 'f');
  assert.equal((await c.lookup(fh, 'x')).status, NOTDIR);
  assert.equal((await c.lookup(root, 'x'.repeat(256))).status, NAMETOOLONG);
});

test('ACCESS grants by mode bits and identity', async (t) => {
  const { c, root } = await setup(t);
  const fh = await newFile(c, root, 'f');
  await c.setattr(fh, { mode: 0o640, uid: 10, gid: 20 });
  const all = 0x3f;
  c.cred = { flavor: 1, uid: 10, gid: 99 };
  assert.equal((await c.access(fh, all)).access, 0x01 | 0x04 | 0x08);
  c.cred = { flavor: 1, uid: 11, gid: 99, gids: [20] };
  assert.equal((await c.access(fh, all)).access, 0x01);
  c.cred = { flavor: 1, uid: 11, gid: 99 };
  assert.equal((await c.access(fh, all)).access, 0);
  c.cred = { flavor: 1, uid: 0, gid: 0 };
  assert.equal((await c.access(fh, all)).access, 0x01 | 0x04 | 0x08, 'root may not execute a file nobody may execute');
  assert.equal((await c.access(root, 0x02)).access, 0x02);
});

test('SYMLINK then READLINK returns the target; READLINK of a file is INVAL', async (t) => {
  const { c, root } = await setup(t);
  const s = await c.symlink(root, 'ln', '../some/where');
  assert.equal(s.status, OK);
  assert.equal(s.attr!.type, 5);
  const r = await c.readlink(s.fh!);
  assert.deepEqual([r.status, r.target], [OK, '../some/where']);
  const fh = await newFile(c, root, 'f');
  assert.equal((await c.readlink(fh)).status, INVAL);
});

test('WRITE then READ returns the data with eof at the end of the file', async (t) => {
  const { c, root } = await setup(t);
  const data = Buffer.from('hello, nfs world');
  const fh = await newFile(c, root, 'f', data);
  const all = await c.read(fh, 0, 100);
  assert.deepEqual([all.status, all.count, all.eof, all.data], [OK, data.length, true, data]);
  const part = await c.read(fh, 7, 3);
  assert.deepEqual([part.data, part.eof], [Buffer.from('nfs'), false]);
  const past = await c.read(fh, 1000, 10);
  assert.deepEqual([past.status, past.count, past.eof], [OK, 0, true]);
});

test('WRITE at an offset past the end makes a sparse file that reads back zeroes', async (t) => {
  const { c, root } = await setup(t);
  const fh = await newFile(c, root, 'f');
  await c.write(fh, 8192, Buffer.from('x'));
  const r = await c.read(fh, 0, 8193);
  assert.equal(r.attr!.size, 8193n);
  assert.deepEqual(r.data, Buffer.concat([Buffer.alloc(8192), Buffer.from('x')]));
});

test('WRITE reports the committed level and a verifier that COMMIT repeats', async (t) => {
  const { c, root, fs } = await setup(t);
  const fh = await newFile(c, root, 'f');
  const unstable = await c.write(fh, 0, Buffer.alloc(10), 0);
  const dataSync = await c.write(fh, 0, Buffer.alloc(10), 1);
  const fileSync = await c.write(fh, 0, Buffer.alloc(10), 2);
  assert.deepEqual([unstable.committed, dataSync.committed, fileSync.committed], [0, 1, 2]);
  assert.equal(unstable.wcc.before!.size, 0n);
  assert.equal(unstable.wcc.after!.size, 10n);
  const commit = await c.commit(fh);
  assert.equal(commit.status, OK);
  assert.deepEqual(commit.verf, unstable.verf);
  assert.deepEqual(fs.counters, { stableWrites: 2, unstableWrites: 1, commits: 1 });
});

test('the write verifier changes when the server restarts', async (t) => {
  const a = await setup(t);
  const b = await setup(t);
  const fa = await newFile(a.c, a.root, 'f');
  const fb = await newFile(b.c, b.root, 'f');
  const va = (await a.c.write(fa, 0, Buffer.alloc(1), 0)).verf!;
  const vb = (await b.c.write(fb, 0, Buffer.alloc(1), 0)).verf!;
  assert.notDeepEqual(va, vb);
});

test('READ and WRITE of a directory are ISDIR', async (t) => {
  const { c, root } = await setup(t);
  assert.equal((await c.read(root, 0, 10)).status, ISDIR);
  assert.equal((await c.write(root, 0, Buffer.alloc(1))).status, ISDIR);
});

test('a READ larger than rtmax is clamped to rtmax', async (t) => {
  const { c, root } = await setup(t, { ioMax: 4096 });
  const fh = await newFile(c, root, 'f', Buffer.alloc(4096, 7));
  await c.write(fh, 4096, Buffer.alloc(4096, 7));
  const r = await c.read(fh, 0, 1 << 20);
  assert.deepEqual([r.status, r.count, r.eof], [OK, 4096, false]);
  assert.equal(r.attr!.size, 8192n);
});

test('a WRITE larger than wtmax is INVAL and writes nothing', async (t) => {
  const { c, root } = await setup(t, { ioMax: 4096 });
  const fh = await newFile(c, root, 'f');
  const r = await c.write(fh, 0, Buffer.alloc(4097, 1));
  assert.equal(r.status, INVAL);
  assert.equal((await c.getattr(fh)).attr!.size, 0n);
});

test('a WRITE whose count exceeds the data sent is INVAL', async (t) => {
  const { c, root } = await setup(t);
  const fh = await newFile(c, root, 'f');
  const r = await c.write(fh, 0, Buffer.alloc(10), 2, 20);
  assert.equal(r.status, INVAL);
});

test('a WRITE that does not fit on the filesystem is NOSPC and the file keeps its size', async (t) => {
  const { c, root } = await setup(t, { totalBytes: 64 * 1024 });
  await newFile(c, root, 'big', Buffer.alloc(40 * 1024));
  const fh = await newFile(c, root, 'f', Buffer.alloc(4096));
  const r = await c.write(fh, 0, Buffer.alloc(40 * 1024));
  assert.equal(r.status, NOSPC);
  assert.equal((await c.getattr(fh)).attr!.size, 4096n);
});

test('CREATE UNCHECKED on an existing file truncates it when size 0 is asked', async (t) => {
  const { c, root } = await setup(t);
  const fh = await newFile(c, root, 'f', Buffer.alloc(50));
  const r = await c.create(root, 'f', 0, { size: 0 });
  assert.equal(r.status, OK);
  assert.deepEqual(r.fh, fh);
  assert.equal(r.attr!.size, 0n);
  assert.ok(r.dirWcc.before && r.dirWcc.after);
});

test('CREATE GUARDED on an existing name is EXIST', async (t) => {
  const { c, root } = await setup(t);
  await newFile(c, root, 'f');
  const r = await c.create(root, 'f', 1, {});
  assert.equal(r.status, EXIST);
  assert.ok(r.dirWcc.after, 'wcc_data on failure');
});

test('CREATE EXCLUSIVE retransmitted with the same verifier succeeds with the same file; another verifier is EXIST', async (t) => {
  const { c, root } = await setup(t);
  const verf = Buffer.from('12345678');
  const first = await c.create(root, 'x', 2, verf);
  assert.equal(first.status, OK);
  const again = await c.create(root, 'x', 2, verf);
  assert.equal(again.status, OK);
  assert.deepEqual(again.fh, first.fh);
  const other = await c.create(root, 'x', 2, Buffer.from('87654321'));
  assert.equal(other.status, EXIST);
});

test('MKDIR makes a directory and MKDIR of an existing name is EXIST', async (t) => {
  const { c, root } = await setup(t);
  const r = await c.mkdir(root, 'd', { mode: 0o700 });
  assert.deepEqual([r.status, r.attr!.type, r.attr!.mode], [OK, 2, 0o700]);
  assert.equal((await c.mkdir(root, 'd')).status, EXIST);
});

test('MKNOD is NOTSUPP', async (t) => {
  const { c, root } = await setup(t);
  const r = await c.mknod(root, 'fifo', 7);
  assert.equal(r.status, NOTSUPP);
  assert.ok(r.dirWcc.after);
  assert.equal((await c.lookup(root, 'fifo')).status, NOENT);
});

test('REMOVE deletes a file, NOENT when missing, ISDIR for a directory', async (t) => {
  const { c, root } = await setup(t);
  await newFile(c, root, 'f');
  await c.mkdir(root, 'd');
  const r = await c.remove(root, 'f');
  assert.equal(r.status, OK);
  assert.ok(r.wcc.before && r.wcc.after);
  assert.equal((await c.remove(root, 'f')).status, NOENT);
  assert.equal((await c.remove(root, 'd')).status, ISDIR);
});

test('RMDIR removes an empty directory, NOTEMPTY otherwise, NOTDIR for a file', async (t) => {
  const { c, root } = await setup(t);
  const d = (await c.mkdir(root, 'd')).fh!;
  await newFile(c, d, 'inner');
  await newFile(c, root, 'f');
  assert.equal((await c.rmdir(root, 'd')).status, NOTEMPTY);
  assert.equal((await c.rmdir(root, 'f')).status, NOTDIR);
  await c.remove(d, 'inner');
  assert.equal((await c.rmdir(root, 'd')).status, OK);
});

test('RENAME moves an entry between directories and reports both wcc_data', async (t) => {
  const { c, root } = await setup(t);
  const d = (await c.mkdir(root, 'd')).fh!;
  const fh = await newFile(c, root, 'a', Buffer.from('abc'));
  const r = await c.rename(root, 'a', d, 'b');
  assert.equal(r.status, OK);
  assert.ok(r.fromWcc.before && r.fromWcc.after && r.toWcc.before && r.toWcc.after);
  assert.equal((await c.lookup(root, 'a')).status, NOENT);
  assert.deepEqual((await c.lookup(d, 'b')).fh, fh);
  assert.equal((await c.rename(root, 'a', d, 'c')).status, NOENT);
});

test('RENAME of a directory into its own subdirectory is INVAL', async (t) => {
  const { c, root } = await setup(t);
  const d = (await c.mkdir(root, 'd')).fh!;
  const sub = (await c.mkdir(d, 'sub')).fh!;
  assert.equal((await c.rename(root, 'd', sub, 'x')).status, INVAL);
});

test('LINK adds a second name and raises nlink; linking a directory is ISDIR', async (t) => {
  const { c, root } = await setup(t);
  const fh = await newFile(c, root, 'a');
  const r = await c.link(fh, root, 'b');
  assert.equal(r.status, OK);
  assert.equal(r.attr!.nlink, 2);
  assert.deepEqual((await c.lookup(root, 'b')).fh, fh);
  const d = (await c.mkdir(root, 'd')).fh!;
  assert.equal((await c.link(d, root, 'd2')).status, ISDIR);
  assert.equal((await c.link(fh, root, 'a')).status, EXIST);
});

test('READDIR pages through a directory with cookies until eof, every name once', async (t) => {
  const { c, root } = await setup(t);
  const names = Array.from({ length: 300 }, (_, i) => `file-${i}`);
  for (const n of names) await newFile(c, root, n);
  const seen: string[] = [];
  let cookie = 0n;
  let verf = Buffer.alloc(8);
  let pages = 0;
  for (;;) {
    const r = await c.readdir(root, cookie, verf, 1024);
    assert.equal(r.status, OK);
    seen.push(...r.entries.map((e) => e.name));
    pages++;
    if (r.eof) break;
    cookie = r.entries.at(-1)!.cookie;
    verf = r.cookieverf!;
  }
  assert.deepEqual(seen, names);
  assert.ok(pages > 5, `count=1024 must split 300 entries into pages (got ${pages})`);
});

test('READDIR with a count too small for one entry is TOOSMALL', async (t) => {
  const { c, root } = await setup(t);
  await newFile(c, root, 'f');
  assert.equal((await c.readdir(root, 0n, Buffer.alloc(8), 100)).status, TOOSMALL);
});

test('READDIR with a foreign cookie verifier is BAD_COOKIE', async (t) => {
  const { c, root } = await setup(t);
  await newFile(c, root, 'f');
  assert.equal((await c.readdir(root, 1n, Buffer.from('deadbeef'))).status, BAD_COOKIE);
});

test('READDIR of a file is NOTDIR', async (t) => {
  const { c, root } = await setup(t);
  const fh = await newFile(c, root, 'f');
  assert.equal((await c.readdir(fh)).status, NOTDIR);
});

test('READDIRPLUS returns handles and attributes and honours maxcount', async (t) => {
  const { c, root } = await setup(t);
  for (let i = 0; i < 50; i++) await newFile(c, root, `f${i}`, Buffer.alloc(i));
  const r = await c.readdirplus(root, 0n, Buffer.alloc(8), 8192, 2048);
  assert.equal(r.status, OK);
  assert.ok(r.entries.length > 0 && r.entries.length < 50 && !r.eof, `got ${r.entries.length}`);
  for (const e of r.entries) {
    assert.equal(e.attr!.size, BigInt(Number(e.name.slice(1))));
    assert.deepEqual((await c.lookup(root, e.name)).fh, e.fh);
  }
  const small = await c.readdirplus(root, 0n, Buffer.alloc(8), 8192, 200);
  assert.equal(small.status, TOOSMALL);
});

test('READDIRPLUS honours dircount separately from maxcount', async (t) => {
  const { c, root } = await setup(t);
  for (let i = 0; i < 50; i++) await newFile(c, root, `f${i}`);
  const r = await c.readdirplus(root, 0n, Buffer.alloc(8), 240, 1 << 20);
  assert.equal(r.status, OK);
  assert.ok(r.entries.length >= 1 && r.entries.length <= 10, `got ${r.entries.length}`);
});

test('FSSTAT reports sizes and free space from the filesystem', async (t) => {
  const { c, root } = await setup(t, { totalBytes: 1 << 20 });
  await newFile(c, root, 'f', Buffer.alloc(8192));
  const r = await c.fsstat(root);
  assert.equal(r.status, OK);
  assert.equal(r.tbytes, 1048576n);
  assert.equal(r.fbytes, 1048576n - 8192n);
});

test('FSINFO advertises rtmax/wtmax equal to the I/O limit and link/symlink support', async (t) => {
  const { c, root } = await setup(t);
  const r = await c.fsinfo(root);
  assert.deepEqual([r.status, r.rtmax, r.wtmax, r.rtmult], [OK, 1 << 20, 1 << 20, 4096]);
  assert.equal(r.properties! & 0x1b, 0x1b);
});

test('PATHCONF reports name_max 255 and case preservation', async (t) => {
  const { c, root } = await setup(t);
  const r = await c.pathconf(root);
  assert.deepEqual([r.status, r.nameMax, r.noTrunc, r.caseInsensitive, r.casePreserving], [OK, 255, true, false, true]);
});
