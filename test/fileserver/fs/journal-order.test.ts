import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fsck, mkfs, openFileSystem } from '../../../src/functions/fileserver/fs/index.ts';
import type { FileSystem } from '../../../src/functions/fileserver/fs/types.ts';
import { OWNER, pattern, ROOT, ROOT_GEN } from './helpers.ts';
import { TornDevice } from './torn-device.ts';

const SIZE = 4 << 20;
const MAGIC_COMMIT = 0x434a5653; // "SVJC", journal.ts
const MAGIC_DESC = 0x444a5653; // "SVJD"

/** Files the load writes: name, size, pattern seed; sizes cross the 12 direct blocks. */
const FILES = [0, 1, 2, 3, 4, 5].map((i) => ({ name: `f${i}`, size: 3000 + i * 21_000, seed: 40 + i }));

/**
 * A small sequential load: create and write files (stable, or unstable then
 * COMMIT), a directory, a remove. Returns what was acknowledged.
 */
async function load(fs: FileSystem): Promise<{ acked: Set<string>; removed: Set<string>; removing: Set<string> }> {
  const acked = new Set<string>();
  const removed = new Set<string>();
  /** A remove under way when the power went: the name may or may not be there. */
  const removing = new Set<string>();
  try {
    for (const [i, f] of FILES.entries()) {
      const a = await fs.create(ROOT, ROOT_GEN, f.name, { ...OWNER, exclusive: true });
      await fs.write(a.ino, a.generation, 0, pattern(f.size, f.seed), i % 2 === 0);
      if (i % 2 === 1) await fs.commit(a.ino, a.generation);
      acked.add(f.name);
      if (i === 2) await fs.mkdir(ROOT, ROOT_GEN, 'dir', OWNER);
      if (i === 3) {
        removing.add(FILES[1].name);
        await fs.remove(ROOT, ROOT_GEN, FILES[1].name);
        removing.delete(FILES[1].name);
        acked.delete(FILES[1].name);
        removed.add(FILES[1].name);
      }
    }
  } catch {
    // the device lost power
  }
  return { acked, removed, removing };
}

async function run(crashAfter: number, keep: (i: number, offset: number) => boolean) {
  const dev = new TornDevice(SIZE);
  await mkfs(dev, { journalBlocks: 32, inodes: 64 });
  const fs = await openFileSystem(dev);
  const start = dev.ops;
  dev.arm(crashAfter);
  const r = await load(fs);
  return { ...r, dev, image: dev.crashImage(keep), ops: dev.ops - start };
}

test('every journal commit block is written with FUA after a flush that follows its data, descriptor and copies', async () => {
  const { dev, acked } = await run(Infinity, () => false);
  assert.equal(acked.size, FILES.length - 1);
  let pending = 0;
  let commits = 0;
  let descriptorSinceCommit = false;
  for (const e of dev.events) {
    if (e.op === 'flush') {
      pending = 0;
      continue;
    }
    if (e.magics.includes(MAGIC_COMMIT)) {
      commits++;
      assert.equal(e.length, 4096, `commit ${commits} is written alone, not with the rest of its record`);
      assert.ok(descriptorSinceCommit, `commit ${commits} follows its descriptor`);
      assert.equal(pending, 0, `commit ${commits}: ${pending} earlier writes were not flushed before it`);
      assert.equal(e.fua, true, `commit ${commits} is written with FUA`);
      descriptorSinceCommit = false;
      continue;
    }
    if (e.magics.includes(MAGIC_DESC)) descriptorSinceCommit = true;
    if (!e.fua) pending++;
  }
  assert.ok(commits >= FILES.length, `${commits} commits seen`);
});

test('a crash at any device operation, losing or keeping any unflushed writes, leaves every committed transaction whole', async () => {
  const total = (await run(Infinity, () => false)).ops;
  assert.ok(total > 50, `load made ${total} device calls`);
  let seed = 777;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  // The journal is blocks 1..32 (mkfs below): an adversarial cache writes back only those.
  const inJournal = (offset: number) => offset < 33 * 4096;
  const modes: Record<string, (i: number, offset: number) => boolean> = {
    'drop all': () => false,
    'keep all': () => true,
    'keep only the journal': (_i, offset) => inJournal(offset),
    'keep a random half': () => rand() < 0.5,
  };
  const names = Object.keys(modes);
  const checks: Array<[number, string]> = [];
  for (let point = 1; point <= total; point++) checks.push([point, names[point % 3]], [point, 'keep a random half']);
  for (const [point, mode] of checks) {
    const { acked, removed, removing, image } = await run(point, modes[mode]);
    const where = `crash after ${point} of ${total} calls (${mode})`;
    assert.deepEqual((await fsck(image)).problems, [], `${where}: fsck`);
    const fs = await openFileSystem(image);
    for (const f of FILES) {
      let a;
      try {
        a = await fs.lookup(ROOT, ROOT_GEN, f.name);
      } catch (e) {
        assert.equal((e as { code?: string }).code, 'SV_ERR_FS_NOENT');
        assert.ok(!acked.has(f.name) || removing.has(f.name), `${where}: acknowledged ${f.name} is missing`);
        continue;
      }
      assert.ok(!removed.has(f.name), `${where}: removed ${f.name} is back`);
      // Committed (acknowledged or not) means whole: the size was committed only with its data.
      if (a.size === 0 && !acked.has(f.name)) continue;
      assert.equal(a.size, f.size, `${where}: size of ${f.name}`);
      const { data } = await fs.read(a.ino, a.generation, 0, f.size);
      assert.ok(Buffer.from(data).equals(Buffer.from(pattern(f.size, f.seed))), `${where}: content of ${f.name}`);
    }
    await fs.close();
  }
});
