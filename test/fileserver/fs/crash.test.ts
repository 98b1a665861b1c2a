import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FileBlockDevice } from '../../../src/block/file-device.ts';
import { fsck, openFileSystem } from '../../../src/functions/fileserver/fs/index.ts';
import type { FileSystem } from '../../../src/functions/fileserver/fs/types.ts';
import { listAll, pattern, ROOT, ROOT_GEN } from './helpers.ts';

const RUNNER = fileURLToPath(new URL('./crash-runner.ts', import.meta.url));
const ROUNDS = 4;

type Entry = { kind: 'file'; size: number; seed: number } | { kind: 'dir' };

/** What the acknowledged operations say must exist, plus the names an unacknowledged one may have touched. */
class Model {
  readonly names = new Map<string, Entry>();
  readonly uncertain = new Set<string>();
  apply(line: string): void {
    const [k, a, b, c] = line.split(' ');
    if (k === 'W' || k === 'U') this.names.set(a, { kind: 'file', size: Number(b), seed: Number(c) });
    else if (k === 'M') this.names.set(a, { kind: 'dir' });
    else if (k === 'X') this.names.delete(a);
    else if (k === 'R') {
      this.names.set(b, this.names.get(a)!);
      this.names.delete(a);
    }
  }
  touches(line: string): string[] {
    const [k, a, b] = line.split(' ');
    return k === 'R' ? [a, b] : [a];
  }
}

/** Run the load in a child, kill -9 it after `afterMs` of work; returns acknowledged and in-flight ops. */
async function runAndKill(image: string, epoch: number, afterMs: number): Promise<{ acked: string[]; inflight: string[] }> {
  const child = spawn(process.execPath, ['--import', 'tsx', RUNNER, image, String(epoch)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const acked: string[] = [];
  const begun = new Set<string>();
  let stderr = '';
  let buf = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line === 'READY') setTimeout(() => (child.kill('SIGKILL'), resolve()), afterMs);
        else if (line.startsWith('BEGIN ')) begun.add(line.slice(6));
        else if (line.startsWith('ACK ')) {
          begun.delete(line.slice(4));
          acked.push(line.slice(4));
        }
      }
    });
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`runner exited early (${code}): ${stderr}`));
    });
  });
  await exited;
  return { acked, inflight: [...begun] };
}

async function verify(fs: FileSystem, model: Model): Promise<number> {
  const present = new Map((await listAll(fs, ROOT, ROOT_GEN, 500)).map((e) => [e.name, e]));
  let checked = 0;
  for (const [name, want] of model.names) {
    if (model.uncertain.has(name)) continue;
    assert.ok(present.has(name), `acknowledged '${name}' is missing`);
    const a = await fs.lookup(ROOT, ROOT_GEN, name);
    if (want.kind === 'dir') {
      assert.equal(a.type, 'dir', name);
    } else {
      assert.equal(a.type, 'file', name);
      assert.equal(a.size, want.size, `size of ${name}`);
      const { data } = await fs.read(a.ino, a.generation, 0, want.size);
      assert.ok(Buffer.from(data).equals(Buffer.from(pattern(want.size, want.seed))), `content of ${name}`);
    }
    checked++;
  }
  for (const name of present.keys()) {
    assert.ok(model.names.has(name) || model.uncertain.has(name), `'${name}' exists but no operation made it`);
  }
  return checked;
}

test('after kill -9 at random moments the filesystem mounts clean and keeps every acknowledged operation', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'svfs-crash-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const image = join(dir, 'fs.img');
  const model = new Model();
  let total = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const { acked, inflight } = await runAndKill(image, round, 150 + Math.floor(Math.random() * 600));
    for (const line of acked) model.apply(line);
    for (const line of inflight) for (const n of model.touches(line)) model.uncertain.add(n);
    const dev = await FileBlockDevice.open(image, 64 << 20);
    try {
      // fsck reads through the journal exactly as a mount would replay it.
      const before = await fsck(dev);
      assert.deepEqual(before.problems, [], `round ${round}: fsck before mount`);
      const fs = await openFileSystem(dev);
      total += await verify(fs, model);
      await fs.close();
      const after = await fsck(dev);
      assert.deepEqual(after.problems, [], `round ${round}: fsck after mount`);
      assert.equal(after.stats.journalRecords, 0);
    } finally {
      await dev.close();
    }
    // Names an interrupted operation touched may or may not exist: remove them so the next round starts certain.
    const dev2 = await FileBlockDevice.open(image, 64 << 20);
    const fs2 = await openFileSystem(dev2);
    for (const name of model.uncertain) {
      const a = await fs2.lookup(ROOT, ROOT_GEN, name).catch(() => null);
      if (a?.type === 'dir') await fs2.rmdir(ROOT, ROOT_GEN, name);
      else if (a) await fs2.remove(ROOT, ROOT_GEN, name);
      model.names.delete(name);
    }
    model.uncertain.clear();
    await fs2.close();
    await dev2.close();
    t.diagnostic(`round ${round}: ${acked.length} acknowledged, ${inflight.length} in flight`);
  }
  assert.ok(total > 0, 'the load acknowledged operations before the kills');
});
