import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { lz4Compress, lz4Decompress } from '../../src/functions/dedup/lz4.ts';
import { randomBlock, compressibleBlock } from './data.ts';

const roundTrip = (src: Uint8Array): Uint8Array | null => {
  const dst = new Uint8Array(src.length + Math.ceil(src.length / 255) + 16);
  const n = lz4Compress(src, dst);
  if (n === 0) return null;
  const out = new Uint8Array(src.length);
  assert.equal(lz4Decompress(dst.subarray(0, n), out), src.length);
  return out;
};

test('any input round-trips through lz4 compress and decompress', () => {
  const repetitive = fc.array(fc.constantFrom(0, 1, 2, 97), { maxLength: 5000 }).map((a) => Uint8Array.from(a));
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 5000 }), repetitive), (src) => {
      assert.deepEqual(roundTrip(src), src);
    }),
    { numRuns: 300 },
  );
});

test('a compressible 4 KiB block shrinks below 160 bytes and random data does not fit a smaller buffer', () => {
  const dst = new Uint8Array(2036);
  const n = lz4Compress(compressibleBlock(1), dst);
  assert.ok(n > 0 && n < 160, `compressed to ${n}`);
  assert.equal(lz4Compress(randomBlock(1), dst), 0);
});

test('decompressing malformed input returns -1 instead of reading or writing out of bounds', () => {
  const out = new Uint8Array(4096);
  assert.equal(lz4Decompress(new Uint8Array([]), out), -1);
  assert.equal(lz4Decompress(new Uint8Array([0xf0]), out), -1); // literal length runs past the end
  assert.equal(lz4Decompress(new Uint8Array([0x10, 65, 5, 0]), out), -1); // match offset beyond output
  assert.equal(lz4Decompress(new Uint8Array([0x1f, 65, 1, 0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0]), out), -1); // overflows out
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (junk) => {
      const r = lz4Decompress(junk, out);
      assert.ok(r >= -1 && r <= out.length);
    }),
    { numRuns: 500 },
  );
});

test('compressBlocks gives every chosen block of a chunk the fragment compress gives it, and null where compress stores it raw', async () => {
  const { codecFor } = await import('../../src/functions/dedup/fragments.ts');
  const codec = codecFor('lz4', 'native')!;
  assert.ok(codec.compressBlocks, `liblz4 is built (${codec.engine})`);
  const n = 150; // more than one native batch of 64
  const data = new Uint8Array(n * 4096);
  for (let i = 0; i < n; i++) data.set(i % 3 === 0 ? randomBlock(i + 1) : compressibleBlock(i + 1), i * 4096);
  const which = Int32Array.from({ length: n }, (_, i) => i).filter((i) => i % 5 !== 2); // a few left out
  const out: Array<Uint8Array | null | undefined> = new Array(n).fill(undefined);
  codec.compressBlocks!(data, which, which.length, out);
  for (let i = 0; i < n; i++) {
    if (i % 5 === 2) {
      assert.equal(out[i], undefined, `block ${i} was not asked for`);
      continue;
    }
    const one = codec.compress(data.subarray(i * 4096, (i + 1) * 4096));
    assert.deepEqual(out[i], one, `block ${i}`);
  }
  assert.ok(out.some((f) => f === null) && out.some((f) => f instanceof Uint8Array), 'both raw and packed blocks');
});
