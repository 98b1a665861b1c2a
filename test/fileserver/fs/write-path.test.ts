import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { test } from 'node:test';
import { MemoryBlockDevice } from '../../../src/block/memory-device.ts';
import type { BlockDevice, WriteFlags } from '../../../src/block/types.ts';
import { fsck, openFileSystem } from '../../../src/functions/fileserver/fs/index.ts';
import { BLOCK_SIZE } from '../../../src/functions/fileserver/fs/superblock.ts';
import { OWNER, pattern, ROOT, ROOT_GEN } from './helpers.ts';

const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

/**
 * A write-through memory device that counts requests and, while `hold` is set,
 * keeps writes in the data area pending until `release()`: a test can see which
 * writes are in flight together.
 */
class CountingDevice extends EventEmitter implements BlockDevice {
  readonly mem: MemoryBlockDevice;
  readonly blockSize = 4096;
  readonly readOnly = false;
  readonly writeThrough = true;
  reads: Array<[number, number]> = [];
  writes: Array<[number, number]> = [];
  hold = false;
  /** While set, writes below the data area (journal, metadata) are held instead. */
  holdMeta = false;
  dataFrom = Infinity;
  private held: Array<() => void> = [];
  constructor(size: number) {
    super();
    this.mem = new MemoryBlockDevice(size);
  }
  get size(): number {
    return this.mem.size;
  }
  get pending(): number {
    return this.held.length;
  }
  async pread(buf: Uint8Array, offset: number): Promise<void> {
    this.reads.push([offset, buf.byteLength]);
    return this.mem.pread(buf, offset);
  }
  async pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags): Promise<void> {
    this.writes.push([offset, buf.byteLength]);
    if ((this.hold && offset >= this.dataFrom) || (this.holdMeta && offset < this.dataFrom)) {
      await new Promise<void>((r) => {
        this.held.push(r);
        this.emit('held');
      });
    }
    return this.mem.pwrite(buf, offset, flags);
  }
  release(): void {
    this.hold = false;
    this.holdMeta = false;
    for (const r of this.held.splice(0)) r();
  }
  flush(): Promise<void> {
    return this.mem.flush();
  }
  trim(offset: number, length: number): Promise<void> {
    return this.mem.trim(offset, length);
  }
  zero(offset: number, length: number): Promise<void> {
    return this.mem.zero(offset, length);
  }
  /** The bytes right now, as another device: what a crash at this instant leaves. */
  snapshot(): MemoryBlockDevice {
    const copy = new MemoryBlockDevice(this.size);
    copy.bytes.set(this.mem.bytes);
    return copy;
  }
  dataWrites(): Array<[number, number]> {
    return this.writes.filter(([o]) => o >= this.dataFrom);
  }
}

async function setup(clock?: () => number) {
  const dev = new CountingDevice(64 << 20);
  const fs = await openFileSystem(dev, clock ? { clock } : {});
  dev.dataFrom = fs.sb.dataStart * BLOCK_SIZE;
  return { dev, fs };
}

async function until(cond: () => boolean, ev: EventEmitter, what: string): Promise<void> {
  const deadline = AbortSignal.timeout(10_000);
  while (!cond()) {
    try {
      await once(ev, 'held', { signal: deadline });
    } catch {
      throw new Error(`timed out waiting for ${what}`);
    }
  }
}

test('FILE_SYNC overwrites of different blocks of one file are on the device at the same time', async () => {
  const { dev, fs } = await setup();
  const f = await fs.create(ROOT, ROOT_GEN, 'f', { ...OWNER, exclusive: true });
  await fs.write(f.ino, f.generation, 0, pattern(64 * BLOCK_SIZE, 1), true);
  dev.hold = true;
  const writes = Array.from({ length: 8 }, (_, i) => fs.write(f.ino, f.generation, i * 8 * BLOCK_SIZE + 100, pattern(1000, 10 + i), true));
  await until(() => dev.pending === 8, dev, 'eight overwrites in flight together');
  dev.release();
  await Promise.all(writes);
  for (let i = 0; i < 8; i++) {
    const { data } = await fs.read(f.ino, f.generation, i * 8 * BLOCK_SIZE + 100, 1000);
    assert.ok(same(data, pattern(1000, 10 + i)), `write ${i} landed`);
  }
  await fs.close();
  assert.deepEqual((await fsck(dev.mem)).problems, []);
});

