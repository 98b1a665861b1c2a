import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BlockCache } from '../../src/storage/block-cache.ts';
import { VolumeStore } from '../../src/storage/volume-store.ts';
import { MAX_SNAPSHOTS } from '../../src/storage/snapshots/snapshots.ts';
import type { LayeredBackend } from '../../src/storage/snapshots/layered.ts';
import type { FileBackend } from '../../src/storage/backend.ts';
import { tempDir } from '../helpers/tmp.ts';
import { B, block } from './helpers/blocks.ts';

const MiB = 1024 * 1024;

function store(dir: string, opts: { maxMapBytes?: number } = {}): VolumeStore {
  return new VolumeStore(dir, new BlockCache(MiB), () => {}, true, 1, opts.maxMapBytes);
}

async function genOf(v: { pread(buf: Uint8Array, off: number): Promise<void> }, b: number): Promise<number> {
  const buf = Buffer.alloc(B);
  await v.pread(buf, b * B);
  if (buf.every((x) => x === 0)) return 0;
  const gen = buf.readUInt32LE(4);
  assert.ok(block(b, gen).equals(buf), `block ${b} is torn or misplaced`);
  return gen;
}

async function gens(v: { pread(buf: Uint8Array, off: number): Promise<void> }, blocks: number): Promise<number[]> {
  const out: number[] = [];
  for (let b = 0; b < blocks; b++) out.push(await genOf(v, b));
  return out;
}

async function fill(v: { pwrite(buf: Uint8Array, off: number): Promise<void> }, blocks: number[], gen: number): Promise<void> {
  await Promise.all(blocks.map((b) => v.pwrite(block(b, gen), b * B)));
}

const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);

test('a snapshot keeps the data of the moment it was taken while the volume changes, across a restart', async (t) => {
  const dir = tempDir(t);
  let s = store(dir);
  s.create('v', 1 * MiB);
  const v = s.openVolume('v');
  await fill(v, range(64), 1);
  await s.snapshots.create('v', 's1');
  await fill(v, range(32, 16), 2);
  const snap = s.openVolume('v@s1');
  assert.equal(snap.readOnly, true);
  assert.deepEqual(await gens(snap, 64), range(64).map(() => 1));
  assert.deepEqual(await gens(v, 64), range(64).map((b) => (b >= 16 && b < 48 ? 2 : 1)));
  await s.closeAll();

  s = store(dir);
  assert.deepEqual(await gens(s.openVolume('v@s1'), 64), range(64).map(() => 1));
  assert.deepEqual(await gens(s.openVolume('v'), 64), range(64).map((b) => (b >= 16 && b < 48 ? 2 : 1)));
  await s.closeAll();
});

test('a snapshot refuses writes with SV_ERR_READ_ONLY', async (t) => {
  const s = store(tempDir(t));
  s.create('v', 1 * MiB);
  await s.snapshots.create('v', 's1');
  const snap = s.openVolume('v@s1');
  await assert.rejects(snap.pwrite(block(0, 1), 0), { code: 'SV_ERR_READ_ONLY' });
  await s.closeAll();
});

test('each of several snapshots keeps its own point in time, and deleting one leaves the others intact', async (t) => {
  const s = store(tempDir(t));
  s.create('v', 1 * MiB);
  const v = s.openVolume('v');
  await fill(v, range(16), 1);
  await s.snapshots.create('v', 'a');
  await fill(v, range(8), 2);
  await s.snapshots.create('v', 'b');
  await fill(v, range(12, 4), 3);
  await s.snapshots.create('v', 'c');
  await fill(v, range(16), 4);
  const want = {
    a: range(16).map(() => 1),
    b: range(16).map((i) => (i < 8 ? 2 : 1)),
    c: range(16).map((i) => (i >= 4 ? 3 : 2)),
  };
  for (const [name, g] of Object.entries(want)) assert.deepEqual(await gens(s.openVolume(`v@${name}`), 16), g, name);
  await s.closeVolume('v@b');
  await s.snapshots.delete('v', 'b');
  assert.deepEqual(s.snapshots.list('v').map((i) => i.name), ['a', 'c']);
  assert.deepEqual(await gens(s.openVolume('v@a'), 16), want.a);
  assert.deepEqual(await gens(s.openVolume('v@c'), 16), want.c);
  await s.closeVolume('v@c');
  await s.snapshots.delete('v', 'c');
  assert.deepEqual(await gens(s.openVolume('v@a'), 16), want.a);
  await s.closeVolume('v@a');
  await s.snapshots.delete('v', 'a');
  assert.deepEqual(await gens(v, 16), range(16).map(() => 4));
  assert.deepEqual(readdirSync(join(s.dir, '.snapshots')).filter((f) => !f.endsWith('.chain.json') && !f.startsWith('.')), []);
  await s.closeAll();
});

