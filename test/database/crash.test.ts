import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { RespClient } from './helpers.ts';

const runner = fileURLToPath(new URL('./runner.ts', import.meta.url));
const SIZE = 64 * 1024 * 1024;

/** Start the runner child on `image`; resolves with the child and its port. */
async function startRunner(image: string, mode: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', runner, image, String(SIZE), mode], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n')) resolve(JSON.parse(line).port);
    });
    child.once('exit', (code) => reject(new Error(`runner exited with ${code}: ${err}`)));
  });
  return { child, port };
}

test('after kill -9 during a SET load in always mode, every acknowledged key is present', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'storvisor-db-crash-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const image = join(dir, 'db.img');
  const first = await startRunner(image, 'always');
  t.after(() => first.child.kill('SIGKILL'));

  const acknowledged = new Map<string, string>();
  const KILL_AFTER = 400;
  let killed = false;
  let reachedTarget!: () => void;
  const target = new Promise<void>((resolve) => (reachedTarget = resolve));
  const clients = await Promise.all(Array.from({ length: 8 }, () => RespClient.connect(first.port)));
  // Each client writes its own keys one after another until the connection dies.
  const loads = clients.map(async (c, ci) => {
    for (let i = 0; !killed && i < 10_000; i++) {
      const key = `c${ci}:k${i}`;
      const value = `value-${ci}-${i}-${'x'.repeat(i % 50)}`;
      try {
        const reply = await c.call('SET', key, value);
        assert.deepEqual(reply, { status: 'OK' });
        acknowledged.set(key, value);
        if (acknowledged.size >= KILL_AFTER) reachedTarget();
      } catch {
        return; // the server was killed mid-request: this one was never acknowledged
      }
    }
  });
  await target;
  killed = true;
  first.child.kill('SIGKILL');
  await once(first.child, 'exit');
  await Promise.all(loads);
  clients.forEach((c) => c.close());

  const second = await startRunner(image, 'always');
  t.after(() => second.child.kill('SIGKILL'));
  const c = await RespClient.connect(second.port);
  t.after(() => c.close());
  const keys = [...acknowledged.keys()];
  const values = (await c.call('MGET', ...keys)) as (string | null)[];
  const missing = keys.filter((k, i) => values[i] !== acknowledged.get(k));
  assert.deepEqual(missing, []);
  assert.ok(keys.length >= KILL_AFTER);
});
