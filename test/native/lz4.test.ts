import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { crc32 } from 'node:zlib';
import { native, nativeLz4 } from '../../src/native/addon.ts';
import { codecFor, MAX_FRAGMENT, Packer } from '../../src/functions/dedup/fragments.ts';
import { MAX_SLOTS } from '../../src/functions/dedup/format.ts';
import { lz4Compress, lz4Decompress } from '../../src/functions/dedup/lz4.ts';
import { randomBlock, compressibleBlock, BLOCK } from '../dedup/data.ts';

// .ci/run installs liblz4-dev, so on Linux the addon must carry LZ4: a build that silently
// fell back to the TypeScript LZ4 fails here instead of passing untested.
const lz4 = (): NonNullable<typeof nativeLz4> => {
  assert.ok(nativeLz4, 'the native addon was built without liblz4 (apt-get install liblz4-dev, then npm ci)');
  return nativeLz4;
};

const bound = (n: number) => n + Math.ceil(n / 255) + 16;

/** A block with runs, repeats and noise: exercises long literals, long matches and overlapping copies. */
const mixed = fc
  .array(fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 900 })).map(([b, n]) => new Uint8Array(n).fill(b))), { maxLength: 30 })
  .map((parts) => {
    const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
    let at = 0;
    for (const p of parts) (out.set(p, at), (at += p.length));
    return out;
  });

test('what liblz4 compresses, the TypeScript LZ4 decompresses to the same bytes', () => {
  const n = lz4();
  fc.assert(
    fc.property(fc.oneof(mixed, fc.uint8Array({ maxLength: 5000 })), (src) => {
      const dst = new Uint8Array(bound(src.length));
      const len = n.lz4Compress(src, dst);
      assert.ok(len > 0);
      const out = new Uint8Array(src.length);
      assert.equal(lz4Decompress(dst.subarray(0, len), out), src.length);
      assert.deepEqual(out, src);
    }),
    { numRuns: 300 },
  );
});

test('what the TypeScript LZ4 compresses, liblz4 decompresses to the same bytes', () => {
  const n = lz4();
  fc.assert(
    fc.property(fc.oneof(mixed, fc.uint8Array({ maxLength: 5000 })), (src) => {
      const dst = new Uint8Array(bound(src.length));
      const len = lz4Compress(src, dst);
      assert.ok(len > 0);
      const out = new Uint8Array(src.length);
      assert.equal(n.lz4Decompress(dst.subarray(0, len), out), src.length);
      assert.deepEqual(out, src);
    }),
    { numRuns: 300 },
  );
});

test('native compression returns 0 when the result does not fit the destination', () => {
  const n = lz4();
  const small = new Uint8Array(2020);
  assert.equal(n.lz4Compress(randomBlock(3), small), 0);
  const len = n.lz4Compress(compressibleBlock(3), small);
  assert.ok(len > 0 && len < 200, `compressed to ${len}`);
});

test('native decompression of malformed input returns -1 and never writes past the destination', () => {
  const n = lz4();
  const out = new Uint8Array(BLOCK + 16).fill(0xee);
  const view = out.subarray(0, BLOCK);
  assert.equal(n.lz4Decompress(new Uint8Array([]), view), -1);
  assert.equal(n.lz4Decompress(new Uint8Array([0xf0]), view), -1);
  assert.equal(n.lz4Decompress(new Uint8Array([0x10, 65, 5, 0]), view), -1);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (junk) => {
      const r = n.lz4Decompress(junk, view);
      assert.ok(r >= -1 && r <= BLOCK);
    }),
    { numRuns: 500 },
  );
  assert.ok(out.subarray(BLOCK).every((b) => b === 0xee), 'bytes past the destination view are untouched');
});

test('the batch call compresses the listed blocks into their slots and reports each length', () => {
  const n = lz4();
  const src = new Uint8Array(4 * BLOCK);
  src.set(compressibleBlock(1), 0);
  src.set(randomBlock(2), BLOCK);
  src.set(compressibleBlock(3), 2 * BLOCK);
  src.set(compressibleBlock(4), 3 * BLOCK);
  const slot = 2020;
  const which = Int32Array.from([3, 1, 0]);
  const dst = new Uint8Array(3 * slot);
  const lengths = new Int32Array(3);
  assert.equal(n.lz4CompressBlocks(src, BLOCK, which, 3, dst, slot, lengths), 2);
  assert.equal(lengths[1], 0, 'the random block does not fit a slot');
  for (const [k, i] of [[0, 3], [2, 0]] as const) {
    const out = new Uint8Array(BLOCK);
    assert.equal(lz4Decompress(dst.subarray(k * slot, k * slot + lengths[k]!), out), BLOCK);
    assert.deepEqual(out, src.subarray(i * BLOCK, (i + 1) * BLOCK));
  }
});

