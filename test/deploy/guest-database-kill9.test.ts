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
async function startController(t: TestContext, config: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [launcher, 'start', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  child.stderr!.resume();
  const early = once(child, 'exit').then(([code]) => {
    throw new Error(`controller exited (${code}) before it was ready`);
  });
  const printed = new Promise<string>((resolve) => {
    let text = '';
    const onData = (d: Buffer) => {
      text += String(d);
      if (!text.includes('Ctrl-C stops')) return;
      child.stdout!.off('data', onData).resume();
      resolve(text);
    };
    child.stdout!.on('data', onData);
  });
  const text = await Promise.race([printed, early]);
  early.catch(() => {}); // its exit later (the kill) is the test's business
  const port = /redis:\/\/[\d.]+:(\d+)/.exec(text)?.[1];
  if (port === undefined) throw new Error(`no redis:// endpoint in:\n${text}`);
  return { child, port: Number(port) };
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

/** Acknowledged keys that a client of `port` finds missing or stale (one MGET of them all). */
async function lost(port: number, acked: Map<string, string>): Promise<string[]> {
  const c = await RespClient.connect(port);
  try {
    const keys = [...acked.keys()];
    const values = (await c.call('MGET', ...keys)) as (string | null)[];
    return keys.filter((k, i) => values[i] !== acked.get(k));
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
  const exited = once(first.child, 'exit');
  const acked = await loadThenKill(first.port, 1500, () => first.child.kill('SIGKILL'));
  await exited;
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