test('a FILE_SYNC overwrite inside the file is one device write and waits for no journal commit', async () => {
  const { dev, fs } = await setup();
  const f = await fs.create(ROOT, ROOT_GEN, 'f', { ...OWNER, exclusive: true });
  await fs.write(f.ino, f.generation, 0, pattern(64 * BLOCK_SIZE, 1), true);
  const commits = fs.stats().commits;
  dev.writes = [];
  await fs.write(f.ino, f.generation, 5 * BLOCK_SIZE, pattern(3 * BLOCK_SIZE, 2), true);
  assert.equal(dev.writes.length, 1, 'three consecutive blocks: one device write, nothing else');
  assert.equal(fs.stats().commits, commits, 'no commit of its own');
  await fs.close();
});

test('after a crash an acknowledged in-place overwrite is there, the size unchanged, the times at most those it returned', async () => {
  let now = 1_000_000;
  const { dev, fs } = await setup(() => now);
  const f = await fs.create(ROOT, ROOT_GEN, 'f', { ...OWNER, exclusive: true });
  await fs.write(f.ino, f.generation, 0, pattern(16 * BLOCK_SIZE, 1), true);
  now += 5000;
  const after = await fs.write(f.ino, f.generation, 3 * BLOCK_SIZE, pattern(BLOCK_SIZE, 2), true);
  assert.equal(after.mtimeMs, now, 'the reply carries the new mtime');
  const crashed = await openFileSystem(dev.snapshot()); // nothing has committed the times yet
  const c = await crashed.lookup(ROOT, ROOT_GEN, 'f');
  assert.equal(c.size, 16 * BLOCK_SIZE);
  assert.ok(c.mtimeMs === after.mtimeMs || c.mtimeMs === now - 5000, 'the mtime is the new one or that of the last commit');
  assert.ok(same((await crashed.read(c.ino, c.generation, 3 * BLOCK_SIZE, BLOCK_SIZE)).data, pattern(BLOCK_SIZE, 2)), 'the data is durable');
  assert.deepEqual((await fsck(dev.snapshot())).problems, []);
  await crashed.close();
  await fs.close();
});

test("an in-place overwrite's new mtime commits with the next transaction", async () => {
  let now = 2_000_000;
  const { dev, fs } = await setup(() => now);
  const f = await fs.create(ROOT, ROOT_GEN, 'f', { ...OWNER, exclusive: true });
  await fs.write(f.ino, f.generation, 0, pattern(4 * BLOCK_SIZE, 1), true);
  now += 7000;
  await fs.write(f.ino, f.generation, 0, pattern(BLOCK_SIZE, 3), true);
  await fs.mkdir(ROOT, ROOT_GEN, 'd', OWNER); // any operation that waits for a commit
  const crashed = await openFileSystem(dev.snapshot());
  assert.equal((await crashed.lookup(ROOT, ROOT_GEN, 'f')).mtimeMs, now);
  await crashed.close();
  await fs.close();
});

test('sequential 1 MiB unstable writes to a new file go to the device at once, one write each into one extent, and COMMIT writes no data', async () => {
  const { dev, fs } = await setup();
  const f = await fs.create(ROOT, ROOT_GEN, 'f', { ...OWNER, exclusive: true });
  const data = pattern(8 << 20, 4);
  dev.writes = [];
  const commits = fs.stats().commits;
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let i = next++; i < 8; i = next++) await fs.write(f.ino, f.generation, i << 20, data.subarray(i << 20, (i + 1) << 20), false);
    }),
  );
  const w = dev.dataWrites();
  assert.deepEqual(w.map(([, n]) => n), Array(8).fill(1 << 20), 'one device write per 1 MiB WRITE, straight from it');
  const starts = w.map(([o]) => o).sort((a, b) => a - b);
  // Extents in a row; only the indirect blocks the map allocates sit between them.
  assert.ok(starts.at(-1)! - starts[0] <= (7 << 20) + 4 * BLOCK_SIZE, `the extents lie together (${JSON.stringify(starts)})`);
  assert.equal(fs.stats().commits, commits, 'nobody waited: no commit yet');
  dev.writes = [];
  await fs.commit(f.ino, f.generation);
  assert.equal(dev.dataWrites().length, 0, 'COMMIT has no data left to write');
  assert.equal(fs.stats().commits - commits, 1, 'one journal commit for all eight');
  const crashed = await openFileSystem(dev.snapshot());
  const c = await crashed.lookup(ROOT, ROOT_GEN, 'f');
  assert.ok(same((await crashed.read(c.ino, c.generation, 0, c.size)).data, data), 'committed: durable');
  await crashed.close();
  await fs.close();
  assert.deepEqual((await fsck(dev.mem)).problems, []);
});

