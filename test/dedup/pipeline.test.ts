import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import type { WriteFlags } from '../../src/block/types.ts';
import { DedupVolume, type DedupVolumeOptions } from '../../src/functions/dedup/volume.ts';
import { computeLayout } from '../../src/functions/dedup/format.ts';
import { poolOf } from '../../src/functions/dedup/pool.ts';
import { BLOCK, compressibleBlock, randomBlock } from './data.ts';
import { nativeLz4 } from '../../src/native/addon.ts';

const MiB = 1 << 20;
const opts = (o: Partial<DedupVolumeOptions> = {}): DedupVolumeOptions => ({
  logicalSize: 16 * MiB,
  compression: 'lz4',
  dedup: true,
  log: () => {},
  ...o,
});

/** Wait (bounded) until `cond` holds, yielding to the event loop between looks. */
async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

/** Holds every data-area pwrite until the test releases it, so concurrency is visible. */
class GatedDevice extends MemoryBlockDevice {
  readonly held: Array<() => void> = [];
  constructor(
    size: number,
    private readonly dataFrom: number,
  ) {
    super(size);
  }
  override async pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags): Promise<void> {
    if (offset >= this.dataFrom) await new Promise<void>((r) => this.held.push(r));
    return super.pwrite(buf, offset, flags);
  }
  releaseOne(): void {
    this.held.shift()!();
  }
}

test('a large write of compressible blocks is compressed by the worker pool and reads back', async () => {
  await poolOf(1).warm();
  // The TypeScript LZ4 goes to the pool; liblz4 runs inline (next test).
  const vol = await DedupVolume.open(new MemoryBlockDevice(8 * MiB), opts({ workers: 1, lz4Engine: 'js' }));
  const data = new Uint8Array(64 * BLOCK);
  for (let i = 0; i < 64; i++) data.set(compressibleBlock(500 + i), i * BLOCK);
  await vol.pwrite(data, 0);
  const s = vol.stats();
  assert.equal(s.compressedBlocks, 64);
  // The write is cut into chunks that fit one journal transaction; a tail chunk under 8 blocks stays inline.
  assert.ok(s.compressedInWorkers! >= 56, `${s.compressedInWorkers} of 64 blocks compressed in the worker`);
  assert.equal(s.fragmentsStored, 64);
  const back = new Uint8Array(64 * BLOCK);
  await vol.pread(back, 0);
  assert.deepEqual(back, data);
  assert.deepEqual(await vol.check(), { ok: true, problems: [] });
});

test('with liblz4 a large write is compressed inline on the request thread and reads back', async () => {
  assert.ok(nativeLz4, 'the native addon was built without liblz4 (apt-get install liblz4-dev, then npm ci)');
  await poolOf(1).warm();
  const vol = await DedupVolume.open(new MemoryBlockDevice(8 * MiB), opts({ workers: 1 }));
  const data = new Uint8Array(64 * BLOCK);
  for (let i = 0; i < 64; i++) data.set(compressibleBlock(700 + i), i * BLOCK);
  await vol.pwrite(data, 0);
  const s = vol.stats();
  assert.equal(s.compressedBlocks, 64);
  assert.equal(s.compressedInWorkers, 0);
  assert.equal(s.fragmentsStored, 64);
  const back = new Uint8Array(64 * BLOCK);
  await vol.pread(back, 0);
  assert.deepEqual(back, data);
  assert.deepEqual(await vol.check(), { ok: true, problems: [] });
});

