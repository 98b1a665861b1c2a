import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import type { WriteFlags } from '../../src/block/types.ts';
import { DedupVolume, chunkBlocksFor } from '../../src/functions/dedup/volume.ts';
import { DUP, NEW, SAME_AS, type Planner } from '../../src/functions/dedup/planner.ts';
import type { PageCache } from '../../src/functions/dedup/page-cache.ts';
import { BLOCK, randomBlock, randomBytes } from './data.ts';

const MiB = 1 << 20;

/** Counts the backing's data-area writes and every read. */
class CountingDevice extends MemoryBlockDevice {
  writes = 0;
  reads = 0;
  override async pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags): Promise<void> {
    this.writes++;
    return super.pwrite(buf, offset, flags);
  }
  override async pread(buf: Uint8Array, offset: number): Promise<void> {
    this.reads++;
    return super.pread(buf, offset);
  }
}

/**
 * Half incompressible, half compressible ~4:1 (1 KiB of entropy, so three fragments fill a
 * packed block): raw blocks and packed fragments interleaved, as in the bench's 0% data set.
 */
function mixed(blocks: number, seed: number): Uint8Array {
  const data = new Uint8Array(blocks * BLOCK);
  for (let i = 0; i < blocks; i++) data.set(i % 2 ? randomBytes(seed + i, 1024) : randomBlock(seed + i), i * BLOCK);
  return data;
}

const internals = (vol: DedupVolume) => {
  const v = vol as unknown as { writer: { planner: Planner; chunkBlocks: number }; cache: PageCache };
  return { planner: v.writer.planner, chunkBlocks: v.writer.chunkBlocks, cache: v.cache };
};

test('a chunk of new raw and compressible blocks reaches the backing in one pwrite, its sealed packed blocks merged with its raw run (three before)', async () => {
  const dev = new CountingDevice(64 * MiB);
  const vol = await DedupVolume.open(dev, { logicalSize: 16 * MiB, compression: 'lz4', dedup: true, workers: 0, log: () => {} });
  const { chunkBlocks } = internals(vol);
  // Warm the allocator, the packer and the metadata pages with a first chunk, then count one chunk.
  await vol.pwrite(mixed(chunkBlocks, 1000), 0);
  const data = mixed(chunkBlocks, 2000);
  const before = dev.writes;
  await vol.pwrite(data, chunkBlocks * BLOCK);
  assert.equal(dev.writes - before, 1, `${dev.writes - before} pwrites for one chunk of ${chunkBlocks} blocks`);
  await vol.flush();
  const out = new Uint8Array(data.length);
  await vol.pread(out, chunkBlocks * BLOCK);
  assert.deepEqual(out, data);
  assert.equal((await vol.check()).ok, true);
  await vol.close();
});

test('prepare reads the index pages a chunk needs, so planning it on a cold index needs no read', async () => {
  const dev = new CountingDevice(64 * MiB);
  const vol = await DedupVolume.open(dev, { logicalSize: 16 * MiB, compression: 'lz4', dedup: true, workers: 0, log: () => {} });
  const { planner, chunkBlocks } = internals(vol);
  const data = mixed(chunkBlocks, 3000);
  const blocks = Array.from({ length: chunkBlocks }, (_, i) => data.subarray(i * BLOCK, (i + 1) * BLOCK));
  const reads0 = dev.reads;
  let prepared = planner.prepare(data, blocks);
  assert.ok(prepared instanceof Promise, 'a cold index page makes prepare wait for its read');
  prepared = await prepared;
  assert.ok(dev.reads > reads0, 'the index pages were read in prepare');
  const reads1 = dev.reads;
  const plans = planner.plan(prepared);
  assert.ok(!(plans instanceof Promise), 'plan answers synchronously: every page it needs is in memory');
  assert.equal(dev.reads, reads1);
  assert.ok(plans.kind.every((k) => k === NEW));
  await vol.close();
});

test('on a small volume (a 96 MiB backing: 95 pages per transaction) a 256 KiB request is one 64-block chunk, written in one pwrite (two chunks, two pwrites before)', async () => {
  const dev = new CountingDevice(96 * MiB);
  const vol = await DedupVolume.open(dev, { logicalSize: 32 * MiB, compression: 'lz4', dedup: true, workers: 0, log: () => {} });
  assert.equal(internals(vol).chunkBlocks, 64);
  await vol.pwrite(mixed(64, 5000), 0); // warm the allocator, the packer and the metadata pages
  const data = mixed(64, 6000);
  const before = dev.writes;
  await vol.pwrite(data, 64 * BLOCK);
  assert.equal(dev.writes - before, 1, `${dev.writes - before} pwrites for one 256 KiB request`);
  await vol.flush();
  const out = new Uint8Array(data.length);
  await vol.pread(out, 64 * BLOCK);
  assert.deepEqual(out, data);
  assert.equal((await vol.check()).ok, true);
  await vol.close();
});