test('the batch call refuses indexes and counts outside its buffers with a RangeError', () => {
  const n = lz4();
  const src = new Uint8Array(2 * BLOCK);
  const dst = new Uint8Array(2 * 2020);
  const lengths = new Int32Array(2);
  assert.throws(() => n.lz4CompressBlocks(src, BLOCK, Int32Array.from([2]), 1, dst, 2020, lengths), RangeError);
  assert.throws(() => n.lz4CompressBlocks(src, BLOCK, Int32Array.from([-1]), 1, dst, 2020, lengths), RangeError);
  assert.throws(() => n.lz4CompressBlocks(src, BLOCK, Int32Array.from([0, 1, 0]), 3, dst, 2020, lengths), RangeError);
  assert.throws(() => n.lz4CompressBlocks(src, BLOCK, Int32Array.from([0, 1]), 2, dst, 4096, lengths), RangeError);
  assert.throws(() => n.lz4Compress('x' as unknown as Uint8Array, dst), TypeError);
});

// ---- lz4VerifyFragment: the dedup volume's duplicate verify in one call (#12)

/** A packed block holding liblz4 fragments of `blocks`, in slot order. */
function packed(blocks: Uint8Array[]): Uint8Array {
  const n = lz4();
  const p = new Packer(1);
  for (const b of blocks) {
    const dst = new Uint8Array(MAX_FRAGMENT);
    const len = n.lz4Compress(b, dst);
    assert.ok(len > 0);
    p.add(dst.subarray(0, len));
  }
  return p.buf.slice();
}

const verify = (block: Uint8Array, slot: number, data: Uint8Array): number => {
  const fn = native?.lz4VerifyFragment;
  assert.ok(fn, 'the addon carries lz4VerifyFragment');
  return fn(block, data, slot, MAX_SLOTS);
};

test('the native verify says 1 when a packed fragment decompresses to exactly the candidate block', () => {
  const blocks = [compressibleBlock(11), compressibleBlock(12), compressibleBlock(13)];
  const block = packed(blocks);
  for (let slot = 0; slot < blocks.length; slot++) assert.equal(verify(block, slot, blocks[slot]!), 1);
});

test('the native verify says 0 when the fragment decompresses to other bytes, even one byte off', () => {
  const blocks = [compressibleBlock(21), compressibleBlock(22)];
  const block = packed(blocks);
  assert.equal(verify(block, 0, blocks[1]!), 0);
  const near = blocks[0]!.slice();
  near[BLOCK - 1] ^= 1;
  assert.equal(verify(block, 0, near), 0);
  assert.equal(verify(block, 0, randomBlock(5)), 0);
});

test('the native verify refuses an unreadable fragment: bad magic, missing slot, bounds, checksum, or LZ4 that is not one block', () => {
  const data = compressibleBlock(31);
  const good = packed([data, compressibleBlock(32)]);
  const view = new DataView(good.buffer, good.byteOffset);
  const off = view.getUint16(8, true);
  const len = view.getUint16(10, true);
  const corrupt = (f: (b: Uint8Array, v: DataView) => void): Uint8Array => {
    const b = good.slice();
    f(b, new DataView(b.buffer));
    return b;
  };
  assert.equal(verify(corrupt((b) => (b[0] ^= 0xff)), 0, data), -1, 'bad magic');
  assert.equal(verify(good, 2, data), -2, 'a slot past the count');
  assert.equal(verify(corrupt((_, v) => v.setUint16(4, MAX_SLOTS + 1, true)), 0, data), -2, 'a count past MAX_SLOTS');
  assert.equal(verify(corrupt((_, v) => v.setUint16(10, BLOCK, true)), 0, data), -3, 'a length past the block');
  assert.equal(verify(corrupt((_, v) => v.setUint16(8, 4, true)), 0, data), -3, 'an offset inside the slot table');
  assert.equal(verify(corrupt((_, v) => v.setUint32(12, v.getUint32(12, true) ^ 1, true)), 0, data), -4, 'the slot checksum');
  assert.equal(verify(corrupt((b) => (b[off + (len >> 1)] ^= 0x55)), 0, data), -4, 'a fragment byte: the checksum catches it first');
  // A fragment whose checksum matches but which is not LZ4 for one block.
  const junk = corrupt((b, v) => {
    b.fill(0xf0, off, off + len);
    v.setUint32(12, crc32(b.subarray(off, off + len)), true);
  });
  assert.equal(verify(junk, 0, data), -5);
  assert.equal(verify(good, 1, data.subarray(0, 100)), -5, 'a candidate that is not one block never matches');
});

