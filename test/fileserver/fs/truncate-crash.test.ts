import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FileBlockDevice } from '../../../src/block/file-device.ts';
import { fsck, openFileSystem } from '../../../src/functions/fileserver/fs/index.ts';
import { BIG, SMALL, STEP_BLOCKS, TRUNC_SIZE } from './truncate-crash-runner.ts';
import { OWNER, pattern, ROOT, ROOT_GEN } from './helpers.ts';

const RUNNER = fileURLToPath(new URL('./truncate-crash-runner.ts', import.meta.url));

/** Run the runner until it kills itself; returns the lines it printed. */
async function run(image: string, mode: string, killAt: number): Promise<string[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', RUNNER, image, mode, String(killAt)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const signal = await new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_c, s) => r(s)));
  assert.equal(signal, 'SIGKILL', `runner ended without killing itself: ${err}`);
  return out.split('\n').filter(Boolean);
}

async function checkBig(fs: Awaited<ReturnType<typeof openFileSystem>>, size: number): Promise<void> {
  const a = await fs.lookup(ROOT, ROOT_GEN, 'big');
  assert.equal(a.size, size);
  for (let off = 0; off < size; off += 1 << 20) {
    const n = Math.min(1 << 20, size - off);
    const { data } = await fs.read(a.ino, a.generation, off, n);
    assert.ok(Buffer.from(data).equals(Buffer.from(pattern(1 << 20, off + 1).subarray(0, n))), `big at ${off}`);
  }
}

for (const mode of ['remove', 'truncate'] as const) {
  test(`kill -9 at any point of a large ${mode} (hundreds of transactions) leaves a volume that mounts, finishes it and checks clean`, { timeout: 180_000 }, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), `svfs-${mode}-crash-`));
    t.after(() => rm(dir, { recursive: true, force: true }));
    let finished = 0;
    let interrupted = 0;
    // Kill before the 1st, 8th, 40th device write after BEGIN: before the first commit, and further in.
    for (const killAt of [1, 8, 40]) {
      const image = join(dir, `fs-${killAt}.img`);
      const lines = await run(image, mode, killAt);
      assert.ok(lines.includes('BEGIN'), `the runner got to the ${mode}`);
      const acked = lines.includes('ACK');
      const dev = await FileBlockDevice.open(image, 64 << 20);
      try {
        const before = await fsck(dev);
        assert.deepEqual(before.problems, [], `kill at ${killAt}: fsck before mount`);
        if (before.stats.orphans > 0) interrupted++;
        const fs = await openFileSystem(dev, { truncateStepBlocks: STEP_BLOCKS });
        const names = (await fs.readdir(ROOT, ROOT_GEN, 0, 10)).entries.map((e) => e.name).sort();
        if (mode === 'remove') {
          if (acked || before.stats.orphans > 0) assert.deepEqual(names, ['small'], 'a remove that got going completes');
          else if (names.includes('big')) await checkBig(fs, BIG);
        } else {
          const size = (await fs.lookup(ROOT, ROOT_GEN, 'big')).size;
          if (acked || before.stats.orphans > 0) assert.equal(size, TRUNC_SIZE, 'a truncate that got going completes');
          await checkBig(fs, size === TRUNC_SIZE ? TRUNC_SIZE : BIG);
        }
        const small = await fs.lookup(ROOT, ROOT_GEN, 'small');
        assert.ok(Buffer.from((await fs.read(small.ino, small.generation, 0, SMALL)).data).equals(Buffer.from(pattern(SMALL, 7))));
        // The freed blocks are usable again.
        const f = await fs.create(ROOT, ROOT_GEN, 'after', { ...OWNER, exclusive: true });
        await fs.write(f.ino, f.generation, 0, pattern(2 << 20, 9), true);
        await fs.close();
        const after = await fsck(dev);
        assert.deepEqual(after.problems, [], `kill at ${killAt}: fsck after mount`);
        assert.equal(after.stats.orphans, 0);
        if (acked) finished++;
      } finally {
        await dev.close();
      }
    }
    t.diagnostic(`${interrupted} crashes left an orphan to finish, ${finished} came after the ${mode} finished`);
    assert.ok(interrupted > 0, 'some crash landed in the middle of the operation');
  });
}
