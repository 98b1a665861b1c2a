import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockCache } from '../../src/storage/block-cache.ts';
import { VolumeStore } from '../../src/storage/volume-store.ts';
import type { Volume } from '../../src/storage/volume.ts';
import { tempDir } from '../helpers/tmp.ts';
import { B, block } from './helpers/blocks.ts';

/**
 * The write-back rule of a file volume (WriteFlags.unsynced: an NBD client's
 * plain WRITE, a guest's write-back queue), in syncs per write: a plain write
 * costs none, a FUA write one O_DSYNC write, write + flush one fdatasync. On a
 * volume with snapshots or a clone, what a layer depends on stays durable
 * before the write that depends on it; only the volume's own data waits.
 */
const BLOCKS = 64;

function store(t: Parameters<typeof tempDir>[0]): VolumeStore {
  const s = new VolumeStore(tempDir(t), new BlockCache(1 << 20));
  t.after(() => s.closeAll());
  s.create('v', BLOCKS * B);
  return s;
}

/** What the volume's image backend did while `op` ran: its writes, those left to a flush, its fdatasyncs. */
async function costOf(v: Volume, op: () => Promise<unknown>) {
  const before = v.stats();
  await op();
  const now = v.stats();
  const d = (k: string) => now[`backend_${k}`]! - before[`backend_${k}`]!;
  return { writes: d('writes'), unsynced: d('unsyncedWrites'), syncs: d('syncs') };
}

/** Whether `v` reads `expected` at block `b`. */
async function reads(v: Volume, b: number, expected: Buffer): Promise<boolean> {
  const buf = Buffer.alloc(B);
  await v.pread(buf, b * B);
  return buf.equals(expected);
}

const UNSYNCED = { unsynced: true };

test('on a file volume a plain write costs no sync, a FUA write one O_DSYNC write, and a flush one fdatasync', async (t) => {
  const v = store(t).openVolume('v');
  assert.deepEqual(await costOf(v, () => v.pwrite(block(1, 2), 1 * B, UNSYNCED)), { writes: 1, unsynced: 1, syncs: 0 });
  assert.deepEqual(await costOf(v, () => v.pwrite(block(2, 2), 2 * B, { fua: true })), { writes: 1, unsynced: 0, syncs: 0 });
  const writeAndFlush = async () => {
    await v.pwrite(block(3, 2), 3 * B, UNSYNCED);
    await v.flush();
  };
  assert.deepEqual(await costOf(v, writeAndFlush), { writes: 1, unsynced: 1, syncs: 1 });
});

test('an unsynced write to a block a snapshot shares copies the old data durably first, and only the new data is unsynced', async (t) => {
  const s = store(t);
  const v = s.openVolume('v');
  await v.pwrite(block(5, 1), 5 * B);
  await s.snapshots.create('v', 'a');
  // The image's write is the only unsynced one; the copy into the delta went O_DSYNC on the delta's own backend.
  assert.deepEqual(await costOf(v, () => v.pwrite(block(5, 2), 5 * B, UNSYNCED)), { writes: 1, unsynced: 1, syncs: 0 });
  assert.ok(await reads(s.openVolume('v@a'), 5, block(5, 1)), 'the snapshot kept the old data');
  assert.ok(await reads(v, 5, block(5, 2)));
  // Later writes of the block copy nothing: unsynced as on a plain volume.
  assert.deepEqual(await costOf(v, () => v.pwrite(block(5, 3), 5 * B, UNSYNCED)), { writes: 1, unsynced: 1, syncs: 0 });
});

test('a clone\'s first unsynced write of a block is durable before its bit, and its later writes of the block are unsynced', async (t) => {
  const s = store(t);
  await s.openVolume('v').pwrite(block(6, 1), 6 * B);
  await s.snapshots.create('v', 'a');
  await s.snapshots.clone('v', 'a', 'c');
  const c = s.openVolume('c');
  assert.deepEqual(await costOf(c, () => c.pwrite(block(6, 2), 6 * B, UNSYNCED)), { writes: 1, unsynced: 0, syncs: 0 });
  assert.deepEqual(await costOf(c, () => c.pwrite(block(6, 3), 6 * B, UNSYNCED)), { writes: 1, unsynced: 1, syncs: 0 });
  assert.ok(await reads(c, 6, block(6, 3)));
});

test('taking a snapshot makes the unsynced writes before it durable: one fdatasync', async (t) => {
  const s = store(t);
  const v = s.openVolume('v');
  await v.pwrite(block(7, 2), 7 * B, UNSYNCED);
  assert.equal((await costOf(v, () => s.snapshots.create('v', 'a'))).syncs, 1);
  assert.ok(await reads(s.openVolume('v@a'), 7, block(7, 2)));
});
