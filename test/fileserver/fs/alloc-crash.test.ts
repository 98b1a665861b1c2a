import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FileBlockDevice } from '../../../src/block/file-device.ts';
import { fsck, openFileSystem } from '../../../src/functions/fileserver/fs/index.ts';
import { blockContent, FILES, IMAGE_BYTES } from './alloc-crash-runner.ts';
import { ROOT, ROOT_GEN } from './helpers.ts';
import { killAtAcks } from './kill-at-acks.ts';

const RUNNER = fileURLToPath(new URL('./alloc-crash-runner.ts', import.meta.url));

/** Run the runner until it has acknowledged `acks` writes, then kill -9 it. Returns the acknowledged blocks per file. */
async function runAndKill(image: string, acks: number): Promise<{ acked: Set<string>; inflight: number }> {
  const acked = new Set<string>();
  const inflight = new Set<string>();
  await killAtAcks(RUNNER, image, (k, f, b) => {
    if (k === 'BEGIN') inflight.add(`${f} ${b}`);
    else if (k === 'ACK') {
      inflight.delete(`${f} ${b}`);
      acked.add(`${f} ${b}`);
    }
  }, () => acked.size === acks);
  return { acked, inflight: inflight.size };
}

const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

test('after kill -9 during allocating FILE_SYNC writes, acknowledged blocks are there and every other block is old or new content, never garbage or another file\'s', { timeout: 120_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'svfs-alloc-crash-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const image = join(dir, 'fs.img');
  // Garbage everywhere but the (all-zero, so unformatted) superblock: a block that is
  // read without having been written shows up as neither zeroes nor file data.
  const img = Buffer.alloc(IMAGE_BYTES, 0xee);
  img.fill(0, 0, 4096);
  await writeFile(image, img);
  const { acked, inflight } = await runAndKill(image, 500);
  const dev = await FileBlockDevice.open(image, IMAGE_BYTES);
  try {
    assert.deepEqual((await fsck(dev)).problems, [], 'fsck before mount');
    const fs = await openFileSystem(dev);
    let written = 0;
    for (let f = 0; f < FILES; f++) {
      const a = await fs.lookup(ROOT, ROOT_GEN, `f${f}`);
      const { data } = await fs.read(a.ino, a.generation, 0, a.size);
      const blocks = Math.ceil(a.size / 4096);
      for (let b = 0; b < blocks; b++) {
        const got = data.subarray(b * 4096, Math.min(a.size, (b + 1) * 4096));
        const want = blockContent(f, b);
        const zero = got.every((x) => x === 0);
        // What the block holds: all zeroes (a hole, or a write that did not commit), or exactly
        // this file's block b (zero-padded to the block, or cut at the end of file).
        const full = new Uint8Array(4096);
        full.set(want);
        const isNew = same(got, full.subarray(0, got.byteLength));
        assert.ok(zero || isNew, `file ${f} block ${b} holds neither zeroes nor its own data (garbage or another file's)`);
        if (acked.has(`${f} ${b}`)) {
          assert.ok(a.size >= b * 4096 + want.byteLength, `file ${f} is too short for acknowledged block ${b}`);
          assert.ok(isNew && !zero, `file ${f} block ${b} was acknowledged but is not there`);
        }
        if (isNew && !zero) written++;
      }
      for (const key of acked) {
        const [af, ab] = key.split(' ').map(Number);
        if (af === f) assert.ok(ab < blocks, `file ${f} ends before acknowledged block ${ab}`);
      }
    }
    assert.ok(written >= acked.size, 'the load wrote blocks before the kill');
    await fs.close();
    assert.deepEqual((await fsck(dev)).problems, [], 'fsck after mount');
    t.diagnostic(`${acked.size} writes acknowledged, ${inflight} in flight at the kill, ${written} blocks with data`);
  } finally {
    await dev.close();
  }
});
