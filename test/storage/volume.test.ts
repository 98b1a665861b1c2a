import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { BlockCache } from '../../src/storage/block-cache.ts';
import { VolumeStore } from '../../src/storage/volume-store.ts';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { tempDir, rng, randomBytes } from '../helpers/tmp.ts';

const MiB = 1024 * 1024;

function store(t: Parameters<typeof tempDir>[0], cacheBytes = 1 * MiB) {
  const dir = tempDir(t);
  return new VolumeStore(dir, new BlockCache(cacheBytes));
}

test('a volume created thin uses no space and reads zeroes', async (t) => {
  const s = store(t);
  s.create('v', 64 * MiB);
  assert.equal(statSync(s.imagePath('v')).blocks, 0);
  const v = s.openVolume('v');
  const buf = Buffer.alloc(8192, 7);
  await v.pread(buf, 12 * MiB);
  assert.ok(buf.every((b) => b === 0));
  await s.closeAll();
});

test('random aligned and unaligned I/O matches a reference device, with a small cache', async (t) => {
  const s = store(t, 64 * 1024);
  const size = 4 * MiB;
  s.create('v', size);
  const v = s.openVolume('v');
  const ref = new MemoryBlockDevice(size);
  const next = rng(42);
  for (let round = 0; round < 40; round++) {
    const ops: Promise<void>[] = [];
    // Non-overlapping concurrent writes in a round, so the outcome is defined.
    const used: Array<[number, number]> = [];
    for (let i = 0; i < 8; i++) {
      const aligned = next() < 0.5;
      const len = aligned ? 4096 * (1 + Math.floor(next() * 40)) : 1 + Math.floor(next() * 9000);
      const off = aligned ? 4096 * Math.floor(next() * ((size - len) / 4096)) : Math.floor(next() * (size - len));
      if (used.some(([a, b]) => off < b && a < off + len)) continue;
      used.push([off, off + len]);
      const data = randomBytes(next, len);
      ops.push(v.pwrite(data, off));
      await ref.pwrite(data, off);
    }
    await Promise.all(ops);
    for (let i = 0; i < 8; i++) {
      const len = 1 + Math.floor(next() * 300_000);
      const off = Math.floor(next() * (size - len));
      const got = Buffer.alloc(len);
      const want = Buffer.alloc(len);
      await Promise.all([v.pread(got, off), ref.pread(want, off)]);
      assert.ok(got.equals(want), `round ${round}: read [${off}, +${len}) differs`);
    }
  }
  await s.closeAll();
});

test('concurrent writes to different bytes of one block are both applied', async (t) => {
  const s = store(t);
  s.create('v', 1 * MiB);
  const v = s.openVolume('v');
  const writes: Promise<void>[] = [];
  for (let i = 0; i < 8; i++) writes.push(v.pwrite(Buffer.alloc(512, i + 1), 8192 + i * 512));
  await Promise.all(writes);
  const got = Buffer.alloc(4096);
  await v.pread(got, 8192);
  for (let i = 0; i < 8; i++) assert.equal(got[i * 512], i + 1);
  await s.closeAll();
});

test('a read racing a write never leaves stale data in the cache', async (t) => {
  const s = store(t);
  s.create('v', 1 * MiB);
  const v = s.openVolume('v');
  for (let i = 0; i < 50; i++) {
    const off = (i % 16) * 4096;
    const data = Buffer.alloc(4096, i + 1);
    await Promise.all([v.pread(Buffer.alloc(4096), off), v.pwrite(data, off), v.pread(Buffer.alloc(4096), off)]);
    const after = Buffer.alloc(4096);
    await v.pread(after, off);
    assert.ok(after.equals(data), `iteration ${i}: read after the write returned old data`);
  }
  await s.closeAll();
});

test('zero makes a range read as zeroes, partial blocks included', async (t) => {
  const s = store(t);
  s.create('v', 1 * MiB);
  const v = s.openVolume('v');
  await v.pwrite(Buffer.alloc(64 * 1024, 0xab), 0);
  await v.zero(1000, 20_000);
  const got = Buffer.alloc(64 * 1024);
  await v.pread(got, 0);
  assert.ok(got.subarray(0, 1000).every((b) => b === 0xab));
  assert.ok(got.subarray(1000, 21_000).every((b) => b === 0));
  assert.ok(got.subarray(21_000).every((b) => b === 0xab));
  await s.closeAll();
});

test('a request outside the volume is refused before anything is touched', async (t) => {
  const s = store(t);
  s.create('v', 1 * MiB);
  const v = s.openVolume('v');
  await assert.rejects(v.pwrite(Buffer.alloc(4096), MiB - 2048), { code: 'SV_ERR_OUT_OF_RANGE', errno: 'ERANGE' });
  await assert.rejects(v.pread(Buffer.alloc(1), -1), { code: 'SV_ERR_OUT_OF_RANGE' });
  await s.closeAll();
});

test('the read cache serves repeated reads without the disk', async (t) => {
  const s = store(t);
  s.create('v', 1 * MiB);
  const v = s.openVolume('v');
  await v.pread(Buffer.alloc(4096), 4096);
  const before = v.stats().backend_reads!;
  for (let i = 0; i < 10; i++) await v.pread(Buffer.alloc(4096), 4096);
  assert.equal(v.stats().backend_reads, before);
  assert.ok(s.cache.stats().hits >= 10);
  await s.closeAll();
});

test('volume names and sizes are validated with clear messages', (t) => {
  const s = store(t);
  assert.throws(() => s.create('../x', MiB), /volume name '\.\.\/x' must be/);
  assert.throws(() => s.create('ok', 1000), /volume size 1000 must be a positive multiple of 4096/);
  s.create('ok', MiB);
  assert.throws(() => s.create('ok', MiB), { code: 'SV_ERR_EXISTS' });
});

test('resize grows a volume and refuses to shrink without allowShrink', async (t) => {
  const s = store(t);
  s.create('v', MiB);
  const v = s.openVolume('v');
  await s.resize('v', 2 * MiB);
  assert.equal(v.size, 2 * MiB);
  await v.pwrite(Buffer.alloc(4096, 1), 2 * MiB - 4096);
  await assert.rejects(s.resize('v', MiB), /shrinking/);
  await s.closeAll();
});