test('a clone shares the blocks it has not written with its snapshot, and its writes stay its own', async (t) => {
  const dir = tempDir(t);
  let s = store(dir);
  s.create('v', 1 * MiB);
  const v = s.openVolume('v');
  await fill(v, range(16), 1);
  await s.snapshots.create('v', 's');
  const m = await s.snapshots.clone('v', 's', 'c');
  assert.deepEqual(m.parent, { volume: 'v', snapshot: 's' });
  const c = s.openVolume('c');
  await fill(c, range(4), 7);
  await fill(v, range(4, 8), 2);
  // An unaligned write to a shared block: the rest of the block comes from the snapshot.
  await c.pwrite(Buffer.alloc(100, 0xee), 10 * B + 8);
  const got = Buffer.alloc(B);
  await c.pread(got, 10 * B);
  const want = block(10, 1);
  want.fill(0xee, 8, 108);
  assert.ok(got.equals(want));
  assert.deepEqual(await gens(s.openVolume('v@s'), 16), range(16).map(() => 1));
  assert.deepEqual(await gens(v, 8), range(8).map(() => 1));
  await s.closeAll();

  s = store(dir);
  const c2 = s.openVolume('c');
  assert.deepEqual(await gens(c2, 8), range(8).map((i) => (i < 4 ? 7 : 1)));
  assert.deepEqual(await gens(s.openVolume('v'), 12), range(12).map((i) => (i >= 8 ? 2 : 1)));
  await s.closeAll();
});

test('deleting a snapshot with clones is refused with SV_ERR_HAS_CLONES, and flattens them when asked', async (t) => {
  const dir = tempDir(t);
  let s = store(dir);
  s.create('v', 1 * MiB);
  const v = s.openVolume('v');
  await fill(v, range(32), 1);
  await s.snapshots.create('v', 's');
  await s.snapshots.clone('v', 's', 'c');
  const c = s.openVolume('c');
  await fill(c, range(4), 5);
  await fill(v, range(32), 2);
  await assert.rejects(s.snapshots.delete('v', 's'), { code: 'SV_ERR_HAS_CLONES' });
  // The clone stays open and in use while it is flattened.
  const busy = fill(c, range(4, 20), 6);
  assert.deepEqual(await s.snapshots.delete('v', 's', { flatten: true }), ['c']);
  await busy;
  assert.equal(s.manifest('c').parent, undefined);
  assert.deepEqual(s.snapshots.list('v'), []);
  const want = range(32).map((i) => (i < 4 ? 5 : i >= 20 && i < 24 ? 6 : 1));
  assert.deepEqual(await gens(c, 32), want);
  await s.closeAll();
  s = store(dir);
  assert.deepEqual(await gens(s.openVolume('c'), 32), want);
  await s.closeAll();
});

test('deleting a volume that has snapshots is refused with SV_ERR_HAS_SNAPSHOTS', async (t) => {
  const s = store(tempDir(t));
  s.create('v', 1 * MiB);
  await s.snapshots.create('v', 's');
  await assert.rejects(s.delete('v'), { code: 'SV_ERR_HAS_SNAPSHOTS' });
  await s.snapshots.delete('v', 's');
  await s.delete('v');
  assert.equal(s.exists('v'), false);
});

test('snapshots past the per-volume limit or the block-map memory budget are refused with SV_ERR_SNAPSHOT_LIMIT', async (t) => {
  const s = store(tempDir(t), { maxMapBytes: 64 * 1024 });
  s.create('small', 64 * 1024);
  for (let i = 0; i < MAX_SNAPSHOTS; i++) await s.snapshots.create('small', `s${i}`);
  await assert.rejects(s.snapshots.create('small', 'one-more'), { code: 'SV_ERR_SNAPSHOT_LIMIT' });
  // 2 GiB of volume needs 64 KiB of map at one bit per 4 KiB block: over the budget with the small one's maps.
  s.create('big', 2048 * MiB);
  await assert.rejects(s.snapshots.create('big', 's'), { code: 'SV_ERR_SNAPSHOT_LIMIT' });
  await s.closeAll();
});

