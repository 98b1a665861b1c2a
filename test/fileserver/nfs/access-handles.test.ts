/**
 * Keyed handles on the on-volume filesystem, through the function module: a
 * client that never mounted cannot make up a handle (old CRC handles, guessed
 * keys, handles of another volume), and a handle from MOUNT outlives a restart
 * of the server on the same volume because its key lives in the superblock.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32 } from 'node:zlib';
import { hkdfSync } from 'node:crypto';
import fileserver, { parseFileServerOptions } from '../../../src/functions/fileserver/index.ts';
import { MemoryBlockDevice } from '../../../src/block/memory-device.ts';
import { mkfs } from '../../../src/functions/fileserver/fs/index.ts';
import { HandleCodec } from '../../../src/functions/fileserver/nfs/handle.ts';
import { NfsClient } from './helpers/nfs-client.ts';

const OK = 0, STALE = 70, BADHANDLE = 10001;

const ctx = (device: MemoryBlockDevice, options: Record<string, unknown> = {}) => ({
  device,
  listen: { host: '127.0.0.1', port: 0 },
  options: parseFileServerOptions(options),
  instance: 'test',
  log: () => {},
});

/** The fsid of a volume: the first 8 bytes of the superblock uuid, as every GETATTR tells any client. */
const fsidOf = (device: MemoryBlockDevice) => new DataView(device.bytes.buffer, device.bytes.byteOffset + 64, 16).getBigUint64(0, true);
const superblockKey = (device: MemoryBlockDevice) => Buffer.from(device.bytes.subarray(88, 120));

/** The old, unkeyed format: version 1, fsid, inode, generation, CRC-32. */
function crcHandle(fsid: bigint, ino: number, gen: number): Buffer {
  const h = Buffer.alloc(32);
  h[0] = 1;
  h.writeBigUInt64BE(fsid, 4);
  h.writeBigUInt64BE(BigInt(ino), 12);
  h.writeBigUInt64BE(BigInt(gen), 20);
  h.writeUInt32BE(crc32(h.subarray(0, 28)), 28);
  return h;
}

test('handles forged for inodes 1-5 by a client that never mounted are BADHANDLE or STALE', async (t) => {
  const device = new MemoryBlockDevice(64 << 20);
  const running = await fileserver.start(ctx(device));
  t.after(() => running.stop());
  // Someone else fills the export, so inodes 2-5 exist.
  const owner = await NfsClient.connect(running.address.port);
  t.after(() => owner.close());
  const root = await owner.root();
  for (const n of ['a', 'b', 'c', 'd']) assert.equal((await owner.create(root, n, 0, { mode: 0o600 })).status, OK);

  const attacker = await NfsClient.connect(running.address.port);
  t.after(() => attacker.close());
  attacker.cred = { flavor: 1, uid: 1000, gid: 1000 };
  const fsid = fsidOf(device);
  const guesses = [
    Buffer.alloc(32),
    Buffer.alloc(32, 0xff),
    hkdfSync('sha256', Buffer.alloc(16), 'storvisor', 'nfs handle key v2', 32),
    // The fsid is public and the uuid's other half is not: a key from the fsid alone is a guess.
    hkdfSync('sha256', Buffer.concat([device.bytes.subarray(64, 72), Buffer.alloc(8)]), 'storvisor', 'nfs handle key v2', 32),
  ].map((k) => Buffer.from(new Uint8Array(k)));
  for (let ino = 1; ino <= 5; ino++) {
    for (const gen of [0, 1, 2]) {
      for (const h of [crcHandle(fsid, ino, gen), crcHandle(0n, ino, gen)]) {
        assert.equal((await attacker.getattr(h)).status, STALE, `v1 handle ino ${ino} gen ${gen}`);
        assert.equal((await attacker.read(h, 0, 10)).status, STALE);
      }
      for (const key of guesses) {
        const h = new HandleCodec(fsid, key).encode(ino, gen);
        assert.equal((await attacker.getattr(h)).status, BADHANDLE, `guessed key, ino ${ino} gen ${gen}`);
        assert.equal((await attacker.readdir(h)).status, BADHANDLE);
        assert.equal((await attacker.create(h, 'x', 0)).status, BADHANDLE);
      }
    }
  }
  assert.deepEqual((await owner.readdir(root)).entries.map((e) => e.name).sort(), ['a', 'b', 'c', 'd']);
});

