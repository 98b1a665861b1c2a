import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Ctl, createRegion, queueOffsets, regionLayout } from '../../src/queue/layout.ts';
import { BufferPool } from '../../src/queue/buffer-pool.ts';
import { StorvisorError } from '../../src/util/errors.ts';

test('a 256-entry queue uses the virtio split-ring offsets and alignments', () => {
  // desc 16*256 = 4096; avail 6 + 512 = 518 -> used at 8712 (4-aligned); used 6 + 2048 -> data at 12288.
  assert.deepEqual(queueOffsets(256), { descOffset: 4096, availOffset: 8192, usedOffset: 8712, dataOffset: 12288 });
});

test('regionLayout reads back what createRegion wrote', () => {
  const region = createRegion({ queueSize: 64, dataBytes: 100_000, mode: 'notify', capacityBytes: 1 << 20 });
  const layout = regionLayout(region);
  assert.equal(layout.queueSize, 64);
  assert.equal(layout.mode, 'notify');
  assert.equal(layout.capacityBytes, 1 << 20);
  assert.equal(layout.blkSize, 4096);
  assert.equal(layout.dataOffset % 4096, 0);
  assert.equal(layout.dataBytes, 102_400);
  assert.equal(layout.dataOffset + layout.dataBytes, region.byteLength);
  assert.ok(region instanceof SharedArrayBuffer);
});

test('a capacity of 2^32 sectors or more is stored in two u32 words', () => {
  const capacityBytes = (3 * 2 ** 32 + 5) * 512; // 6 TiB and change: only the size is recorded
  const region = createRegion({ queueSize: 2, dataBytes: 4096, capacityBytes });
  const ctl = new Int32Array(region, 0, 64);
  assert.equal(ctl[Ctl.capacityHi], 3);
  assert.equal(ctl[Ctl.capacityLo], 5);
  assert.equal(regionLayout(region).capacityBytes, capacityBytes);
});

for (const queueSize of [0, 1, 3, 100, 65536]) {
  test(`createRegion rejects queue size ${queueSize} with EINVAL`, () => {
    assert.throws(() => createRegion({ queueSize, dataBytes: 4096, capacityBytes: 4096 }),
      (err: unknown) => err instanceof StorvisorError && err.errno === 'EINVAL' && /queueSize/.test(err.message));
  });
}

test('createRegion rejects a capacity that is not a multiple of 512', () => {
  assert.throws(() => createRegion({ dataBytes: 4096, capacityBytes: 1000 }), { code: 'SV_ERR_INVALID_ARGUMENT' });
});

test('regionLayout rejects a buffer without the magic', () => {
  assert.throws(() => regionLayout(new SharedArrayBuffer(65536)), { message: 'region has no storvisor queue magic' });
});

test('regionLayout rejects a region whose size does not match its data area', () => {
  const region = createRegion({ queueSize: 4, dataBytes: 8192, capacityBytes: 4096 });
  new Int32Array(region)[Ctl.dataBytes] = 4096;
  assert.throws(() => regionLayout(region), { message: 'region data area does not match its size' });
});

test('the buffer pool never hands out overlapping buffers and returns every byte on release', () => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 20_000 }), fc.nat()), { maxLength: 200 }), (ops) => {
    const pool = new BufferPool(4096, 4096 + 65536);
    const live: Array<[number, number]> = [];
    for (const [alloc, bytes, pick] of ops) {
      if (alloc || live.length === 0) {
        const at = pool.alloc(bytes);
        if (at === null) continue;
        const size = Math.ceil(bytes / 512) * 512;
        assert.ok(at >= 4096 && at + size <= 4096 + 65536);
        for (const [s, l] of live) assert.ok(at + size <= s || s + l <= at, 'overlap');
        live.push([at, size]);
      } else {
        const [at, size] = live.splice(pick % live.length, 1)[0]!;
        pool.release(at, size);
      }
    }
    for (const [at, size] of live) pool.release(at, size);
    assert.equal(pool.freeBytes(), 65536);
    assert.equal(pool.alloc(65536), 4096); // fully coalesced
  }));
});

test('buffers of one size kept aside for reuse still coalesce when a larger buffer needs the space', () => {
  const pool = new BufferPool(4096, 4096 + 65536);
  const taken: number[] = [];
  for (let i = 0; i < 16; i++) taken.push(pool.alloc(4096)!);
  assert.equal(pool.alloc(512), null, 'the pool is full');
  for (const at of taken) pool.release(at, 4096);
  // The same size comes straight back from the ones kept aside...
  const again = pool.alloc(4096)!;
  assert.ok(taken.includes(again));
  pool.release(again, 4096);
  // ...and a whole-pool buffer finds them merged back into one extent.
  assert.equal(pool.alloc(65536), 4096);
  assert.equal(pool.freeBytes(), 0);
  pool.release(4096, 65536);
  assert.equal(pool.freeBytes(), 65536);
});
