import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { BlockDeviceBase, capabilitiesOf } from '../../src/block/device.ts';
import { DedupVolume, type DedupVolumeOptions } from '../../src/functions/dedup/volume.ts';
import { computeLayout } from '../../src/functions/dedup/format.ts';
import { BLOCK, compressibleBlock, randomBlock, randomBytes, prng } from './data.ts';

const MiB = 1 << 20;
const opts = (o: Partial<DedupVolumeOptions> = {}): DedupVolumeOptions => ({
  logicalSize: 16 * MiB,
  compression: 'lz4',
  dedup: true,
  log: () => {},
  ...o,
});

async function fresh(backingBytes = 8 * MiB, o: Partial<DedupVolumeOptions> = {}) {
  const backing = new MemoryBlockDevice(backingBytes);
  const vol = await DedupVolume.open(backing, opts(o));
  return { backing, vol };
}

const read = async (vol: DedupVolume, offset: number, length: number) => {
  const b = new Uint8Array(length);
  await vol.pread(b, offset);
  return b;
};

test('random aligned and unaligned writes read back exactly like a plain device, before and after reopen', async () => {
  const { backing, vol } = await fresh();
  const ref = new MemoryBlockDevice(16 * MiB);
  const r = prng(7);
  for (let i = 0; i < 400; i++) {
    const offset = Math.floor(r() * (2 * MiB));
    const aligned = r() < 0.7;
    const off = aligned ? offset - (offset % BLOCK) : offset;
    const len = aligned ? BLOCK * (1 + Math.floor(r() * 6)) : 1 + Math.floor(r() * 3 * BLOCK);
    const data = r() < 0.4 ? compressibleBlock(Math.floor(r() * 8)).subarray(0, Math.min(len, BLOCK)) : randomBytes(i, len);
    const buf = new Uint8Array(len);
    for (let o = 0; o < len; o += data.length) buf.set(data.subarray(0, Math.min(data.length, len - o)), o);
    await vol.pwrite(buf, off);
    await ref.pwrite(buf, off);
    if (i % 97 === 0) await vol.flush();
  }
  assert.deepEqual(await read(vol, 0, 3 * MiB), ref.bytes.subarray(0, 3 * MiB));
  await vol.close();
  const again = await DedupVolume.open(backing, opts());
  assert.deepEqual(await read(again, 0, 3 * MiB), ref.bytes.subarray(0, 3 * MiB));
  assert.deepEqual(await again.check(), { ok: true, problems: [] });
});

test('identical blocks written to many addresses are stored once', async () => {
  const { vol } = await fresh();
  const block = randomBlock(1);
  for (let i = 0; i < 100; i++) await vol.pwrite(block, i * BLOCK);
  await vol.flush();
  const s = vol.stats();
  assert.equal(s.mappedBlocks, 100);
  assert.equal(s.physicalBlocksUsed, 1);
  assert.equal(s.dedupRatio, 100);
  assert.equal(s.dedupHits, 99);
});

test('distinct blocks are never shared: each reads back its own bytes', async () => {
  const { vol } = await fresh();
  for (let i = 0; i < 50; i++) await vol.pwrite(randomBlock(100 + i), i * BLOCK);
  for (let i = 0; i < 50; i++) assert.deepEqual(await read(vol, i * BLOCK, BLOCK), randomBlock(100 + i));
  assert.equal(vol.stats().physicalBlocksUsed, 50);
});

test('zero blocks are stored as nothing and read back as zeroes', async () => {
  const { vol } = await fresh();
  await vol.pwrite(new Uint8Array(64 * BLOCK), 0);
  await vol.flush();
  assert.equal(vol.stats().physicalBlocksUsed, 0);
  assert.equal(vol.stats().mappedBlocks, 0);
  assert.equal(vol.stats().zeroBlocksWritten, 64);
  assert.deepEqual(await read(vol, 0, 64 * BLOCK), new Uint8Array(64 * BLOCK));
});