test('the native verify agrees with fragmentOf, decompress and compare on random corruption', () => {
  const blocks = [compressibleBlock(41), compressibleBlock(42), compressibleBlock(43)];
  const good = packed(blocks);
  const js = codecFor('lz4', 'js')!;
  fc.assert(
    fc.property(fc.integer({ min: 0, max: BLOCK - 1 }), fc.integer({ min: 1, max: 255 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 2 }), (at, x, slot, which) => {
      const b = good.slice();
      b[at] ^= x;
      const n = verify(b, slot, blocks[which]!);
      assert.equal(n === 1, js.fragmentEquals(b, slot, blocks[which]!));
      assert.equal(n === 1, codecFor('lz4', 'native')!.fragmentEquals(b, slot, blocks[which]!));
    }),
    { numRuns: 500 },
  );
});

test('the native verify refuses arguments that are not a packed block, a slot and a block with a TypeError or RangeError', () => {
  const fn = native!.lz4VerifyFragment!;
  assert.throws(() => fn('x' as unknown as Uint8Array, new Uint8Array(BLOCK), 0, MAX_SLOTS), TypeError);
  assert.throws(() => fn(new Uint8Array(BLOCK), new Uint8Array(BLOCK), 'x' as unknown as number, MAX_SLOTS), TypeError);
  assert.throws(() => (fn as (...a: unknown[]) => number)(new Uint8Array(BLOCK), new Uint8Array(BLOCK), 0), TypeError);
  assert.throws(() => fn(new Uint8Array(BLOCK), new Uint8Array(BLOCK), -1, MAX_SLOTS), RangeError);
  assert.throws(() => fn(new Uint8Array(BLOCK), new Uint8Array(2 * BLOCK), 0, MAX_SLOTS), RangeError);
});

test('the native verify accepts exactly the LZ4 streams liblz4 decodes to the candidate, over mutated and truncated fragments', () => {
  const n = lz4();
  // Blocks of runs, repeats and noise (long literals, long and overlapping matches), 4 KiB each.
  const blockArb = mixed.map((m) => {
    const b = new Uint8Array(BLOCK);
    b.set(m.subarray(0, BLOCK));
    return b;
  });
  const edit = fc.oneof(
    fc.constant(null),
    fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })),
    fc.tuple(fc.nat(), fc.constant(0)), // truncate at
  );
  fc.assert(
    fc.property(blockArb, edit, fc.nat({ max: BLOCK - 1 }), fc.boolean(), (data, change, flip, flipCandidate) => {
      const dst = new Uint8Array(bound(BLOCK));
      let frag = dst.subarray(0, n.lz4Compress(data, dst));
      if (change) {
        const at = change[0] % frag.length;
        frag = change[1] === 0 ? frag.subarray(0, Math.max(1, at)) : frag.slice();
        if (change[1] !== 0) frag[at] ^= change[1];
      }
      if (frag.length > MAX_FRAGMENT) return; // does not fit a packed block
      const candidate = data.slice();
      if (flipCandidate) candidate[flip] ^= 0x01;
      const p = new Packer(1);
      p.add(frag); // a valid checksum over whatever the fragment now holds: the LZ4 check decides
      const out = new Uint8Array(BLOCK);
      const decodes = n.lz4Decompress(frag, out) === BLOCK && Buffer.from(out).equals(candidate);
      const r = verify(p.buf, 0, candidate);
      if (r === 1) assert.ok(decodes, 'the verify accepted a stream liblz4 does not decode to the candidate');
      if (!change) assert.equal(r === 1, decodes, 'an intact stream is accepted exactly when it decodes to the candidate');
    }),
    { numRuns: 3000 },
  );
});