test('a write after a snapshot costs one read, one delta write and one map write the first time its block changes, and nothing extra after', async (t) => {
  const s = store(tempDir(t));
  s.create('v', 1 * MiB);
  const v = s.openVolume('v');
  await fill(v, range(8), 1);
  await s.snapshots.create('v', 's');
  const head = (v as unknown as { backend: LayeredBackend }).backend;
  const raw = head.raw as FileBackend;
  const layer = head.chain[0]!;
  const count = () => ({ reads: raw.stats.reads, writes: raw.stats.writes, deltaWrites: layer.delta.stats.writes, mapWrites: layer.map.stats().writes });
  const before = count();
  await v.pwrite(block(3, 2), 3 * B);
  const first = count();
  assert.deepEqual(
    { reads: first.reads - before.reads, writes: first.writes - before.writes, deltaWrites: first.deltaWrites - before.deltaWrites, mapWrites: first.mapWrites - before.mapWrites },
    { reads: 1, writes: 1, deltaWrites: 1, mapWrites: 1 },
  );
  await v.pwrite(block(3, 3), 3 * B);
  const second = count();
  assert.deepEqual(
    { reads: second.reads - first.reads, writes: second.writes - first.writes, deltaWrites: second.deltaWrites - first.deltaWrites, mapWrites: second.mapWrites - first.mapWrites },
    { reads: 0, writes: 1, deltaWrites: 0, mapWrites: 0 },
  );
  // A 128 KiB write of 32 fresh blocks: still one read, one delta write, one map write.
  await v.pwrite(Buffer.alloc(32 * B, 9), 64 * B);
  const big = count();
  assert.deepEqual(
    { reads: big.reads - second.reads, writes: big.writes - second.writes, deltaWrites: big.deltaWrites - second.deltaWrites, mapWrites: big.mapWrites - second.mapWrites },
    { reads: 1, writes: 1, deltaWrites: 1, mapWrites: 1 },
  );
  await s.closeAll();
});

test('a write to a clone costs one map write the first time its block is written, and nothing extra after', async (t) => {
  const s = store(tempDir(t));
  s.create('v', 1 * MiB);
  await s.snapshots.create('v', 's');
  await s.snapshots.clone('v', 's', 'c');
  const c = s.openVolume('c');
  const head = (c as unknown as { backend: LayeredBackend }).backend;
  const count = () => ({ writes: head.raw.stats.writes, reads: head.raw.stats.reads, mapWrites: head.own!.stats().writes });
  const before = count();
  await c.pwrite(block(5, 1), 5 * B);
  const first = count();
  assert.deepEqual({ writes: first.writes - before.writes, reads: first.reads - before.reads, mapWrites: first.mapWrites - before.mapWrites }, { writes: 1, reads: 0, mapWrites: 1 });
  await c.pwrite(block(5, 2), 5 * B);
  const second = count();
  assert.deepEqual({ writes: second.writes - first.writes, reads: second.reads - first.reads, mapWrites: second.mapWrites - first.mapWrites }, { writes: 1, reads: 0, mapWrites: 0 });
  await s.closeAll();
});

test('a snapshot taken under concurrent writes reads back one point in time, and later writes never show through', async (t) => {
  const s = store(tempDir(t));
  const blocks = 64;
  s.create('v', blocks * B);
  const v = s.openVolume('v');
  // Four writers, each owning blocks b % 4 == w, write generations in order: per block, the order is known.
  const acked = new Array<number>(blocks).fill(0);
  const issued = new Array<number>(blocks).fill(0);
  let stop = false;
  let gen = 0;
  const writer = async (w: number) => {
    let i = 0;
    while (!stop) {
      const b = ((i++ * 7) % (blocks / 4)) * 4 + w;
      const g = ++gen;
      issued[b] = g;
      await v.pwrite(block(b, g), b * B);
      acked[b] = g;
    }
  };
  const writers = [0, 1, 2, 3].map(writer);
  while (gen < 400) await new Promise((r) => setImmediate(r));
  const ackedBefore = [...acked];
  await s.snapshots.create('v', 's');
  const issuedAfter = [...issued];
  while (gen < 1200) await new Promise((r) => setImmediate(r));
  stop = true;
  await Promise.all(writers);
  const snap = s.openVolume('v@s');
  const got = await gens(snap, blocks);
  for (let b = 0; b < blocks; b++) {
    assert.ok(got[b]! >= ackedBefore[b]!, `block ${b}: snapshot has generation ${got[b]}, older than ${ackedBefore[b]} acknowledged before it`);
    assert.ok(got[b]! <= issuedAfter[b]!, `block ${b}: snapshot has generation ${got[b]}, written after the snapshot`);
  }
  // Reading again after more writes gives the same answer.
  await fill(v, range(blocks), 9999);
  assert.deepEqual(await gens(snap, blocks), got);
  await s.closeAll();
});

