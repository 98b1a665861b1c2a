import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { DedupVolume } from '../../src/functions/dedup/volume.ts';
import { BLOCK, randomBlock } from './data.ts';
import { makeV1, v1Contents, V1_BACKING, V1_LOGICAL } from './fixtures/make-v1.ts';

const golden = async () => new Uint8Array(gunzipSync(await readFile(new URL('./fixtures/v1.img.gz', import.meta.url))));

test('the committed generator still produces the golden v1 image byte for byte', async () => {
  const [made, fixture] = await Promise.all([makeV1(), golden()]);
  assert.equal(made.length, fixture.length);
  const firstDiff = made.findIndex((b, i) => b !== fixture[i]);
  assert.equal(firstDiff, -1, `first difference at byte ${firstDiff} (block ${Math.floor(firstDiff / BLOCK)})`);
});

test('the golden v1 image opens, replays its journal, reads back its contents and checks clean', async () => {
  const dev = new MemoryBlockDevice(V1_BACKING);
  dev.bytes.set(await golden());
  const vol = await DedupVolume.open(dev, { logicalSize: V1_LOGICAL, compression: 'lz4', dedup: true, log: () => {} });
  const all = new Uint8Array(V1_LOGICAL);
  await vol.pread(all, 0);
  const expected = new Uint8Array(V1_LOGICAL);
  for (const [lbn, data] of v1Contents()) expected.set(data, lbn * BLOCK);
  assert.deepEqual(all, expected);
  assert.deepEqual(await vol.check(), { ok: true, problems: [] });
  const s = vol.stats();
  assert.equal(s.mappedBlocks, 7);
  // 2 raw blocks + 4 fragments: the partly overwritten block's old fragment stays until its packed block frees.
  assert.equal(s.storedFragments, 6);
  assert.equal(s.physicalBlocksUsed, 4);
});

test('a v1 volume keeps the SHA-256 fingerprints it was formatted with, and deduplicates across a reopen', async () => {
  const dev = new MemoryBlockDevice(V1_BACKING);
  dev.bytes.set(await golden());
  const { decodeSuperblock } = await import('../../src/functions/dedup/format.ts');
  const sb = decodeSuperblock(dev.bytes.subarray(0, BLOCK));
  assert.equal(sb.kind === 'ok' && sb.layout.fingerprint, 'sha256');
  const o = { logicalSize: V1_LOGICAL, compression: 'lz4' as const, dedup: true, workers: 0, log: () => {} };
  const vol = await DedupVolume.open(dev, o);
  await vol.pwrite(randomBlock(4242), 100 * BLOCK);
  await vol.close();
  const again = await DedupVolume.open(dev, o);
  const before = again.stats().physicalBlocksUsed;
  await again.pwrite(randomBlock(4242), 101 * BLOCK);
  assert.equal(again.stats().dedupHits, 1);
  assert.equal(again.stats().physicalBlocksUsed, before);
  assert.deepEqual(await again.check(), { ok: true, problems: [] });
});

test('a volume formatted now records xxh64 in its superblock and keeps deduplicating after reopen', async () => {
  const dev = new MemoryBlockDevice(V1_BACKING);
  const o = { logicalSize: V1_LOGICAL, compression: 'lz4' as const, dedup: true, workers: 0, log: () => {} };
  const vol = await DedupVolume.open(dev, o);
  await vol.pwrite(v1Contents().get(0)!, 0);
  await vol.close();
  const { decodeSuperblock } = await import('../../src/functions/dedup/format.ts');
  const sb = decodeSuperblock(dev.bytes.subarray(0, BLOCK));
  assert.equal(sb.kind === 'ok' && sb.layout.fingerprint, 'xxh64');
  const again = await DedupVolume.open(dev, o);
  await again.pwrite(v1Contents().get(0)!, 9 * BLOCK);
  assert.equal(again.stats().dedupHits, 1);
  assert.equal(again.stats().physicalBlocksUsed, 1);
});
