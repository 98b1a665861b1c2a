import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { Database } from '../../src/functions/database/database.ts';
import { createHash } from 'node:crypto';
import { openLog } from '../../src/functions/database/log/recovery.ts';
import { LOG_VERSION, MAGIC, crc32Range, decodeSuperblock, encodeRecord, encodeRecordBody, recordSize, sealRecords } from '../../src/functions/database/log/format.ts';
import { crc32 } from 'node:zlib';
import { native } from '../../src/native/addon.ts';
import { Op, num } from '../../src/functions/database/store/mutations.ts';
import { GOLDEN_EXPIRY, GOLDEN_SIZE, buildGoldenImage } from './fixtures/make-golden.ts';

const goldenV1 = readFileSync(new URL('./fixtures/log-v1.img', import.meta.url));
const golden = readFileSync(new URL('./fixtures/log-v2.img', import.meta.url));
const noop = { appendfsync: 'always' as const, log: () => {}, onDurable: () => {}, onFailure: () => {} };

test('the committed generator reproduces the golden version 2 log image byte for byte', async () => {
  assert.equal(LOG_VERSION, 2, 'a new version needs a new fixture');
  const built = await buildGoldenImage();
  assert.equal(built.length, GOLDEN_SIZE);
  assert.ok(built.equals(golden), 'log format v2 changed: bump the version and add a new fixture');
});

test('the frozen version 1 fixture is unchanged', () => {
  assert.equal(createHash('sha256').update(goldenV1).digest('hex'), '9ffd26ad850b4030e9e1a2f8b44778cb227d8782621c22f88035ccb56d2f15d7');
});

test('the golden images start with a checksummed superblock naming type, version, block size and first sequence', () => {
  for (const [image, version, firstSeq] of [[goldenV1, 1, 0], [golden, 2, 8]] as const) {
    assert.ok(image.subarray(0, 8).equals(MAGIC));
    const slot0 = decodeSuperblock(image.subarray(0, 4096));
    assert.equal(slot0.kind, 'valid');
    if (slot0.kind !== 'valid') return;
    assert.deepEqual(slot0.sb, {
      version,
      blockSize: 4096,
      activeRegion: 1,
      deviceSize: GOLDEN_SIZE,
      generation: 2,
      region0Offset: 8192,
      regionSize: 20480,
      // Version 2: seven records went to region 0 (1..7), so the snapshot starts at 8.
      firstSeq,
    });
  }
});

/** The data set make-golden.ts builds. */
function assertGoldenData(ks: Database['ks']): void {
  const str = (k: string) => {
    const e = ks.get(k);
    return e?.type === 'string' ? e.data.toString('latin1') : e?.type;
  };
  assert.equal(str('greeting'), 'hello world');
  assert.equal(ks.get('gone'), undefined);
  const list = ks.get('list');
  assert.deepEqual(list?.type === 'list' ? list.data.slice(0, list.data.length).map(String) : null, ['b', 'c']);
  const z = ks.get('zset');
  assert.deepEqual(z?.type === 'zset' ? [...z.data.entries()].map((e) => [e.member, e.score]) : null, [['n', -2], ['m', 1.5]]);
  assert.equal(ks.get('ttl')?.expireAt, GOLDEN_EXPIRY);
  assert.equal(str(Buffer.from([0, 0xff, 0x0d, 0x0a]).toString('latin1')), '\x01\x02\x03');
  assert.equal(ks.size, 7);
}

for (const [name, image] of [['version 1', goldenV1], ['version 2', golden]] as const) {
  test(`opening the golden ${name} image recovers exactly the data set it holds`, async () => {
    const device = new MemoryBlockDevice(GOLDEN_SIZE);
    device.bytes.set(image);
    const db = await Database.open(device, noop);
    assert.equal(db.recovered.replayed, 9); // a 5-record snapshot and 4 appended records
    assertGoldenData(db.ks);
    await db.close();
    assert.ok(Buffer.from(device.bytes).equals(image), 'opening and closing without a write changes nothing');
  });
}

test('the golden version 2 image numbers its records on from the first sequence', async () => {
  const device = new MemoryBlockDevice(GOLDEN_SIZE);
  device.bytes.set(golden);
  const { pos, replayed } = await openLog(device, () => {});
  assert.equal(replayed, 9);
  assert.equal(pos.nextSeq, 8 + 9);
  assert.equal(pos.compactFirst, true);
});

