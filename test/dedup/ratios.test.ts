import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { DedupVolume } from '../../src/functions/dedup/volume.ts';
import { BLOCK, compressibleBlock, randomBlock, prng } from './data.ts';

/**
 * A data set of `n` blocks with a known duplicate fraction and a known fraction of
 * compressible unique blocks (each compresses to < 1/16 block, so 16 pack into one):
 *   true dedup ratio       = n / unique
 *   true compression ratio = unique / (incompressible + ceil(compressible / 16))
 */
function dataSet(n: number, dupFraction: number, compressibleFraction: number) {
  const unique = Math.round(n * (1 - dupFraction));
  const compressible = Math.round(unique * compressibleFraction);
  const r = prng(42);
  const contents = Array.from({ length: unique }, (_, i) =>
    // Spread the compressible ones evenly among the unique blocks.
    Math.floor(((i + 1) * compressible) / unique) > Math.floor((i * compressible) / unique) ? compressibleBlock(i + 1) : randomBlock(i + 1),
  );
  const order = Array.from({ length: n }, (_, i) => (i < unique ? i : Math.floor(r() * unique)));
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return {
    blocks: order.map((i) => contents[i]!),
    dedupRatio: n / unique,
    compressionRatio: unique / (unique - compressible + Math.ceil(compressible / 16)),
  };
}

const cases: Array<[number, number]> = [
  [0, 0],
  [0.5, 0],
  [0.9, 0],
  [0, 0.5],
  [0.5, 0.5],
  [0.9, 0.75],
];

for (const [dup, comp] of cases) {
  test(`a data set with ${dup * 100}% duplicates and ${comp * 100}% compressible blocks shows its true ratios within 1%`, async () => {
    const n = 3000;
    const set = dataSet(n, dup, comp);
    const vol = await DedupVolume.open(new MemoryBlockDevice(32 << 20), {
      logicalSize: n * BLOCK,
      compression: 'lz4',
      dedup: true,
      log: () => {},
    });
    const chunk = new Uint8Array(32 * BLOCK);
    for (let i = 0; i < n; i += 32) {
      const k = Math.min(32, n - i);
      for (let j = 0; j < k; j++) chunk.set(set.blocks[i + j]!, j * BLOCK);
      await vol.pwrite(chunk.subarray(0, k * BLOCK), i * BLOCK);
    }
    await vol.flush();
    const s = vol.stats();
    assert.equal(s.mappedBlocks, n);
    const within = (measured: number, truth: number) => Math.abs(measured - truth) / truth <= 0.01;
    assert.ok(within(s.dedupRatio!, set.dedupRatio), `dedup ratio ${s.dedupRatio} vs true ${set.dedupRatio}`);
    assert.ok(within(s.compressionRatio!, set.compressionRatio), `compression ratio ${s.compressionRatio} vs true ${set.compressionRatio}`);
    assert.deepEqual(await vol.check(), { ok: true, problems: [] });
  });
}