test('a 1 MiB unstable write into a file with buffered pages stays in memory until COMMIT', async () => {
  const { dev, fs } = await setup();
  const f = await fs.create(ROOT, ROOT_GEN, 'f', { ...OWNER, exclusive: true });
  await fs.write(f.ino, f.generation, 0, pattern(4096, 3), false);
  dev.writes = [];
  const data = pattern(1 << 20, 4);
  await fs.write(f.ino, f.generation, 4096, data, false);
  assert.equal(dev.writes.length, 0, 'buffered beside the earlier page (no older data may overwrite it later)');
  await fs.commit(f.ino, f.generation);
  assert.ok(same((await fs.read(f.ino, f.generation, 4096, data.byteLength)).data, data));
  await fs.close();
  assert.deepEqual((await fsck(dev.mem)).problems, []);
});

test('two files filled at once with small unstable writes each get contiguous extents at COMMIT', async () => {
  const { dev, fs } = await setup();
  const a = await fs.create(ROOT, ROOT_GEN, 'a', { ...OWNER, exclusive: true });
  const b = await fs.create(ROOT, ROOT_GEN, 'b', { ...OWNER, exclusive: true });
  // 32 KiB writes: small enough to be buffered, so their extents are made at COMMIT.
  for (let off = 0; off < 4 << 20; off += 32 << 10) {
    await fs.write(a.ino, a.generation, off, pattern(32 << 10, off + 1), false);
    await fs.write(b.ino, b.generation, off, pattern(32 << 10, off + 2), false);
  }
  dev.writes = [];
  await Promise.all([fs.commit(a.ino, a.generation), fs.commit(b.ino, b.generation)]);
  // 4 MiB each, 1 MiB per device write at most, and the indirect block between two runs at worst.
  assert.ok(dev.dataWrites().length <= 10, `few data writes (${dev.dataWrites().length})`);
  await fs.close();
  assert.deepEqual((await fsck(dev.mem)).problems, []);
});

test('a read of consecutive blocks is one device read', async () => {
  const { dev, fs } = await setup();
  const f = await fs.create(ROOT, ROOT_GEN, 'f', { ...OWNER, exclusive: true });
  const data = pattern(256 << 10, 5);
  await fs.write(f.ino, f.generation, 0, data, true);
  dev.reads = [];
  const r = await fs.read(f.ino, f.generation, 1000, 200 << 10);
  assert.ok(same(r.data, data.subarray(1000, 1000 + (200 << 10))));
  assert.equal(dev.reads.filter(([o]) => o >= dev.dataFrom).length, 1);
  await fs.close();
});

test('an in-place overwrite of blocks whose mapping has not committed yet waits for it before it is acknowledged', async () => {
  const dev = new CountingDevice(64 << 20);
  const fs = await openFileSystem(dev, { maxDirtyBytes: 64 * 1024 });
  const f = await fs.create(ROOT, ROOT_GEN, 'f', { ...OWNER, exclusive: true });
  // Over the dirty limit: written back and mapped, in a transaction nobody waits for.
  await fs.write(f.ino, f.generation, 0, pattern(128 * 1024, 1), false);
  await fs.write(f.ino, f.generation, 4096, pattern(4096, 2), true); // in place, acknowledged
  const crashed = await openFileSystem(dev.snapshot());
  const c = await crashed.lookup(ROOT, ROOT_GEN, 'f');
  assert.equal(c.size, 128 * 1024, 'the mapping the overwrite relied on is durable');
  assert.ok(same((await crashed.read(c.ino, c.generation, 4096, 4096)).data, pattern(4096, 2)), 'and so is the overwrite');
  await crashed.close();
  await fs.close();
});

