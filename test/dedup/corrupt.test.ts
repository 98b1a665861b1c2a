import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { DedupVolume, type DedupVolumeOptions } from '../../src/functions/dedup/volume.ts';
import { computeLayout, encodeLoc, LocKind, INDEX_ENTRIES, PAGE_HEADER, sealPage, setU64 } from '../../src/functions/dedup/format.ts';
import { BLOCK, compressibleBlock, randomBlock } from './data.ts';

const MiB = 1 << 20;
const BACKING = 8 * MiB;
const LOGICAL = 16 * MiB;
const layout = computeLayout(BACKING, LOGICAL, 'lz4', true);

function setup() {
  const logs: string[] = [];
  const o: DedupVolumeOptions = { logicalSize: LOGICAL, compression: 'lz4', dedup: true, log: (m) => logs.push(m) };
  return { backing: new MemoryBlockDevice(BACKING), o, logs };
}
const read = async (vol: DedupVolume, offset: number) => {
  const b = new Uint8Array(BLOCK);
  await vol.pread(b, offset);
  return b;
};
const pageAt = (dev: MemoryBlockDevice, block: number) => dev.bytes.subarray(block * BLOCK, (block + 1) * BLOCK);

test('a corrupt map page is reported with EIO and a log line, never served, and other pages still work', async () => {
  const { backing, o, logs } = setup();
  const vol = await DedupVolume.open(backing, o);
  await vol.pwrite(randomBlock(1), 0); // map page 0
  await vol.pwrite(randomBlock(2), 600 * BLOCK); // map page 1
  await vol.close();
  pageAt(backing, layout.mapStart)[100]! ^= 0x40;
  const again = await DedupVolume.open(backing, o);
  const message = `dedup: map page at backing block ${layout.mapStart} is corrupt (checksum mismatch)`;
  await assert.rejects(read(again, 0), { code: 'SV_ERR_DEDUP_CORRUPT', errno: 'EIO', message });
  assert.ok(logs.includes(message));
  assert.deepEqual(await read(again, 600 * BLOCK), randomBlock(2));
  const result = await again.check();
  assert.equal(result.ok, false);
  assert.ok(result.problems.includes(message));
});

test('a metadata page written to the wrong place is caught by its page number', async () => {
  const { backing, o } = setup();
  const vol = await DedupVolume.open(backing, o);
  await vol.close();
  pageAt(backing, layout.mapStart).set(pageAt(backing, layout.mapStart + 1));
  const again = await DedupVolume.open(backing, o);
  await assert.rejects(read(again, 0), {
    errno: 'EIO',
    message: `dedup: map page at backing block ${layout.mapStart} is corrupt (page number ${layout.mapStart + 1} (misdirected write))`,
  });
});

test('a corrupt index page is reset with a log line and costs only deduplication', async () => {
  const { backing, o, logs } = setup();
  const vol = await DedupVolume.open(backing, o);
  await vol.pwrite(randomBlock(1), 0);
  await vol.close();
  for (let p = 0; p < layout.indexPages; p++) pageAt(backing, layout.indexStart + p)[200]! ^= 1;
  const again = await DedupVolume.open(backing, o);
  await again.pwrite(randomBlock(1), BLOCK); // its index entry is gone: stored again
  assert.deepEqual(await read(again, 0), randomBlock(1));
  assert.deepEqual(await read(again, BLOCK), randomBlock(1));
  assert.equal(again.stats().physicalBlocksUsed, 2);
  assert.ok(logs.some((l) => /^dedup: index page at backing block \d+ is corrupt \(checksum mismatch\); resetting it$/.test(l)));
  assert.deepEqual(await again.check(), { ok: true, problems: [] });
});

test('an index entry pointing at different bytes (a fingerprint collision) is never trusted', async () => {
  const { backing, o } = setup();
  const vol = await DedupVolume.open(backing, o);
  await vol.pwrite(randomBlock(1), 0); // lands in the first data block
  await vol.close();
  // Make the index claim that block 2's fingerprint lives where block 1 is stored.
  const h = createHash('sha256').update(randomBlock(2)).digest();
  const hi = h.readUInt32LE(0);
  const lo = h.readUInt32LE(4);
  const page = pageAt(backing, layout.indexStart + (hi % layout.indexPages));
  const v = new DataView(page.buffer, page.byteOffset, BLOCK);
  const at = PAGE_HEADER + 16 * (lo % INDEX_ENTRIES);
  v.setUint32(at, hi, true);
  v.setUint32(at + 4, lo, true);
  setU64(v, at + 8, encodeLoc(LocKind.Raw, layout.dataStart));
  sealPage(page);
  const again = await DedupVolume.open(backing, o);
  await again.pwrite(randomBlock(2), BLOCK);
  assert.deepEqual(await read(again, BLOCK), randomBlock(2));
  assert.deepEqual(await read(again, 0), randomBlock(1));
  assert.equal(again.stats().dedupHits, 0);
});

test('a damaged compressed fragment is reported with EIO, not returned', async () => {
  const { backing, o, logs } = setup();
  const vol = await DedupVolume.open(backing, o);
  await vol.pwrite(compressibleBlock(1), 0);
  await vol.close();
  pageAt(backing, layout.dataStart)[BLOCK - 10]! ^= 0xff; // fragment bytes sit at the end of the block
  const again = await DedupVolume.open(backing, o);
  const message = 'dedup: data of logical block 0 is unreadable (slot 0 fragment checksum mismatch)';
  await assert.rejects(read(again, 0), { code: 'SV_ERR_DEDUP_CORRUPT', errno: 'EIO', message });
  assert.ok(logs.includes(message));
});

test('a journal transaction damaged by a crash is ignored as a whole: the previous commit is recovered', async () => {
  const { backing, o } = setup();
  const vol = await DedupVolume.open(backing, o);
  await vol.pwrite(randomBlock(1), 0);
  await vol.flush(); // transaction 1
  await vol.pwrite(randomBlock(2), 0);
  await vol.pwrite(randomBlock(3), 700 * BLOCK);
  await vol.flush(); // transaction 2
  const crashed = new MemoryBlockDevice(BACKING);
  crashed.bytes.set(backing.bytes);
  // Transaction 2 starts right after transaction 1 (descriptor + its pages).
  const tx1Pages = new DataView(crashed.bytes.buffer, layout.journalStart * BLOCK).getUint16(6, true);
  const tx2 = layout.journalStart + 1 + tx1Pages;
  pageAt(crashed, tx2 + 1)[300]! ^= 1;
  const recovered = await DedupVolume.open(crashed, o);
  assert.deepEqual(await read(recovered, 0), randomBlock(1));
  assert.deepEqual(await read(recovered, 700 * BLOCK), new Uint8Array(BLOCK));
  assert.deepEqual(await recovered.check(), { ok: true, problems: [] });
  // The undamaged copy recovers both transactions.
  const intact = await DedupVolume.open(backing, o);
  assert.deepEqual(await read(intact, 0), randomBlock(2));
  assert.deepEqual(await read(intact, 700 * BLOCK), randomBlock(3));
});

test('a corrupt superblock is reported and the volume is not opened', async () => {
  const { backing, o, logs } = setup();
  await (await DedupVolume.open(backing, o)).close();
  backing.bytes[30]! ^= 1;
  const message = 'dedup: superblock at backing block 0 is corrupt (superblock checksum mismatch)';
  await assert.rejects(DedupVolume.open(backing, o), { errno: 'EIO', message });
  assert.ok(logs.includes(message));
});
