import { test } from 'node:test';
import assert from 'node:assert/strict';
import xxhash from '@node-rs/xxhash';
import { hasherFor } from '../../src/functions/dedup/hash.ts';
import { randomBlock } from './data.ts';

test('an xxh64 fingerprint keeps its split: hi holds the low 32 bits and lo the high 32 bits, as index tags on disk do', () => {
  const h = hasherFor('xxh64');
  for (let seed = 1; seed <= 64; seed++) {
    const block = randomBlock(seed);
    const x = xxhash.xxh64(block);
    assert.deepEqual(h(block), { hi: Number(x & 0xffffffffn), lo: Number(x >> 32n) });
  }
  assert.deepEqual(h(new Uint8Array(4096)), { hi: 853064667, lo: 2894502767 }); // 0xac869b6f32d8bbdb
});
