import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { Database } from '../../src/functions/database/database.ts';
import { MAGIC, decodeSuperblock } from '../../src/functions/database/log/format.ts';
import { GOLDEN_EXPIRY, GOLDEN_SIZE, buildGoldenImage } from './fixtures/make-golden.ts';

const golden = readFileSync(new URL('./fixtures/log-v1.img', import.meta.url));
const noop = { appendfsync: 'always' as const, log: () => {}, onDurable: () => {}, onFailure: () => {} };

test('the committed generator reproduces the golden log image byte for byte', async () => {
  const built = await buildGoldenImage();
  assert.equal(built.length, GOLDEN_SIZE);
  assert.ok(built.equals(golden), 'log format v1 changed: bump the version and add a new fixture');
});

test('the golden image starts with a checksummed superblock naming type, version and block size', () => {
  assert.ok(golden.subarray(0, 8).equals(MAGIC));
  const slot0 = decodeSuperblock(golden.subarray(0, 4096));
  assert.equal(slot0.kind, 'valid');
  if (slot0.kind !== 'valid') return;
  assert.deepEqual(slot0.sb, {
    blockSize: 4096,
    activeRegion: 1,
    deviceSize: GOLDEN_SIZE,
    generation: 2,
    region0Offset: 8192,
    regionSize: 20480,
  });
});

test('opening the golden image recovers exactly the data set it holds', async () => {
  const device = new MemoryBlockDevice(GOLDEN_SIZE);
  device.bytes.set(golden);
  const db = await Database.open(device, noop);
  const ks = db.ks;
  const str = (k: string) => {
    const e = ks.get(k);
    return e?.type === 'string' ? e.data.toString('latin1') : e?.type;
  };
  assert.equal(str('greeting'), 'hello world');
  assert.equal(ks.get('gone'), undefined);
  const list = ks.get('list');
  assert.deepEqual(list?.type === 'list' ? list.data.slice(0, list.data.length).map(String) : null, ['b', 'c']);
  const z = ks.get('zset');
  assert.deepEqual(z?.type === 'zset' ? z.data.entries().map((e) => [e.member, e.score]) : null, [['n', -2], ['m', 1.5]]);
  assert.equal(ks.get('ttl')?.expireAt, GOLDEN_EXPIRY);
  assert.equal(str(Buffer.from([0, 0xff, 0x0d, 0x0a]).toString('latin1')), '\x01\x02\x03');
  assert.equal(ks.size, 7);
  await db.close();
});

test('a superblock with a bad checksum in both slots refuses to open instead of formatting', async () => {
  const device = new MemoryBlockDevice(GOLDEN_SIZE);
  device.bytes.set(golden);
  device.bytes[20] ^= 1;
  device.bytes[4096 + 20] ^= 1;
  await assert.rejects(Database.open(device, noop), /database superblock is corrupt: superblock checksum mismatch/);
  assert.ok(device.bytes.subarray(0, 8).every((b, i) => b === MAGIC[i]), 'nothing was overwritten');
});

test('a torn newest superblock falls back to the previous generation', async () => {
  const device = new MemoryBlockDevice(GOLDEN_SIZE);
  device.bytes.set(golden);
  device.bytes[40] ^= 0xff; // slot 0 holds generation 2: damage it
  const db = await Database.open(device, noop);
  // Generation 1 (region 0) has the records written before the compaction.
  const e = db.ks.get('greeting');
  assert.equal(e?.type === 'string' ? e.data.toString() : null, 'hello');
  assert.equal(db.ks.get('ttl'), undefined);
  await db.close();
});