test('reads of a snapshot racing copy-on-write writes to the same blocks always see the snapshot data', async (t) => {
  // A tiny cache, so the snapshot's reads go to disk while the writes copy the blocks away.
  const s = new VolumeStore(tempDir(t), new BlockCache(16 * B));
  const blocks = 64;
  s.create('v', blocks * B);
  const v = s.openVolume('v');
  await fill(v, range(blocks), 1);
  await s.snapshots.create('v', 's');
  const snap = s.openVolume('v@s');
  let stop = false;
  let reads = 0;
  const reader = async (r: number) => {
    const buf = Buffer.alloc(8 * B);
    for (let i = 0; !stop; i++) {
      const b = ((i * 5 + r * 8) % (blocks / 8)) * 8;
      await snap.pread(buf, b * B);
      for (let k = 0; k < 8; k++) assert.ok(buf.subarray(k * B, (k + 1) * B).equals(block(b + k, 1)), `snapshot block ${b + k} changed under a write`);
      reads++;
    }
  };
  const readers = [0, 1, 2, 3].map(reader);
  for (let g = 2; g < 6; g++) await fill(v, range(blocks), g);
  stop = true;
  await Promise.all(readers);
  assert.ok(reads > 0);
  assert.deepEqual(await gens(snap, blocks), range(blocks).map(() => 1));
  assert.deepEqual(await gens(v, blocks), range(blocks).map(() => 5));
  await s.closeAll();
});

test('zeroing and trimming a volume with a snapshot leave the snapshot data in place', async (t) => {
  const s = store(tempDir(t));
  s.create('v', 1 * MiB);
  const v = s.openVolume('v');
  await fill(v, range(32), 1);
  await s.snapshots.create('v', 's');
  await v.zero(0, 8 * B);
  await v.trim(8 * B, 8 * B);
  assert.deepEqual((await gens(v, 8)), range(8).map(() => 0));
  assert.deepEqual(await gens(s.openVolume('v@s'), 32), range(32).map(() => 1));
  await s.closeAll();
});

test('a clone can have snapshots and clones of its own, and a layered volume keeps its size', async (t) => {
  const s = store(tempDir(t));
  s.create('v', 1 * MiB);
  const v = s.openVolume('v');
  await fill(v, range(8), 1);
  await s.snapshots.create('v', 's');
  await s.snapshots.clone('v', 's', 'c');
  const c = s.openVolume('c');
  await fill(c, range(2), 2);
  await s.snapshots.create('c', 'cs');
  await fill(c, range(4), 3);
  await s.snapshots.clone('c', 'cs', 'cc');
  const cc = s.openVolume('cc');
  await fill(cc, [7], 4);
  assert.deepEqual(await gens(s.openVolume('c@cs'), 8), [2, 2, 1, 1, 1, 1, 1, 1]);
  assert.deepEqual(await gens(c, 8), [3, 3, 3, 3, 1, 1, 1, 1]);
  assert.deepEqual(await gens(cc, 8), [2, 2, 1, 1, 1, 1, 1, 4]);
  assert.deepEqual(await gens(v, 8), range(8).map(() => 1));
  await assert.rejects(s.resize('c', 2 * MiB), { code: 'SV_ERR_IN_USE' });
  await assert.rejects(s.resize('v', 2 * MiB), { code: 'SV_ERR_IN_USE' });
  await s.closeAll();
});

test('a copy-on-write waits for a snapshot read of its block that is still on its way to the volume', async (t) => {
  const s = store(tempDir(t));
  s.create('v', 1 * MiB);
  const v = s.openVolume('v');
  await fill(v, range(8), 1);
  await s.snapshots.create('v', 's');
  const snap = s.openVolume('v@s');
  const head = (v as unknown as { backend: LayeredBackend }).backend;
  // Hold the snapshot's read of the volume's current content until the write has copied the block away.
  const raw = head.raw as FileBackend & { read: FileBackend['read'] };
  const read = raw.read.bind(raw);
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let first = true;
  raw.read = (buf, at, length, position) => {
    if (!first) return read(buf, at, length, position);
    first = false;
    return held.then(() => read(buf, at, length, position));
  };
  const order: string[] = [];
  const got = Buffer.alloc(B);
  const reading = snap.pread(got, 5 * B).then(() => order.push('read'));
  const writing = v.pwrite(block(5, 2), 5 * B).then(() => order.push('write'));
  const deadline = Date.now() + 10_000;
  while (head.counters.cowWaits === 0) {
    assert.ok(Date.now() < deadline, 'the write never waited for the read');
    await new Promise((r) => setImmediate(r));
  }
  release();
  await Promise.all([reading, writing]);
  assert.deepEqual(order, ['read', 'write']);
  assert.ok(got.equals(block(5, 1)), 'the snapshot read saw the write');
  assert.equal(await genOf(v, 5), 2);
  await s.closeAll();
});

