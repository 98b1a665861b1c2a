import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { crc32 } from 'node:zlib';
import { createHmac } from 'node:crypto';
import { NfsClient } from './helpers/nfs-client.ts';
import { startMemoryServer } from './helpers/server.ts';
import { HandleCodec, HANDLE_SIZE } from '../../../src/functions/fileserver/nfs/handle.ts';
import { nfsStatusOf } from '../../../src/functions/fileserver/nfs/errors.ts';

const OK = 0, STALE = 70, BADHANDLE = 10001;

async function setup(t: TestContext, handleKey?: Uint8Array) {
  const s = await startMemoryServer({ handleKey });
  const c = await NfsClient.connect(s.port);
  t.after(async () => {
    await c.close();
    await s.server.stop();
  });
  return { ...s, c, root: await c.root() };
}

const KEY = Buffer.alloc(32, 7);
const codec = (fsid: bigint, key: Uint8Array = KEY) => new HandleCodec(fsid, key);

test('a handle encodes and decodes to the same inode and generation', () => {
  const h = codec(42n).encode(1234567, 89);
  assert.equal(h.length, HANDLE_SIZE);
  assert.deepEqual(codec(42n).decode(h), { ino: 1234567, gen: 89 });
});

test('the handle format is fixed: version 2, fsid, inode, generation, then a 16-byte HMAC-SHA256 of them', () => {
  // Clients keep handles across server restarts and upgrades: this layout must never change silently.
  const h = codec(0x0102030405060708n).encode(0x1234, 7);
  const body = '02000000' + '0102030405060708' + '0000000000001234' + '0000000000000007';
  const mac = createHmac('sha256', KEY).update(Buffer.from(body, 'hex')).digest().subarray(0, 16).toString('hex');
  assert.equal(h.toString('hex'), body + mac);
});

test('handles of the wrong length, version or MAC are BADHANDLE', () => {
  const good = codec(1n).encode(5, 6);
  const flipped = Buffer.from(good);
  flipped[15]! ^= 1;
  const version = Buffer.from(good);
  version[0] = 3;
  const otherKey = codec(1n, Buffer.alloc(32, 8)).encode(5, 6);
  for (const [name, h] of [['short', good.subarray(0, 43)], ['long', Buffer.concat([good, Buffer.alloc(4)])], ['flipped bit', flipped], ['version 3', version], ['another key', otherKey]] as const) {
    assert.throws(() => codec(1n).decode(h), (e: unknown) => nfsStatusOf(e) === BADHANDLE, name);
  }
});

test('an old version-1 handle (CRC, no MAC) is STALE, so clients mount again', () => {
  const v1 = Buffer.alloc(32);
  v1[0] = 1;
  v1.writeBigUInt64BE(1n, 4);
  v1.writeBigUInt64BE(1n, 12);
  v1.writeUInt32BE(crc32(v1.subarray(0, 28)), 28);
  assert.throws(() => codec(1n).decode(v1), (e: unknown) => nfsStatusOf(e) === STALE);
});

test('a well-formed handle of another filesystem under the same key is STALE', () => {
  assert.throws(() => codec(1n).decode(codec(2n).encode(5, 6)), (e: unknown) => nfsStatusOf(e) === STALE);
});

test('a forged handle is BADHANDLE on every procedure that takes one, and the client keeps working', async (t) => {
  const { c, root } = await setup(t);
  const forged = Buffer.from(root);
  forged[13]! ^= 0xff;
  assert.equal((await c.getattr(forged)).status, BADHANDLE);
  assert.equal((await c.lookup(forged, 'x')).status, BADHANDLE);
  assert.equal((await c.read(forged, 0, 1)).status, BADHANDLE);
  assert.equal((await c.write(forged, 0, Buffer.alloc(1))).status, BADHANDLE);
  assert.equal((await c.create(forged, 'x', 0)).status, BADHANDLE);
  assert.equal((await c.readdir(forged)).status, BADHANDLE);
  assert.equal((await c.readdirplus(forged)).status, BADHANDLE);
  assert.equal((await c.commit(forged)).status, BADHANDLE);
  assert.equal((await c.setattr(forged, { mode: 0o777 })).status, BADHANDLE);
  assert.equal((await c.getattr(Buffer.alloc(0))).status, BADHANDLE);
  assert.equal((await c.getattr(root)).status, OK);
});

test('the handle of a removed file is STALE, also after its inode number is reused', async (t) => {
  const { c, root } = await setup(t);
  const old = (await c.create(root, 'a', 0)).fh!;
  await c.remove(root, 'a');
  assert.equal((await c.getattr(old)).status, STALE);
  const reused = (await c.create(root, 'b', 0)).fh!;
  assert.equal(reused.readBigUInt64BE(12), old.readBigUInt64BE(12), 'memory-fs reuses the inode number');
  assert.equal((await c.read(old, 0, 10)).status, STALE);
  assert.equal((await c.write(old, 0, Buffer.from('x'))).status, STALE);
  assert.equal((await c.getattr(reused)).status, OK);
});

test('a handle with a valid MAC but an unknown inode is STALE', async (t) => {
  const key = Buffer.alloc(32, 9);
  const { c, fs } = await setup(t, key);
  assert.equal((await c.getattr(codec(fs.fsid, key).encode(999999, 1))).status, STALE);
});

test('.. of the export root is the root itself: no path escapes the export', async (t) => {
  const { c, root } = await setup(t);
  const up = await c.lookup(root, '..');
  assert.equal(up.status, OK);
  assert.deepEqual(up.fh, root);
  const d = (await c.mkdir(root, 'd')).fh!;
  assert.deepEqual((await c.lookup(d, '..')).fh, root);
  assert.equal((await c.lookup(root, '../etc')).status, 22, 'a name with / is INVAL');
});

test('handles stay valid across a server restart on the same filesystem', async (t) => {
  const { startNfsServer } = await import('../../../src/functions/fileserver/nfs/server.ts');
  const { MemoryFileSystem } = await import('../../../src/functions/fileserver/nfs/memory-fs.ts');
  const fs = new MemoryFileSystem();
  const first = await startNfsServer({ fs, host: '127.0.0.1', port: 0 });
  const c1 = await NfsClient.connect(first.address.port);
  const fh = (await c1.create(await c1.root(), 'keep', 0)).fh!;
  await c1.close();
  await first.stop();
  const second = await startNfsServer({ fs, host: '127.0.0.1', port: 0 });
  t.after(() => second.stop());
  const c2 = await NfsClient.connect(second.address.port);
  t.after(() => c2.close());
  assert.equal((await c2.getattr(fh)).status, OK);
});