test('a volume written with the TypeScript LZ4 reads back with liblz4, and the other way round', async () => {
  const dev = new MemoryBlockDevice(8 * MiB);
  const a = new Uint8Array(32 * BLOCK);
  const b = new Uint8Array(32 * BLOCK);
  for (let i = 0; i < 32; i++) (a.set(compressibleBlock(900 + i), i * BLOCK), b.set(compressibleBlock(950 + i), i * BLOCK));
  let vol = await DedupVolume.open(dev, opts({ lz4Engine: 'js' }));
  await vol.pwrite(a, 0);
  await vol.close();
  vol = await DedupVolume.open(dev, opts({ lz4Engine: 'native' }));
  const back = new Uint8Array(32 * BLOCK);
  await vol.pread(back, 0);
  assert.deepEqual(back, a);
  await vol.pwrite(b, 32 * BLOCK);
  await vol.close();
  vol = await DedupVolume.open(dev, opts({ lz4Engine: 'js' }));
  await vol.pread(back, 32 * BLOCK);
  assert.deepEqual(back, b);
  assert.deepEqual(await vol.check(), { ok: true, problems: [] });
  await vol.close();
});

test('a one-block write is compressed inline: the hop to a worker would cost more than the work', async () => {
  await poolOf(1).warm();
  const vol = await DedupVolume.open(new MemoryBlockDevice(8 * MiB), opts({ workers: 1 }));
  await vol.pwrite(compressibleBlock(7), 0);
  const s = vol.stats();
  assert.equal(s.compressedBlocks, 1);
  assert.equal(s.compressedInWorkers, 0);
});

test('writes to different blocks have their data writes in flight together', async () => {
  const layout = computeLayout(8 * MiB, 16 * MiB, 'none', false);
  const dev = new GatedDevice(8 * MiB, layout.dataStart * BLOCK);
  const vol = await DedupVolume.open(dev, opts({ compression: 'none', dedup: false }));
  const writes = Array.from({ length: 8 }, (_, i) => vol.pwrite(randomBlock(i + 1), i * 7 * BLOCK));
  await until(() => dev.held.length === 8, 'eight data writes in flight');
  while (dev.held.length > 0) dev.releaseOne();
  await Promise.all(writes);
  for (let i = 0; i < 8; i++) {
    const b = new Uint8Array(BLOCK);
    await vol.pread(b, i * 7 * BLOCK);
    assert.deepEqual(b, randomBlock(i + 1));
  }
});

test('writes to the same block run one at a time, in arrival order', async () => {
  const layout = computeLayout(8 * MiB, 16 * MiB, 'none', false);
  const dev = new GatedDevice(8 * MiB, layout.dataStart * BLOCK);
  const vol = await DedupVolume.open(dev, opts({ compression: 'none', dedup: false }));
  const writes = Array.from({ length: 4 }, (_, i) => vol.pwrite(randomBlock(i + 1), 3 * BLOCK));
  const reader = new Uint8Array(BLOCK);
  const read = vol.pread(reader, 3 * BLOCK); // issued after the writes: must see the last one
  for (let i = 0; i < 4; i++) {
    await until(() => dev.held.length > 0, `write ${i} in flight`);
    for (let k = 0; k < 20; k++) await new Promise((r) => setImmediate(r));
    assert.equal(dev.held.length, 1, 'only one data write to the block at a time');
    dev.releaseOne();
  }
  await Promise.all([...writes, read]);
  assert.deepEqual(reader, randomBlock(4));
});

test('concurrent FUA writes are made durable by fewer journal commits than writes (group commit)', async () => {
  const backing = new MemoryBlockDevice(8 * MiB);
  const vol = await DedupVolume.open(backing, opts());
  const before = vol.stats().commits!;
  await Promise.all(Array.from({ length: 16 }, (_, i) => vol.pwrite(randomBlock(100 + i), i * BLOCK, { fua: true })));
  const s = vol.stats();
  assert.ok(s.commits! - before < 16, `${s.commits! - before} commits for 16 FUA writes`);
  assert.ok(s.groupedFlushes! > 0);
  // What a crash right now would leave: every acknowledged block.
  const crashed = new MemoryBlockDevice(8 * MiB);
  crashed.bytes.set(backing.bytes);
  const again = await DedupVolume.open(crashed, opts());
  for (let i = 0; i < 16; i++) {
    const b = new Uint8Array(BLOCK);
    await again.pread(b, i * BLOCK);
    assert.deepEqual(b, randomBlock(100 + i), `block ${i}`);
  }
  assert.deepEqual(await again.check(), { ok: true, problems: [] });
});