test('a chunk never needs more pages than one transaction carries, the refcount pages counted at most once each', () => {
  // Bound: two map pages + min(2n + 2, refcount pages) <= pages per transaction.
  for (const [limit, refPages] of [[95, 25], [95, 94], [63, 400], [1012, 30000], [5, 2], [3, 100]] as const) {
    const n = chunkBlocksFor(limit, refPages);
    assert.ok(n >= 1 && n <= 64, `${n} blocks`);
    if (n > 1) assert.ok(2 + Math.min(2 * n + 2, refPages) <= limit, `${n} blocks can need more than ${limit} pages (${refPages} refcount pages)`);
  }
  assert.equal(chunkBlocksFor(95, 25), 64);
  assert.equal(chunkBlocksFor(95, 400), 45, 'a large volume on a small journal keeps the 2n + 4 bound');
});

test('plan verifies the candidate prepare found first, and when that block was freed meanwhile it shares the block the index names now', async () => {
  const dev = new CountingDevice(64 * MiB);
  const vol = await DedupVolume.open(dev, { logicalSize: 16 * MiB, compression: 'lz4', dedup: true, workers: 0, log: () => {} });
  const { planner } = internals(vol);
  const meta = (vol as unknown as { meta: { getLoc(lbn: number): number | Promise<number> } }).meta;
  const x = randomBlock(7001); // incompressible: a raw block
  await vol.pwrite(x, 0);
  await vol.flush();
  const first = await meta.getLoc(0);
  // Prepared while block 0's copy of x is the candidate: the hint.
  let stale = planner.prepare(x, [x]);
  if (stale instanceof Promise) stale = await stale;
  assert.equal(stale.hints![0], first, 'prepare kept the candidate it found');
  const fresh = planner.plan(stale);
  assert.ok(!(fresh instanceof Promise));
  assert.deepEqual([fresh.kind[0], fresh.arg[0]], [DUP, first], 'the hint verifies: a duplicate of block 0');
  // Now free that copy (overwrite, commit) and store x again elsewhere.
  await vol.pwrite(randomBlock(7002), 0);
  await vol.flush();
  await vol.pwrite(x, 5 * BLOCK);
  await vol.flush();
  const second = await meta.getLoc(5);
  assert.notEqual(second, first);
  let plans = planner.plan(stale);
  if (plans instanceof Promise) plans = await plans;
  assert.deepEqual([plans.kind[0], plans.arg[0]], [DUP, second], 'the freed hint fails its verify; the index names the live copy');
  assert.equal((await vol.check()).ok, true);
  await vol.close();
});

test('blocks repeated inside one request are planned as copies of their first occurrence and stored once', async () => {
  const dev = new CountingDevice(64 * MiB);
  const vol = await DedupVolume.open(dev, { logicalSize: 16 * MiB, compression: 'lz4', dedup: true, workers: 0, log: () => {} });
  const { planner } = internals(vol);
  // 16 blocks: 0..5 distinct (raw and compressible), then 0..5 again, a zero block, and 2 and 3 once more.
  const distinct = mixed(6, 3000);
  const order = [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, -1, 2, 3, 5];
  const data = new Uint8Array(order.length * BLOCK);
  order.forEach((k, i) => k >= 0 && data.set(distinct.subarray(k * BLOCK, (k + 1) * BLOCK), i * BLOCK));
  let prepared = planner.prepare(data, order.map((_, i) => data.subarray(i * BLOCK, (i + 1) * BLOCK)));
  if (prepared instanceof Promise) prepared = await prepared;
  let plans = planner.plan(prepared);
  if (plans instanceof Promise) plans = await plans;
  order.forEach((k, i) => {
    const first = order.indexOf(k);
    if (k < 0) assert.equal(plans.kind[i], 0, `block ${i} is zero`);
    else if (first === i) assert.equal(plans.kind[i], NEW, `block ${i} is new`);
    else assert.deepEqual([plans.kind[i], plans.arg[i]], [SAME_AS, first], `block ${i} repeats block ${first}`);
  });
  await vol.pwrite(data, 0);
  const out = new Uint8Array(data.length);
  await vol.pread(out, 0);
  assert.deepEqual(out, data);
  assert.equal(vol.stats().storedFragments, 6, 'six distinct blocks stored');
  await vol.close();
});