test('compressible blocks are packed sixteen to a physical block', async () => {
  const { vol } = await fresh();
  for (let i = 0; i < 64; i++) await vol.pwrite(compressibleBlock(i), i * BLOCK);
  await vol.flush();
  assert.equal(vol.stats().physicalBlocksUsed, 4);
  assert.equal(vol.stats().compressionRatio, 16);
  for (let i = 0; i < 64; i++) assert.deepEqual(await read(vol, i * BLOCK, BLOCK), compressibleBlock(i));
  assert.deepEqual(await vol.check(), { ok: true, problems: [] });
});

test('deflate compression round-trips and packs like lz4', async () => {
  const { vol } = await fresh(8 * MiB, { compression: 'deflate' });
  for (let i = 0; i < 32; i++) await vol.pwrite(compressibleBlock(i), i * BLOCK);
  await vol.flush();
  assert.equal(vol.stats().physicalBlocksUsed, 2);
  for (let i = 0; i < 32; i++) assert.deepEqual(await read(vol, i * BLOCK, BLOCK), compressibleBlock(i));
});

test('a volume without dedup or compression stores every block raw', async () => {
  const { vol } = await fresh(8 * MiB, { compression: 'none', dedup: false });
  const block = compressibleBlock(3);
  for (let i = 0; i < 10; i++) await vol.pwrite(block, i * BLOCK);
  await vol.flush();
  assert.equal(vol.stats().physicalBlocksUsed, 10);
  assert.deepEqual(await read(vol, 9 * BLOCK, BLOCK), block);
});

test('overwritten and discarded blocks are reclaimed once the freeing is committed', async () => {
  const { vol } = await fresh();
  for (let i = 0; i < 32; i++) await vol.pwrite(randomBlock(i), i * BLOCK);
  await vol.flush();
  assert.equal(vol.stats().physicalBlocksUsed, 32);
  for (let i = 0; i < 16; i++) await vol.pwrite(randomBlock(1000 + i), i * BLOCK);
  await vol.trim(16 * BLOCK, 8 * BLOCK);
  await vol.zero(24 * BLOCK, 8 * BLOCK);
  await vol.flush();
  const s = vol.stats();
  assert.equal(s.physicalBlocksUsed, 16);
  assert.equal(s.mappedBlocks, 16);
  assert.equal(s.pendingFreeBlocks, 0);
  assert.deepEqual(await read(vol, 16 * BLOCK, 16 * BLOCK), new Uint8Array(16 * BLOCK));
  assert.deepEqual(await vol.check(), { ok: true, problems: [] });
});

test('a shared block survives until its last reference is gone', async () => {
  const { vol } = await fresh();
  const block = randomBlock(9);
  await vol.pwrite(block, 0);
  await vol.pwrite(block, BLOCK);
  await vol.trim(0, BLOCK);
  await vol.flush();
  assert.equal(vol.stats().physicalBlocksUsed, 1);
  assert.deepEqual(await read(vol, BLOCK, BLOCK), block);
  await vol.trim(BLOCK, BLOCK);
  await vol.flush();
  assert.equal(vol.stats().physicalBlocksUsed, 0);
});

test('zero of a partial block range zeroes exactly those bytes', async () => {
  const { vol } = await fresh();
  const data = randomBytes(5, 3 * BLOCK);
  await vol.pwrite(data, 0);
  await vol.zero(100, 2 * BLOCK + 50);
  const expect = data.slice();
  expect.fill(0, 100, 100 + 2 * BLOCK + 50);
  assert.deepEqual(await read(vol, 0, 3 * BLOCK), expect);
});

test('a write beyond the logical size is refused with ERANGE and changes nothing', async () => {
  const { vol } = await fresh();
  await assert.rejects(vol.pwrite(new Uint8Array(2 * BLOCK), 16 * MiB - BLOCK), {
    code: 'SV_ERR_OUT_OF_RANGE',
    errno: 'ERANGE',
    message: `request [${16 * MiB - BLOCK}, +${2 * BLOCK}) is outside the device (size ${16 * MiB})`,
  });
  await assert.rejects(vol.pread(new Uint8Array(1), -1), { errno: 'ERANGE' });
  await assert.rejects(vol.zero(16 * MiB, 1), { errno: 'ERANGE' });
  assert.equal(vol.stats().mappedBlocks, 0);
});