test('concurrent writes of the same new bytes to different blocks store them once', async () => {
  const vol = await DedupVolume.open(new MemoryBlockDevice(8 * MiB), opts({ compression: 'none' }));
  await Promise.all(Array.from({ length: 12 }, (_, i) => vol.pwrite(randomBlock(77), i * 3 * BLOCK)));
  const s = vol.stats();
  assert.equal(s.mappedBlocks, 12);
  assert.equal(s.physicalBlocksUsed, 1);
  assert.deepEqual(await vol.check(), { ok: true, problems: [] });
});

test('a sequential read of raw and packed blocks written together costs one backing read', async () => {
  const layout = computeLayout(8 * MiB, 16 * MiB, 'lz4', true);
  class Counting extends MemoryBlockDevice {
    dataReads = 0;
    override async pread(buf: Uint8Array, offset: number): Promise<void> {
      if (offset >= layout.dataStart * BLOCK) this.dataReads++;
      return super.pread(buf, offset);
    }
  }
  const dev = new Counting(8 * MiB);
  const data = new Uint8Array(32 * BLOCK);
  for (let i = 0; i < 32; i++) data.set(i % 2 ? compressibleBlock(900 + i) : randomBlock(900 + i), i * BLOCK);
  const vol = await DedupVolume.open(dev, opts({ workers: 0 }));
  await vol.pwrite(data, 0);
  await vol.close();
  const again = await DedupVolume.open(dev, opts({ workers: 0 })); // nothing cached
  const back = new Uint8Array(32 * BLOCK);
  dev.dataReads = 0;
  await again.pread(back, 0);
  assert.deepEqual(back, data);
  assert.equal(dev.dataReads, 1);
});

test('concurrent overlapping writes, zeroes, trims, reads and flushes behave as if run one by one in arrival order', async () => {
  const LOGICAL = 256;
  const backing = new MemoryBlockDevice(8 * MiB);
  const vol = await DedupVolume.open(backing, opts({ logicalSize: LOGICAL * BLOCK, workers: 1, cacheBytes: 1 * MiB }));
  const model = new Uint8Array(LOGICAL * BLOCK);
  const r = (await import('./data.ts')).prng(2024);
  const pool = Array.from({ length: 24 }, (_, i) => (i % 3 === 0 ? randomBlock(3000 + i) : compressibleBlock(3000 + i)));
  const checks: Array<{ got: Uint8Array; want: Uint8Array; what: string }> = [];
  for (let burst = 0; burst < 40; burst++) {
    const ops: Promise<unknown>[] = [];
    for (let k = 0; k < 16; k++) {
      const x = r();
      const count = 1 + Math.floor(r() * 12);
      const lbn = Math.floor(r() * (LOGICAL - count));
      const skew = r() < 0.2 ? 512 : 0; // some unaligned requests
      const offset = lbn * BLOCK + skew;
      const length = count * BLOCK - skew;
      if (x < 0.45) {
        const buf = new Uint8Array(count * BLOCK);
        for (let b = 0; b < count; b++) buf.set(pool[Math.floor(r() * pool.length)]!, b * BLOCK);
        const data = buf.subarray(0, length);
        model.set(data, offset);
        ops.push(vol.pwrite(data, offset, { fua: r() < 0.1 }));
      } else if (x < 0.55) {
        model.fill(0, offset, offset + length);
        ops.push(vol.zero(offset, length));
      } else if (x < 0.62) {
        // trim unmaps whole blocks only: they read as zeroes
        const first = Math.ceil(offset / BLOCK);
        const last = Math.floor((offset + length) / BLOCK);
        if (last > first) model.fill(0, first * BLOCK, last * BLOCK);
        ops.push(vol.trim(offset, length));
      } else if (x < 0.68) {
        ops.push(vol.flush());
      } else {
        const got = new Uint8Array(length);
        checks.push({ got, want: model.slice(offset, offset + length), what: `read of ${length} bytes at ${offset} in burst ${burst}` });
        ops.push(vol.pread(got, offset));
      }
    }
    await Promise.all(ops);
  }
  for (const c of checks) assert.deepEqual(c.got, c.want, c.what);
  const all = new Uint8Array(LOGICAL * BLOCK);
  await vol.pread(all, 0);
  assert.deepEqual(all, model);
  assert.deepEqual(await vol.check(), { ok: true, problems: [] });
});

