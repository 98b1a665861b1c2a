import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chunkHasherFor, hasherFor, zeroTestJs, type HashEngine } from '../../src/functions/dedup/hash.ts';
import { randomBlock, compressibleBlock, BLOCK } from './data.ts';

function chunkOf(blocks: Uint8Array[]): Uint8Array {
  const chunk = new Uint8Array(blocks.length * BLOCK);
  blocks.forEach((b, k) => chunk.set(b, k * BLOCK));
  return chunk;
}

const mixed = (): Uint8Array[] => {
  const blocks: Uint8Array[] = [];
  for (let k = 0; k < 64; k++) blocks.push(k % 9 === 4 ? new Uint8Array(BLOCK) : k % 2 ? compressibleBlock(k) : randomBlock(k));
  return blocks;
};

for (const [fn, engine] of [
  ['xxh64', 'native'],
  ['xxh64', 'js'],
  ['sha256', 'native'],
] as const) {
  test(`the ${fn} chunk hasher (${engine}) gives every non-zero block the fingerprint the one-block hasher gives it`, () => {
    const blocks = mixed();
    const digests = new Uint32Array(2 * blocks.length);
    const zero = new Uint8Array(blocks.length);
    const nonzero = chunkHasherFor(fn, engine as HashEngine)(chunkOf(blocks), digests, zero);
    const one = hasherFor(fn);
    let expectNonzero = 0;
    blocks.forEach((b, k) => {
      const isZero = b.every((x) => x === 0);
      assert.equal(zero[k], isZero ? 1 : 0, `block ${k}`);
      if (isZero) return;
      expectNonzero++;
      assert.deepEqual({ hi: digests[2 * k], lo: digests[2 * k + 1] }, one(b), `block ${k}`);
    });
    assert.equal(nonzero, expectNonzero);
  });
}

test('the JavaScript zero test flags a block zero only when all 4096 bytes are, a lone byte at either end included', () => {
  const chunk = new Uint8Array(5 * BLOCK);
  chunk[BLOCK] = 1; // block 1, first byte
  chunk[3 * BLOCK - 1] = 1; // block 2, last byte
  chunk[3 * BLOCK + 2048] = 0xff; // block 3, the middle
  const zero = new Uint8Array(5);
  assert.equal(zeroTestJs(chunk, zero), 3);
  assert.deepEqual([...zero], [1, 0, 0, 0, 1]);
});

test('a chunk of zero blocks is all zero with no digest array, and the digests of zero blocks are left 0', () => {
  const zero = new Uint8Array(3);
  assert.equal(chunkHasherFor('xxh64')(new Uint8Array(3 * BLOCK), null, zero), 0);
  assert.deepEqual([...zero], [1, 1, 1]);
  const digests = new Uint32Array(6).fill(9);
  assert.equal(chunkHasherFor('xxh64')(new Uint8Array(3 * BLOCK), digests, zero), 0);
  assert.deepEqual([...digests], [0, 0, 0, 0, 0, 0]);
});