test('a full backing volume refuses the write with ENOSPC and leaves the old data in place', async () => {
  const backing = new MemoryBlockDevice(2 * MiB);
  const vol = await DedupVolume.open(backing, opts({ logicalSize: 8 * MiB }));
  const layout = computeLayout(2 * MiB, 8 * MiB, 'lz4', true);
  const free = layout.dataBlocks;
  // Fill all but 3 data blocks, then ask for 8 unique blocks in one request.
  for (let i = 0; i < free - 3; i++) await vol.pwrite(randomBlock(i), i * BLOCK);
  await vol.flush();
  const target = 1000 * BLOCK;
  const before = await read(vol, target, 8 * BLOCK);
  const big = new Uint8Array(8 * BLOCK);
  for (let k = 0; k < 8; k++) big.set(randomBlock(50_000 + k), k * BLOCK);
  await assert.rejects(vol.pwrite(big, target), {
    code: 'SV_ERR_NO_SPACE',
    errno: 'ENOSPC',
    message: 'dedup volume is full: the write needs 8 data block(s), 3 free',
  });
  assert.deepEqual(await read(vol, target, 8 * BLOCK), before);
  // Duplicates and zeroes still fit, and the volume is consistent.
  await vol.pwrite(randomBlock(0), target);
  await vol.pwrite(new Uint8Array(BLOCK), target + BLOCK);
  assert.deepEqual(await vol.check(), { ok: true, problems: [] });
});

test('space freed by overwrites is reused when the volume is full', async () => {
  const backing = new MemoryBlockDevice(2 * MiB);
  const vol = await DedupVolume.open(backing, opts({ logicalSize: 8 * MiB }));
  const live = computeLayout(2 * MiB, 8 * MiB, 'lz4', true).dataBlocks - 8;
  for (let round = 0; round < 4; round++) {
    for (let i = 0; i < live; i++) await vol.pwrite(randomBlock(round * 10_000 + i), i * BLOCK);
  }
  assert.deepEqual(await read(vol, 0, BLOCK), randomBlock(30_000));
  assert.deepEqual(await vol.check(), { ok: true, problems: [] });
});

test('reopening with different options is refused with a message naming them', async () => {
  const { backing, vol } = await fresh();
  await vol.close();
  await assert.rejects(DedupVolume.open(backing, opts({ logicalSize: 32 * MiB, compression: 'none' })), {
    errno: 'EINVAL',
    message: 'dedup volume was formatted with logicalSize=16777216, compression=lz4; opened with logicalSize=33554432, compression=none',
  });
});

test('a backing volume holding something else is never formatted over', async () => {
  const backing = new MemoryBlockDevice(8 * MiB);
  backing.bytes.set(new TextEncoder().encode('not a dedup volume'), 0);
  await assert.rejects(DedupVolume.open(backing, opts()), {
    errno: 'EINVAL',
    message: 'backing volume is not a dedup volume (bad magic); refusing to overwrite it',
  });
});

test('check reports a refcount that disagrees with the map', async () => {
  const { backing, vol } = await fresh();
  await vol.pwrite(randomBlock(1), 0);
  await vol.close();
  const layout = computeLayout(8 * MiB, 16 * MiB, 'lz4', true);
  // Bump block 0's refcount on disk and re-seal the page so only check() can notice.
  const { sealPage } = await import('../../src/functions/dedup/format.ts');
  const page = backing.bytes.subarray(layout.refStart * BLOCK, (layout.refStart + 1) * BLOCK);
  const v = new DataView(page.buffer, page.byteOffset, BLOCK);
  v.setUint32(16, v.getUint32(16, true) + 1, true);
  sealPage(page);
  const again = await DedupVolume.open(backing, opts());
  const result = await again.check();
  assert.equal(result.ok, false);
  assert.deepEqual(result.problems, [`block ${layout.dataStart}: refcount 2, but the map references it 1 time(s)`]);
});

