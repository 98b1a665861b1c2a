/**
 * A database in a guest on a file volume acknowledges a SET in `always` only
 * once it is durable, however its log batch reached the disk (a one-chunk FUA
 * write goes as one O_DSYNC write and its FLUSH syncs nothing, #10): kill -9
 * of the controller, or of a process guest, mid-load loses no acknowledged key.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { tempDir } from '../helpers/tmp.ts';
import { RespClient } from '../database/helpers.ts';

const launcher = fileURLToPath(new URL('../../bin/storvisor.js', import.meta.url));

/** The controller process on `config`; resolves once it prints its endpoints, with the database's port. */
function startController(t: TestContext, config: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [launcher, 'start', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr!.on('data', (d) => (err += d));
    child.stdout!.on('data', (d) => {
      out += d;
      if (!out.includes('Ctrl-C stops')) return;
      const m = /redis:\/\/[\d.]+:(\d+)/.exec(out);
      if (m) resolve({ child, port: Number(m[1]) });
      else reject(new Error(`no redis:// endpoint in:\n${out}`));
    });
    child.once('exit', (code) => reject(new Error(`controller exited (${code}) before it was ready:\n${err}\n${out}`)));
  });
}

function writeConfig(t: TestContext, kind: 'thread' | 'process'): string {
  const dir = tempDir(t);
  const config = join(dir, 'storvisor.json');
  writeFileSync(config, JSON.stringify({
    dataDir: join(dir, 'data'),
    cacheMiB: 8,
    api: null,
    nbd: { port: 0 },
    volumes: [{ name: 'db', sizeMiB: 64 }],
    functions: [{ name: 'db', function: 'database', volume: 'db', deploy: 'guest', kind, standby: false, notify: 'adaptive', restart: 'always', options: { appendfsync: 'always' } }],
  }));
  return config;
}

/**
 * Eight clients SET their own keys one after another until the connection
 * dies; `onAck` sees each acknowledged one. Resolves when every client has stopped.
 */
async function setLoad(port: number, onAck: (key: string, value: string) => void): Promise<{ clients: RespClient[]; done: Promise<unknown> }> {
  const clients = await Promise.all(Array.from({ length: 8 }, () => RespClient.connect(port)));
  const done = Promise.all(clients.map(async (c, ci) => {
    for (let i = 0; ; i++) {
      const key = `c${ci}:k${i}`;
      const value = `v-${ci}-${i}-${'x'.repeat(i % 300)}`;
      try {
        assert.deepEqual(await c.call('SET', key, value), { status: 'OK' });
      } catch {
        return; // killed mid-request: never acknowledged
      }
      onAck(key, value);
    }
  }));
  return { clients, done };
}

/** Acknowledged keys that a client of `port` finds missing or stale. */
async function lost(port: number, acked: Map<string, string>): Promise<string[]> {
  const c = await RespClient.connect(port);
  try {
    const keys = [...acked.keys()];
    const out: string[] = [];
    for (let i = 0; i < keys.length; i += 1000) {
      const part = keys.slice(i, i + 1000);
      const values = (await c.call('MGET', ...part)) as (string | null)[];
      part.forEach((k, j) => values[j] !== acked.get(k) && out.push(k));
    }
    return out;
  } finally {
    c.close();
  }
}

/** A load until `killAfter` SETs are acknowledged, then `kill()`; the acknowledged keys. */
async function loadThenKill(port: number, killAfter: number, kill: () => void): Promise<Map<string, string>> {
  const acked = new Map<string, string>();
  let reached!: () => void;
  const target = new Promise<void>((resolve) => (reached = resolve));
  const { clients, done } = await setLoad(port, (k, v) => {
    acked.set(k, v);
    if (acked.size === killAfter) reached();
  });
  await target;
  kill();
  await done;
  for (const c of clients) c.close();
  return acked;
}

test('after kill -9 of the controller during a SET load on a database in a thread guest (always), every acknowledged key is present', async (t) => {
  const config = writeConfig(t, 'thread');
  const first = await startController(t, config);
  const acked = await loadThenKill(first.port, 1500, () => first.child.kill('SIGKILL'));
  await once(first.child, 'exit').catch(() => {});
  assert.ok(acked.size >= 1500);
  const second = await startController(t, config);
  assert.deepEqual(await lost(second.port, acked), []);
  second.child.kill('SIGINT');
  await once(second.child, 'exit');
});

test('after kill -9 of a process guest during a SET load on its database (always), every acknowledged key is present once it is restarted', async (t) => {
  const config = writeConfig(t, 'process');
  const controller = await startController(t, config);
  // The guest is the controller's only child process.
  const children = readFileSync(`/proc/${controller.child.pid}/task/${controller.child.pid}/children`, 'latin1').trim().split(/\s+/).map(Number);
  assert.equal(children.length, 1, `one guest process, found ${children.join(' ')}`);
  const acked = await loadThenKill(controller.port, 1500, () => process.kill(children[0]!, 'SIGKILL'));
  assert.ok(acked.size >= 1500);
  // The restarted guest listens on the same port; wait (bounded) until it answers.
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const c = await RespClient.connect(controller.port);
      const pong = await c.call('PING');
      c.close();
      if ((pong as { status?: string }).status === 'PONG') break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error('the guest was not restarted within 30 s');
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.deepEqual(await lost(controller.port, acked), []);
  controller.child.kill('SIGINT');
  await once(controller.child, 'exit');
});