test('files left by a snapshot or clone creation cut short are removed at the next start, and the rest kept', async (t) => {
  const dir = tempDir(t);
  let s = store(dir);
  s.create('v', 1 * MiB);
  await s.snapshots.create('v', 'kept');
  await s.snapshots.clone('v', 'kept', 'c');
  await s.closeAll();
  const snaps = join(s.dir, '.snapshots');
  for (const f of ['v@lost.delta', 'v@lost.map', 'nobody.clone.map', 'v.chain.json.tmp']) writeFileSync(join(snaps, f), 'x');
  s = store(dir);
  assert.deepEqual(readdirSync(snaps).filter((f) => !f.startsWith('.')).sort(), ['c.clone.map', 'v.chain.json', 'v@kept.delta', 'v@kept.map']);
  assert.deepEqual(s.snapshots.list('v').map((i) => i.name), ['kept']);
  await s.closeAll();
});

test('a crash while a snapshot is being taken keeps the older snapshots whose blocks a write already copied into the new one', async (t) => {
  const dir = tempDir(t);
  const s = store(dir);
  s.create('v', 1 * MiB);
  const v = s.openVolume('v');
  await fill(v, range(8), 1);
  await s.snapshots.create('v', 'a'); // a holds nothing yet: it reads every block through the volume
  const head = (v as unknown as { backend: LayeredBackend }).backend;
  // Hold a write begun before the next snapshot, so taking it waits for that write.
  const raw = head.raw as FileBackend & { write: FileBackend['write'] };
  const write = raw.write.bind(raw);
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let holding = true;
  raw.write = (buf, at, length, position) => {
    if (!holding) return write(buf, at, length, position);
    holding = false;
    return held.then(() => write(buf, at, length, position));
  };
  const early = v.pwrite(block(0, 2), 0);
  while (holding) await new Promise((r) => setImmediate(r));
  const taking = s.snapshots.create('v', 'b');
  // A write that copies block 5 away (into b, the newest) while b is still being taken.
  while (head.chain.length < 2) await new Promise((r) => setImmediate(r));
  await v.pwrite(block(5, 2), 5 * B);
  // kill -9 now: the disk as it is.
  const crashed = tempDir(t);
  cpSync(dir, crashed, { recursive: true });
  release();
  await Promise.all([early, taking]);
  await s.closeAll();

  const after = store(crashed);
  assert.deepEqual(await gens(after.openVolume('v@a'), 8), range(8).map(() => 1), 'snapshot a lost a block the write copied into b');
  assert.deepEqual(after.snapshots.list('v').map((i) => i.name), ['a', 'b']);
  assert.equal(await genOf(after.openVolume('v@b'), 5), 1);
  assert.equal(await genOf(after.openVolume('v'), 5), 2);
  await after.closeAll();
});

test('a snapshot deletion cut short by a crash is still read through, and finished by recover', async (t) => {
  const dir = tempDir(t);
  let s = store(dir);
  s.create('v', 1 * MiB);
  const v = s.openVolume('v');
  await fill(v, range(16), 1);
  await s.snapshots.create('v', 'a');
  await s.snapshots.create('v', 'b');
  // Changed after b: the old data is in b's delta only, and a reads it through b.
  await fill(v, range(8), 2);
  await s.closeAll();
  // The state a crash right after "mark b deleting" leaves.
  const chainPath = join(s.dir, '.snapshots', 'v.chain.json');
  const chain = JSON.parse(readFileSync(chainPath, 'utf8'));
  chain.snapshots[1].state = 'deleting';
  writeFileSync(chainPath, JSON.stringify(chain));

  s = store(dir);
  assert.deepEqual(s.snapshots.list('v').map((i) => i.name), ['a']);
  assert.deepEqual(await gens(s.openVolume('v@a'), 16), range(16).map(() => 1));
  await s.closeVolume('v@a');
  await s.snapshots.recover();
  assert.deepEqual(readdirSync(join(s.dir, '.snapshots')).filter((f) => !f.startsWith('.')).sort(), ['v.chain.json', 'v@a.delta', 'v@a.map']);
  assert.deepEqual(await gens(s.openVolume('v@a'), 16), range(16).map(() => 1));
  assert.deepEqual(await gens(s.openVolume('v'), 16), range(16).map((i) => (i < 8 ? 2 : 1)));
  await s.closeAll();
});