test('allocating FILE_SYNC writes to one file write their data together, outside the exclusive lock, and share one commit', async () => {
  const { dev, fs } = await setup();
  const f = await fs.create(ROOT, ROOT_GEN, 'f', { ...OWNER, exclusive: true });
  await fs.write(f.ino, f.generation, 0, pattern(BLOCK_SIZE, 1), true);
  const commits = fs.stats().commits;
  const mapped = fs.stats().mappedWrites;
  dev.hold = true;
  // Eight writes past the end and into holes: each allocates.
  const writes = Array.from({ length: 8 }, (_, i) => fs.write(f.ino, f.generation, (2 + i * 3) * BLOCK_SIZE, pattern(2 * BLOCK_SIZE, 20 + i), true));
  await until(() => dev.pending === 8, dev, 'eight allocating writes in flight together');
  const r = await fs.read(f.ino, f.generation, 0, BLOCK_SIZE); // the inode is not held exclusively
  assert.ok(same(r.data, pattern(BLOCK_SIZE, 1)));
  dev.release();
  await Promise.all(writes);
  assert.ok(fs.stats().commits - commits <= 2, `group commit (${fs.stats().commits - commits} commits for 8 writes)`);
  assert.equal(fs.stats().mappedWrites - mapped, 8, 'all took write-before-map');
  for (let i = 0; i < 8; i++) {
    const { data } = await fs.read(f.ino, f.generation, (2 + i * 3) * BLOCK_SIZE, 2 * BLOCK_SIZE);
    assert.ok(same(data, pattern(2 * BLOCK_SIZE, 20 + i)), `write ${i} landed`);
  }
  const { data: hole } = await fs.read(f.ino, f.generation, BLOCK_SIZE, BLOCK_SIZE);
  assert.ok(hole.every((b) => b === 0), 'a hole between writes reads as zeroes');
  await fs.close();
  assert.deepEqual((await fsck(dev.mem)).problems, []);
});

test('a 1 MiB allocating FILE_SYNC write is one device write of the caller\'s buffer and one commit', async () => {
  const { dev, fs } = await setup();
  const f = await fs.create(ROOT, ROOT_GEN, 'f', { ...OWNER, exclusive: true });
  const commits = fs.stats().commits;
  dev.writes = [];
  const data = pattern(1 << 20, 9);
  await fs.write(f.ino, f.generation, 0, data, true);
  assert.deepEqual(dev.dataWrites().map(([, n]) => n), [1 << 20]);
  assert.equal(fs.stats().commits - commits, 1);
  assert.ok(same((await fs.read(f.ino, f.generation, 0, 1 << 20)).data, data));
  await fs.close();
  assert.deepEqual((await fsck(dev.mem)).problems, []);
});

test("a crash after an allocating write's data but before its commit leaves the old file, free blocks and a clean fsck", async () => {
  const { dev, fs } = await setup();
  const f = await fs.create(ROOT, ROOT_GEN, 'f', { ...OWNER, exclusive: true });
  await fs.write(f.ino, f.generation, 0, pattern(3000, 1), true);
  const free = fs.stats().freeBlocks;
  dev.holdMeta = true;
  const w = fs.write(f.ino, f.generation, 4 * BLOCK_SIZE, pattern(5 * BLOCK_SIZE + 100, 2), true);
  await until(() => dev.pending > 0, dev, 'the commit of the map held');
  const crashed = await openFileSystem(dev.snapshot());
  const c = await crashed.lookup(ROOT, ROOT_GEN, 'f');
  assert.equal(c.size, 3000, 'the old size');
  assert.ok(same((await crashed.read(c.ino, c.generation, 0, 3000)).data, pattern(3000, 1)), 'the old content');
  assert.equal((crashed as unknown as { stats(): { freeBlocks: number } }).stats().freeBlocks, free, 'the written blocks are free');
  await crashed.close();
  assert.deepEqual((await fsck(dev.snapshot())).problems, []);
  dev.release();
  const attr = await w;
  assert.equal(attr.size, 9 * BLOCK_SIZE + 100);
  const after = await openFileSystem(dev.snapshot());
  const a = await after.lookup(ROOT, ROOT_GEN, 'f');
  const { data } = await after.read(a.ino, a.generation, 0, a.size);
  assert.ok(same(data.subarray(4 * BLOCK_SIZE), pattern(5 * BLOCK_SIZE + 100, 2)), 'acknowledged: the new content is durable');
  assert.ok(data.subarray(3000, 4 * BLOCK_SIZE).every((b) => b === 0), 'the gap reads as zeroes');
  await after.close();
  await fs.close();
});