/** Counts reads of the data area, and holds them while `holding`. */
class ReadCountingDevice extends MemoryBlockDevice {
  dataReads = 0;
  holding = false;
  readonly held: Array<() => void> = [];
  constructor(
    size: number,
    private readonly dataFrom: number,
  ) {
    super(size);
  }
  override async pread(buf: Uint8Array, offset: number): Promise<void> {
    if (offset >= this.dataFrom) {
      this.dataReads++;
      if (this.holding) await new Promise<void>((r) => this.held.push(r));
    }
    return super.pread(buf, offset);
  }
}

/** A volume whose recent-block memory no longer holds block A (written at lbn 0): 80 other blocks came after it. */
async function evictedDuplicateSetup(compression: 'none' | 'lz4' = 'none') {
  const o = opts({ compression, cacheBytes: 1 * MiB });
  const layout = computeLayout(8 * MiB, o.logicalSize, compression, true);
  const dev = new ReadCountingDevice(8 * MiB, layout.dataStart * BLOCK);
  const vol = await DedupVolume.open(dev, o);
  const a = compression === 'none' ? randomBlock(4242) : compressibleBlock(4242); // raw, or a fragment in a packed block
  await vol.pwrite(a, 0);
  await vol.pwrite(randomBlock(4243), BLOCK);
  await vol.flush(); // seals the packed block before the blocks that push it out of memory
  for (let i = 0; i < 80; i++) await vol.pwrite(randomBlock(5000 + i), (100 + i) * BLOCK);
  await vol.flush();
  dev.dataReads = 0;
  return { dev, vol, a };
}

for (const [what, codec, filler] of [
  ['a block', undefined, 6000],
  ['a fragment whose packed block is', 'lz4', 6001],
] as const) {
  test(`a duplicate of ${what} no longer in memory is verified by one read made before the metadata steps`, async () => {
    const { dev, vol, a } = await evictedDuplicateSetup(codec);
    const hits = vol.stats().dedupHits!;
    dev.holding = true;
    const write = vol.pwrite(a, 2 * BLOCK);
    await until(() => dev.held.length === 1, 'the candidate read');
    // While that read is held, another write's metadata steps run: the mutex is not held by the read.
    await vol.pwrite(randomBlock(filler), 300 * BLOCK);
    dev.holding = false;
    dev.held.shift()!();
    await write;
    assert.equal(dev.dataReads, 1);
    assert.equal(vol.stats().dedupHits, hits + 1);
    const back = new Uint8Array(BLOCK);
    await vol.pread(back, 2 * BLOCK);
    assert.deepEqual(back, a);
    assert.deepEqual(await vol.check(), { ok: true, problems: [] });
  });
}

test('a prefetched candidate is read again when a commit made freed blocks reusable in the meantime', async () => {
  const { dev, vol, a } = await evictedDuplicateSetup();
  const hits = vol.stats().dedupHits!;
  dev.holding = true;
  const write = vol.pwrite(a, 2 * BLOCK);
  await until(() => dev.held.length === 1, 'the candidate read');
  await vol.pwrite(randomBlock(7000), BLOCK); // frees the block lbn 1 held
  await vol.flush(); // and makes it reusable: the prefetched bytes may no longer be trusted
  dev.holding = false;
  dev.held.shift()!();
  await write;
  assert.equal(dev.dataReads, 2, 'the candidate was read again under the metadata steps');
  assert.equal(vol.stats().dedupHits, hits + 1);
  const back = new Uint8Array(BLOCK);
  await vol.pread(back, 2 * BLOCK);
  assert.deepEqual(back, a);
  assert.deepEqual(await vol.check(), { ok: true, problems: [] });
});
