import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FileBlockDevice } from '../../../src/block/file-device.ts';
import { fsck, openFileSystem } from '../../../src/functions/fileserver/fs/index.ts';
import { blockContent, FILE_BLOCKS } from './overwrite-crash-runner.ts';
import { ROOT, ROOT_GEN } from './helpers.ts';
import { killAtAcks } from './kill-at-acks.ts';

const RUNNER = fileURLToPath(new URL('./overwrite-crash-runner.ts', import.meta.url));

/** Run the runner until it has acknowledged `acks` writes, then kill -9 it. Returns the last acknowledged version per block. */
async function runAndKill(image: string, acks: number): Promise<{ acked: Map<number, number>; inflight: number }> {
  const acked = new Map<number, number>();
  const inflight = new Map<number, number>();
  let seen = 0;
  await killAtAcks(RUNNER, image, (k, a, b) => {
    if (k === 'BEGIN') inflight.set(Number(a), Number(b));
    else if (k === 'ACK') {
      inflight.delete(Number(a));
      acked.set(Number(a), Number(b));
      seen++;
    }
  }, () => seen === acks);
  return { acked, inflight: inflight.size };
}

test('after kill -9 during concurrent FILE_SYNC overwrites of one file, every acknowledged write is there and fsck is clean', { timeout: 120_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'svfs-overwrite-crash-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const image = join(dir, 'fs.img');
  const { acked, inflight } = await runAndKill(image, 600);
  const dev = await FileBlockDevice.open(image, 64 << 20);
  try {
    assert.deepEqual((await fsck(dev)).problems, [], 'fsck before mount');
    const fs = await openFileSystem(dev);
    const f = await fs.lookup(ROOT, ROOT_GEN, 'shared');
    assert.equal(f.size, FILE_BLOCKS * 4096, 'overwrites do not change the size');
    const { data } = await fs.read(f.ino, f.generation, 0, f.size);
    let newer = 0;
    for (let b = 0; b < FILE_BLOCKS; b++) {
      const got = data.subarray(b * 4096, (b + 1) * 4096);
      const v = new DataView(got.buffer, got.byteOffset).getUint32(4, true);
      // The child may have gone on writing between the kill decision and the kill: newer is fine, older is a lost write.
      const last = acked.get(b) ?? 0;
      assert.ok(v >= last, `block ${b} holds version ${v} but version ${last} was acknowledged`);
      assert.ok(Buffer.from(got).equals(Buffer.from(blockContent(b, v))), `block ${b} version ${v} is whole`);
      if (v > 0) newer++;
    }
    assert.ok(newer > 0, 'the load overwrote blocks before the kill');
    await fs.close();
    assert.deepEqual((await fsck(dev)).problems, [], 'fsck after mount');
    t.diagnostic(`${[...acked.values()].length} blocks acknowledged, ${inflight} in flight at the kill`);
  } finally {
    await dev.close();
  }
});