test('operations after close fail with ESHUTDOWN', async () => {
  const { vol } = await fresh();
  await vol.close();
  await assert.rejects(vol.pread(new Uint8Array(BLOCK), 0), { errno: 'ESHUTDOWN', message: 'dedup volume is shut down' });
});

test('a block freed by an overwrite is not reused until the freeing is committed', async () => {
  const backing = new MemoryBlockDevice(2 * MiB);
  const o = opts({ logicalSize: 8 * MiB, compression: 'none' });
  const vol = await DedupVolume.open(backing, o);
  const dataBlocks = computeLayout(2 * MiB, 8 * MiB, 'none', true).dataBlocks;
  for (let i = 0; i < dataBlocks - 1; i++) await vol.pwrite(randomBlock(i), i * BLOCK);
  await vol.flush();
  await vol.pwrite(randomBlock(90_000), 0); // takes the last free block; frees block 0's old copy
  await vol.pwrite(randomBlock(90_001), BLOCK); // needs a block: only the freed one exists
  // A crash now: the backing holds exactly what a kill -9 would leave.
  const crashed = new MemoryBlockDevice(2 * MiB);
  crashed.bytes.set(backing.bytes);
  const recovered = await DedupVolume.open(crashed, o);
  const b0 = await read(recovered, 0, BLOCK);
  const b1 = await read(recovered, BLOCK, BLOCK);
  assert.ok(b0.every((x, i) => x === randomBlock(0)[i]) || b0.every((x, i) => x === randomBlock(90_000)[i]), 'block 0 holds its old or new value');
  assert.ok(b1.every((x, i) => x === randomBlock(1)[i]) || b1.every((x, i) => x === randomBlock(90_001)[i]), 'block 1 holds its old or new value');
  assert.deepEqual(await recovered.check(), { ok: true, problems: [] });
});

test('concurrent reads and writes complete in order: a read issued after a write sees it', async () => {
  const { vol } = await fresh();
  const ops: Promise<unknown>[] = [];
  const seen: Uint8Array[] = [];
  for (let i = 0; i < 20; i++) {
    ops.push(vol.pwrite(randomBlock(i), 0));
    const b = new Uint8Array(BLOCK);
    seen.push(b);
    ops.push(vol.pread(b, 0));
  }
  await Promise.all(ops);
  seen.forEach((b, i) => assert.deepEqual(b, randomBlock(i), `read ${i}`));
});

test('the dedup volume is a BlockDeviceBase declaring trim, zeroes, flush and FUA, and refuses writes on a read-only backing', async () => {
  const { backing, vol } = await fresh();
  assert.ok(vol instanceof BlockDeviceBase);
  assert.deepEqual({ ...capabilitiesOf(vol) }, { trim: true, zeroes: true, flush: true, fua: true, fastRead: false });
  await vol.pwrite(randomBlock(1), 0);
  await vol.close();
  await assert.rejects(vol.pread(new Uint8Array(BLOCK), 0), { code: 'SV_ERR_SHUT_DOWN', errno: 'ESHUTDOWN', message: 'dedup volume is shut down' });
  const ro = await DedupVolume.open(Object.assign(Object.create(backing) as MemoryBlockDevice, { readOnly: true }), opts());
  assert.deepEqual(await read(ro, 0, BLOCK), randomBlock(1));
  await assert.rejects(ro.pwrite(randomBlock(2), 0), { code: 'SV_ERR_READ_ONLY', errno: 'EROFS', message: 'dedup volume is read-only' });
  await assert.rejects(ro.trim(0, BLOCK), { errno: 'EROFS' });
  await assert.rejects(ro.zero(0, BLOCK), { errno: 'EROFS' });
  await ro.close();
});