test('the first write to a version 1 log compacts it into version 2, and it reopens with everything', async () => {
  const device = new MemoryBlockDevice(GOLDEN_SIZE);
  device.bytes.set(goldenV1);
  const db = await Database.open(device, noop);
  db.mutate({ op: Op.Set, args: [Buffer.from('new'), Buffer.from('v'), num(0)] });
  await db.writer.sync();
  assert.equal(db.writer.counters.compactions, 1);
  await db.close();
  const sb = decodeSuperblock(Buffer.from(device.bytes.subarray(4096, 8192))); // generation 3: slot 1
  assert.ok(sb.kind === 'valid' && sb.sb.version === 2 && sb.sb.generation === 3 && sb.sb.activeRegion === 0, JSON.stringify(sb));
  const again = await Database.open(device, noop);
  const e = again.ks.get('new');
  assert.equal(e?.type === 'string' ? e.data.toString() : null, 'v');
  assert.equal(again.ks.size, 8);
  await again.close();
});

test('a superblock with a bad checksum in both slots refuses to open instead of formatting', async () => {
  const device = new MemoryBlockDevice(GOLDEN_SIZE);
  device.bytes.set(golden);
  device.bytes[20] ^= 1;
  device.bytes[4096 + 20] ^= 1;
  await assert.rejects(Database.open(device, noop), /database superblock is corrupt: superblock checksum mismatch/);
  assert.ok(device.bytes.subarray(0, 8).every((b, i) => b === MAGIC[i]), 'nothing was overwritten');
});

for (const [name, image] of [['version 1', goldenV1], ['version 2', golden]] as const) {
  test(`a torn newest superblock falls back to the previous generation (${name})`, async () => {
    const device = new MemoryBlockDevice(GOLDEN_SIZE);
    device.bytes.set(image);
    device.bytes[40] ^= 0xff; // slot 0 holds generation 2: damage it
    const db = await Database.open(device, noop);
    // Generation 1 (region 0) has the records written before the compaction.
    const e = db.ks.get('greeting');
    assert.equal(e?.type === 'string' ? e.data.toString() : null, 'hello');
    assert.equal(db.ks.get('ttl'), undefined);
    await db.close();
  });
}

test('record checksums are zlib crc32 of the range, for every length, offset and seed, natively where the addon is built', () => {
  // The addon is part of the build here: a missing one must fail, not fall back unnoticed.
  assert.equal(typeof native?.crc32Range, 'function', 'native crc32Range missing');
  const buf = Buffer.alloc(9000);
  let x = 0x12345678;
  for (let i = 0; i < buf.length; i++) buf[i] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;
  for (const len of [0, 1, 15, 16, 63, 64, 127, 128, 129, 143, 144, 4096 + 37, 8192, 8999]) {
    for (const from of [0, 1, 7, 16]) {
      if (from + len > buf.length) continue;
      for (const seed of [0, 0xffffffff, 0x9e3779b9]) {
        assert.equal(crc32Range(buf, from, from + len, seed), crc32(buf.subarray(from, from + len), seed), `len ${len} from ${from} seed ${seed}`);
      }
    }
  }
  assert.throws(() => native!.crc32Range!(buf, 8990, 11, 0), RangeError);
});

test('records sealed in one call are byte for byte the records encoded one at a time', () => {
  assert.ok(native?.crc32Records, 'the native addon must provide crc32Records');
  const ms = [
    { op: Op.Set, args: [Buffer.from('k'), Buffer.alloc(100, 7), num(0)] },
    { op: Op.Del, args: [Buffer.from('gone')] },
    { op: Op.Set, args: [Buffer.from('big'), Buffer.alloc(5000, 3), num(1234)] },
  ];
  const total = 9 + ms.reduce((n, m) => n + recordSize(m), 0);
  const one = Buffer.alloc(total, 0xee);
  const batch = Buffer.alloc(total, 0xee);
  let crc = 0x12345678;
  let p = 9;
  for (const [i, m] of ms.entries()) {
    crc = encodeRecord(m, one, p, crc, 40 + i);
    encodeRecordBody(m, batch, p, 40 + i);
    p += recordSize(m);
  }
  assert.equal(sealRecords(batch, 9, p, 0x12345678), crc);
  assert.ok(batch.equals(one));
});

test('crc32Records refuses a range whose last record does not end inside it', () => {
  const m = { op: Op.Set, args: [Buffer.from('k'), Buffer.from('v'), num(0)] };
  const b = Buffer.alloc(recordSize(m));
  encodeRecordBody(m, b, 0, 1);
  assert.throws(() => native!.crc32Records!(b, 0, b.length - 1, 0), /does not end inside the range/);
  assert.throws(() => native!.crc32Records!(b, 0, b.length + 1, 0), /not inside the buffer/);
  assert.equal(native!.crc32Records!(b, 3, 3, 77), 77);
});