test('a fresh volume gets a random 32-byte handle key in its superblock, different per volume', async (t) => {
  const d1 = new MemoryBlockDevice(64 << 20);
  const d2 = new MemoryBlockDevice(64 << 20);
  const r1 = await fileserver.start(ctx(d1));
  t.after(() => r1.stop());
  const r2 = await fileserver.start(ctx(d2));
  t.after(() => r2.stop());
  assert.equal(superblockKey(d1).every((b) => b === 0), false);
  assert.notDeepEqual(superblockKey(d1), superblockKey(d2));
  // A handle of one volume means nothing to the other.
  const c1 = await NfsClient.connect(r1.address.port);
  t.after(() => c1.close());
  const c2 = await NfsClient.connect(r2.address.port);
  t.after(() => c2.close());
  assert.equal((await c2.getattr(await c1.root())).status, BADHANDLE);
});

test('a handle from MOUNT still works after the server restarts on the same volume', async (t) => {
  const device = new MemoryBlockDevice(64 << 20);
  const first = await fileserver.start(ctx(device));
  const c1 = await NfsClient.connect(first.address.port);
  c1.cred = { flavor: 1, uid: 1000, gid: 1000 };
  const root = await c1.root();
  const dir = (await c1.mkdir(root, 'home', { mode: 0o700 })).fh!;
  const fh = (await c1.create(dir, 'notes', 1, { mode: 0o600 })).fh!;
  assert.equal((await c1.write(fh, 0, Buffer.from('kept'))).status, OK);
  await c1.close();
  await first.stop();

  const second = await fileserver.start(ctx(device));
  t.after(() => second.stop());
  const c2 = await NfsClient.connect(second.address.port);
  t.after(() => c2.close());
  c2.cred = { flavor: 1, uid: 1000, gid: 1000 };
  assert.deepEqual((await c2.read(fh, 0, 10)).data?.toString(), 'kept', 'no new MOUNT, no LOOKUP: the old handle');
  assert.equal((await c2.readdir(dir)).entries[0]?.name, 'notes');
  c2.cred = { flavor: 1, uid: 1001, gid: 1001 };
  assert.equal((await c2.read(fh, 0, 10)).status, 13, 'and it is still only a handle: permissions apply');
});

test('a volume formatted without a handle key (before keyed handles) keeps its handles across restarts', async (t) => {
  const device = new MemoryBlockDevice(64 << 20);
  await mkfs(device, { root: { uid: 0, gid: 0, mode: 0o1777 } });
  assert.ok(superblockKey(device).every((b) => b === 0));
  const first = await fileserver.start(ctx(device));
  const c1 = await NfsClient.connect(first.address.port);
  const fh = (await c1.create(await c1.root(), 'old', 0)).fh!;
  await c1.close();
  await first.stop();
  assert.ok(superblockKey(device).every((b) => b === 0), 'the superblock is not rewritten in place');
  const second = await fileserver.start(ctx(device));
  t.after(() => second.stop());
  const c2 = await NfsClient.connect(second.address.port);
  t.after(() => c2.close());
  assert.equal((await c2.getattr(fh)).status, OK);
  assert.equal((await c2.getattr(crcHandle(fsidOf(device), 1, 1))).status, STALE);
});

test('the export root of a fresh volume is 1777 root:root, so squashed root and any user can create there', async (t) => {
  const device = new MemoryBlockDevice(64 << 20);
  const running = await fileserver.start(ctx(device));
  t.after(() => running.stop());
  const c = await NfsClient.connect(running.address.port);
  t.after(() => c.close());
  const root = await c.root();
  const a = (await c.getattr(root)).attr!;
  assert.deepEqual([a.mode, a.uid, a.gid], [0o1777, 0, 0]);
  assert.equal((await c.create(root, 'from-root', 0)).attr!.uid, 65534);
  c.cred = { flavor: 1, uid: 1000, gid: 1000 };
  assert.equal((await c.create(root, 'from-alice', 0)).status, OK);
  assert.equal((await c.remove(root, 'from-root')).status, 1, 'sticky: not her file');
});
