import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { Database } from '../../src/functions/database/database.ts';
import { decodeRecord, decodeSuperblock, encodeRecord, recordSize, regionOffset } from '../../src/functions/database/log/format.ts';
import { openLog } from '../../src/functions/database/log/recovery.ts';
import { Op, num, type Mutation } from '../../src/functions/database/store/mutations.ts';

const noop = { appendfsync: 'always' as const, log: () => {}, onDurable: () => {}, onFailure: () => {} };
const b = (s: string) => Buffer.from(s, 'latin1');
const set = (k: string, v: string): Mutation => ({ op: Op.Set, args: [b(k), b(v), num(0)] });
const str = (db: Database, k: string) => {
  const e = db.ks.get(k);
  return e?.type === 'string' ? e.data.toString('latin1') : e?.type;
};

/** The newest valid superblock of a device. */
function newestSuperblock(device: MemoryBlockDevice) {
  const found = [0, 1]
    .map((i) => decodeSuperblock(Buffer.from(device.bytes.subarray(i * 4096, (i + 1) * 4096))))
    .flatMap((r) => (r.kind === 'valid' ? [r.sb] : []));
  return found.sort((x, y) => y.generation - x.generation)[0];
}

/** A log that went through region 0, region 1 and region 0 again, with one record appended. */
async function thirdPass(): Promise<MemoryBlockDevice> {
  const device = new MemoryBlockDevice(256 * 1024);
  const db = await Database.open(device, noop);
  for (let i = 0; i < 5; i++) db.mutate(set(`k${i}`, `first pass ${i}`)); // sequence numbers 1..5
  await db.writer.sync();
  await db.writer.compactNow(); // region 1, generation 2, snapshot numbered 6..10
  await db.writer.compactNow(); // region 0 again, generation 3, snapshot numbered 11..15
  db.mutate(set('live', 'x')); // 16
  await db.close();
  return device;
}

test('a stale record whose crc chains on but whose sequence number is not the next one ends replay', async () => {
  const base = await thirdPass();
  const { pos, replayed } = await openLog(base, () => {});
  assert.equal(pos.sb.activeRegion, 0);
  assert.equal(pos.sb.generation, 3);
  assert.equal(pos.nextSeq, 17);
  for (const seq of [3, 16, 18, 17]) {
    // An old record (sequence 3 was region 0's first pass), sealed so its crc continues the chain
    // exactly where the next record would go: only its number can tell it is stale.
    const device = new MemoryBlockDevice(base.size);
    device.bytes.set(base.bytes);
    const stale = Buffer.alloc(recordSize(set('stale', 'old')));
    encodeRecord(set('stale', 'old'), stale, 0, pos.lastCrc, seq);
    assert.notEqual(decodeRecord(stale, 0, pos.lastCrc), null, 'the crc chain alone accepts it');
    await device.pwrite(stale, regionOffset(pos.sb, 0) + pos.tail);
    const db = await Database.open(device, noop);
    if (seq === 17) {
      // The control: the same record with the expected number is replayed.
      assert.equal(str(db, 'stale'), 'old');
      assert.equal(db.recovered.replayed, replayed + 1);
    } else {
      assert.equal(db.ks.get('stale'), undefined, `a record numbered ${seq} where 17 is due is not replayed`);
      assert.equal(db.recovered.replayed, replayed);
      assert.equal(str(db, 'live'), 'x');
    }
    await db.close();
  }
});

test('a record rewritten byte for byte over a torn batch cannot revive the stale records behind it', async () => {
  const device = new MemoryBlockDevice(256 * 1024);
  const first = await Database.open(device, noop);
  first.mutate(set('a', '1'));
  await first.close();
  const { pos } = await openLog(device, () => {});
  // A batch [SET b ..., SET c 3] whose first record ends exactly at a block boundary, so the
  // second starts a block of its own. The power goes: the second block lands, the first does not.
  const bValue = 'v'.repeat(4096 - pos.tail - recordSize(set('b', '')));
  const r1 = set('b', bValue);
  assert.equal((pos.tail + recordSize(r1)) % 4096, 0);
  const r1Bytes = Buffer.alloc(recordSize(r1));
  const r1Crc = encodeRecord(r1, r1Bytes, 0, pos.lastCrc, pos.nextSeq);
  const r2Bytes = Buffer.alloc(recordSize(set('c', '3')));
  encodeRecord(set('c', '3'), r2Bytes, 0, r1Crc, pos.nextSeq + 1);
  await device.pwrite(r2Bytes, regionOffset(pos.sb, pos.sb.activeRegion) + pos.tail + r1Bytes.length);

  const db = await Database.open(device, noop);
  assert.equal(db.ks.get('c'), undefined, 'the batch was never acknowledged');
  // The client retries the same command: same bytes, same place in the chain, same number.
  db.mutate(r1);
  await db.writer.sync();
  await db.close();
  const sb = newestSuperblock(device);
  assert.equal(sb.activeRegion, 1, 'the first write after recovery went to a fresh region');
  assert.equal(sb.firstSeq, pos.nextSeq, 'numbering went on from the recovered tail');

  const again = await Database.open(device, noop);
  assert.equal(str(again, 'b'), bValue);
  assert.equal(again.ks.get('c'), undefined, 'the unacknowledged record behind the torn one stays dead');
  assert.equal(str(again, 'a'), '1');
  await again.close();
});

test('sequence numbers keep rising across compactions and reopens', async () => {
  const device = new MemoryBlockDevice(256 * 1024);
  let expected = 1;
  for (let round = 0; round < 4; round++) {
    const db = await Database.open(device, noop);
    for (let i = 0; i < 3; i++) db.mutate(set(`r${round}k${i}`, 'v'));
    await db.writer.sync();
    const sb = newestSuperblock(device);
    // Round 0 appends to the fresh region; later rounds compact first, numbering the snapshot from the recovered tail.
    assert.equal(sb.firstSeq, expected, `round ${round}`);
    await db.close();
    const { pos, replayed } = await openLog(device, () => {});
    assert.equal(pos.nextSeq, sb.firstSeq + replayed);
    assert.ok(pos.nextSeq > expected);
    expected = pos.nextSeq;
  }
});
