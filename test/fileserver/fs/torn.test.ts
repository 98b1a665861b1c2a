import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fsck, mkfs, openFileSystem } from '../../../src/functions/fileserver/fs/index.ts';
import type { FileSystem } from '../../../src/functions/fileserver/fs/types.ts';
import { OWNER, pattern, ROOT, ROOT_GEN } from './helpers.ts';
import { TornDevice } from './torn-device.ts';

const SIZE = 8 << 20;

type Acked = { name: string; size: number; seed: number } | { dir: string };

/**
 * A mixed load; returns the operations acknowledged before the device died,
 * and the names whose removal was under way (they may or may not be there).
 */
async function load(fs: FileSystem): Promise<{ acked: Acked[]; removing: Set<string> }> {
  const acked: Acked[] = [];
  const removing = new Set<string>();
  const worker = async (w: number) => {
    for (let i = 0; i < 12; i++) {
      const name = `w${w}-${i}`;
      const seed = w * 100 + i;
      const size = 1000 + ((seed * 4111) % 30000);
      const a = await fs.create(ROOT, ROOT_GEN, name, { ...OWNER, exclusive: true });
      await fs.write(a.ino, a.generation, 0, pattern(size, seed), i % 2 === 0);
      if (i % 2 === 1) await fs.commit(a.ino, a.generation);
      acked.push({ name, size, seed });
      if (i % 4 === 2) {
        await fs.mkdir(ROOT, ROOT_GEN, `${name}.d`, OWNER);
        acked.push({ dir: `${name}.d` });
      }
      if (i % 5 === 4) {
        removing.add(name);
        await fs.remove(ROOT, ROOT_GEN, name);
        acked.splice(acked.findIndex((op) => 'name' in op && op.name === name), 1);
        removing.delete(name);
      }
    }
  };
  await Promise.allSettled([0, 1, 2].map(worker));
  return { acked, removing };
}

async function crashAt(point: number, keep: (i: number) => boolean) {
  const dev = new TornDevice(SIZE);
  // mkfs and mount happen before the crash window, so every point falls in the load.
  await mkfs(dev, { journalBlocks: 32 });
  const fs = await openFileSystem(dev);
  const start = dev.ops;
  dev.arm(point);
  const { acked, removing } = await load(fs);
  return { acked, removing, image: dev.crashImage(keep), crashed: dev.crashed, ops: dev.ops - start };
}

async function checkSurvivor(point: number, keep: (i: number) => boolean): Promise<boolean> {
  const { acked, removing, image, crashed } = await crashAt(point, keep);
  const report = await fsck(image);
  assert.deepEqual(report.problems, [], `crash after ${point} device ops: fsck`);
  const fs = await openFileSystem(image);
  for (const op of acked) {
    if ('dir' in op) {
      assert.equal((await fs.lookup(ROOT, ROOT_GEN, op.dir)).type, 'dir');
      continue;
    }
    if (removing.has(op.name)) continue;
    const a = await fs.lookup(ROOT, ROOT_GEN, op.name);
    assert.equal(a.size, op.size, `crash after ${point}: size of ${op.name}`);
    const { data } = await fs.read(a.ino, a.generation, 0, op.size);
    assert.ok(Buffer.from(data).equals(Buffer.from(pattern(op.size, op.seed))), `crash after ${point}: content of ${op.name}`);
  }
  await fs.close();
  assert.deepEqual((await fsck(image)).problems, [], `crash after ${point}: fsck after mount`);
  return crashed;
}

test('a crash that drops every unflushed write leaves a clean filesystem with all acknowledged data', async () => {
  const total = (await crashAt(Infinity, () => false)).ops;
  assert.ok(total > 100);
  let crashes = 0;
  for (let k = 1; k <= 16; k++) if (await checkSurvivor(Math.floor((total * k) / 17), () => false)) crashes++;
  assert.ok(crashes >= 15, 'the crash points fall inside the load');
});

test('a crash that keeps a random subset of unflushed writes still mounts clean with all acknowledged data', async () => {
  const total = (await crashAt(Infinity, () => false)).ops;
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  for (let k = 0; k < 16; k++) await checkSurvivor(Math.floor(rand() * total), () => rand() < 0.5);
});
