import { test } from 'node:test';
import assert from 'node:assert/strict';
import xxhash from '@node-rs/xxhash';
import fc from 'fast-check';
import { nativeFingerprint } from '../../src/native/addon.ts';
import { randomBlock, compressibleBlock, BLOCK } from '../dedup/data.ts';

// The addon is always built on Linux (check-native.mjs), and native/xxhash.c needs no library:
// a build without these entry points fails here instead of passing untested.
const fp = (): NonNullable<typeof nativeFingerprint> => {
  assert.ok(nativeFingerprint, 'the native addon has no xxh64Into/fingerprintBlocks (rebuild: npm ci)');
  return nativeFingerprint;
};

const digestOf = (out: Uint32Array, at = 0): bigint => (BigInt(out[at + 1]!) << 32n) | BigInt(out[at]!);

test('native xxh64 equals @node-rs/xxhash on the known vectors and on every length from 0 to 100 bytes', () => {
  const n = fp();
  const out = new Uint32Array(2);
  // Published XXH64 values (seed 0).
  n.xxh64Into(new Uint8Array(0), out);
  assert.equal(digestOf(out), 0xef46db3751d8e999n);
  n.xxh64Into(new TextEncoder().encode('abc'), out);
  assert.equal(digestOf(out), 0x44bc2cf5ad770999n);
  const bytes = randomBlock(7);
  for (let len = 0; len <= 100; len++) {
    n.xxh64Into(bytes.subarray(0, len), out);
    assert.equal(digestOf(out), xxhash.xxh64(bytes.subarray(0, len)), `length ${len}`);
  }
});

test('native xxh64 equals @node-rs/xxhash on random data of random lengths and offsets', () => {
  const n = fp();
  const out = new Uint32Array(2);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 9000 }), fc.nat(7), (src, skip) => {
      const view = src.subarray(Math.min(skip, src.length)); // unaligned starts too
      n.xxh64Into(view, out);
      assert.equal(digestOf(out), xxhash.xxh64(view));
    }),
    { numRuns: 300 },
  );
});

test('fingerprintBlocks hashes every non-zero block of a chunk as xxh64 does and flags the all-zero ones', () => {
  const n = fp();
  const blocks = [randomBlock(1), new Uint8Array(BLOCK), compressibleBlock(2), randomBlock(1), new Uint8Array(BLOCK)];
  const chunk = new Uint8Array(blocks.length * BLOCK);
  blocks.forEach((b, k) => chunk.set(b, k * BLOCK));
  const out = new Uint32Array(2 * blocks.length).fill(0xdeadbeef);
  const zero = new Uint8Array(blocks.length).fill(7);
  assert.equal(n.fingerprintBlocks(chunk, BLOCK, out, zero), 3);
  assert.deepEqual([...zero], [0, 1, 0, 0, 1]);
  for (const k of [0, 2, 3]) assert.equal(digestOf(out, 2 * k), xxhash.xxh64(blocks[k]!));
  for (const k of [1, 4]) assert.deepEqual([out[2 * k], out[2 * k + 1]], [0, 0]);
});

test('fingerprintBlocks with no digest array only tests for zero blocks, a single non-zero byte anywhere included', () => {
  const n = fp();
  const chunk = new Uint8Array(4 * BLOCK);
  chunk[BLOCK] = 1; // block 1: first byte
  chunk[3 * BLOCK - 1] = 0x80; // block 2: last byte
  const zero = new Uint8Array(4);
  assert.equal(n.fingerprintBlocks(chunk, BLOCK, null, zero), 2);
  assert.deepEqual([...zero], [1, 0, 0, 1]);
  assert.equal(n.fingerprintBlocks(new Uint8Array(0), BLOCK, null, zero), 0);
});

test('fingerprintBlocks refuses a partial block and arrays too short for the chunk, with a RangeError', () => {
  const n = fp();
  assert.throws(() => n.fingerprintBlocks(new Uint8Array(BLOCK + 1), BLOCK, null, new Uint8Array(2)), RangeError);
  assert.throws(() => n.fingerprintBlocks(new Uint8Array(2 * BLOCK), BLOCK, null, new Uint8Array(1)), RangeError);
  assert.throws(() => n.fingerprintBlocks(new Uint8Array(2 * BLOCK), BLOCK, new Uint32Array(3), new Uint8Array(2)), RangeError);
  assert.throws(() => n.fingerprintBlocks(new Uint8Array(BLOCK), 0, null, new Uint8Array(1)), RangeError);
  assert.throws(() => n.fingerprintBlocks(new Uint8Array(BLOCK), BLOCK, new Int32Array(2) as unknown as Uint32Array, new Uint8Array(1)), TypeError);
});
