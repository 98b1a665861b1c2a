import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FileBlockDevice } from '../../../src/block/file-device.ts';
import { fsck, openFileSystem } from '../../../src/functions/fileserver/fs/index.ts';
import { blockContent, FILE_BLOCKS } from './overwrite-crash-runner.ts';
import { ROOT, ROOT_GEN } from './helpers.ts';

const RUNNER = fileURLToPath(new URL('./overwrite-crash-runner.ts', import.meta.url));

/** Run the runner until it has acknowledged `acks` writes, then kill -9 it. Returns the last acknowledged version per block. */
async function runAndKill(image: string, acks: number): Promise<{ acked: Map<number, number>; inflight: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', RUNNER, image], { stdio: ['ignore', 'pipe', 'pipe'] });
  const acked = new Map<number, number>();
  const inflight = new Map<number, number>();
  let seen = 0;
  let stderr = '';
  let buf = '';
  let killed = false;
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const deadline = setTimeout(() => reject(new Error(`runner acknowledged only ${seen} writes in 60 s: ${stderr}`)), 60_000);
    child.stdout.on('data', (d: Buffer) => {
      if (killed) return; // lines after the kill decision are not trusted: the model is what was read before it
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const [k, a, b] = buf.slice(0, nl).split(' ');
        buf = buf.slice(nl + 1);
        if (k === 'BEGIN') inflight.set(Number(a), Number(b));
        else if (k === 'ACK') {
          inflight.delete(Number(a));
          acked.set(Number(a), Number(b));
          if (++seen === acks) {
            killed = true;
            child.kill('SIGKILL');
            clearTimeout(deadline);
            resolve();
            return;
          }
        }
      }
    });
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`runner exited early (${code}): ${stderr}`));
    });
  });
  await exited;
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
