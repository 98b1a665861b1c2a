import { test, type TestContext } from 'node:test';
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

/** A fresh image in a temporary folder (removed after the test), and the runner started on it. */
async function firstRun(t: TestContext, name: string, mode: string): Promise<{ image: string; first: { child: ChildProcess; port: number } }> {
  const dir = mkdtempSync(join(tmpdir(), `storvisor-db-${name}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const image = join(dir, 'db.img');
  const first = await startRunner(image, mode);
  t.after(() => first.child.kill('SIGKILL'));
  return { image, first };
}

/**
 * kill -9 the first runner, wait for the clients' loads to see it (`settled`) and close
 * them, then start a second runner on the same image: a client of it.
 */
async function killAndRestart(
  t: TestContext,
  first: { child: ChildProcess },
  settled: Promise<unknown>,
  clients: RespClient[],
  image: string,
  mode: string,
): Promise<RespClient> {
  first.child.kill('SIGKILL');
  await once(first.child, 'exit');
  await settled;
  clients.forEach((c) => c.close());
  const second = await startRunner(image, mode);
  t.after(() => second.child.kill('SIGKILL'));
  const c = await RespClient.connect(second.port);
  t.after(() => c.close());
  return c;
}

/**
 * Eight clients, each writing its own keys one after another (at most `count`) until
 * `stop()` or the connection dies; `acked` sees each acknowledged SET.
 */
async function setLoad(
  port: number,
  count: number,
  stop: () => boolean,
  acked: (key: string, value: string) => void,
): Promise<{ clients: RespClient[]; loads: Promise<void>[] }> {
  const clients = await Promise.all(Array.from({ length: 8 }, () => RespClient.connect(port)));
  const loads = clients.map(async (c, ci) => {
    for (let i = 0; !stop() && i < count; i++) {
      const key = `c${ci}:k${i}`;
      const value = `value-${ci}-${i}-${'x'.repeat(i % 50)}`;
      try {
        assert.deepEqual(await c.call('SET', key, value), { status: 'OK' });
      } catch {
        return; // the server was killed mid-request: this one was never acknowledged
      }
      acked(key, value);
    }
  });
  return { clients, loads };
}

/**
 * Kill -9 the database once `killAfter` SETs are acknowledged under a SET load,
 * restart it, and list the acknowledged keys that are missing or stale.
 */
async function lostAfterKill(t: TestContext, name: string, mode: string, killAfter: number): Promise<{ lost: string[]; acknowledged: number }> {
  const { image, first } = await firstRun(t, name, mode);
  const acknowledged = new Map<string, string>();
  let killed = false;
  let reachedTarget!: () => void;
  const target = new Promise<void>((resolve) => (reachedTarget = resolve));
  const { clients, loads } = await setLoad(first.port, 1_000_000, () => killed, (key, value) => {
    acknowledged.set(key, value);
    if (acknowledged.size >= killAfter) reachedTarget();
  });
  await target;
  killed = true;
  const c = await killAndRestart(t, first, Promise.all(loads), clients, image, mode);
  const keys = [...acknowledged.keys()];
  const lost: string[] = [];
  for (let i = 0; i < keys.length; i += 1000) {
    const part = keys.slice(i, i + 1000);
    const values = (await c.call('MGET', ...part)) as (string | null)[];
    part.forEach((k, j) => values[j] !== acknowledged.get(k) && lost.push(k));
  }
  return { lost, acknowledged: keys.length };
}

test('after kill -9 during a SET load in always mode, every acknowledged key is present', async (t) => {
  const { lost, acknowledged } = await lostAfterKill(t, 'crash', 'always', 400);
  assert.deepEqual(lost, []);
  assert.ok(acknowledged >= 400);
});

test('after kill -9 during MULTI/EXEC load in always mode, every transaction is all there or not at all', async (t) => {
  const { image, first } = await firstRun(t, 'crash-tx', 'always');

  // Each client's transaction i writes i to its three keys and pushes i to its list:
  // a torn transaction would leave the keys disagreeing (or the list out of step).
  const acknowledged = new Map<number, number>();
  const KILL_AFTER = 300;
  let total = 0;
  let killed = false;
  let reachedTarget!: () => void;
  const target = new Promise<void>((resolve) => (reachedTarget = resolve));
  const clients = await Promise.all(Array.from({ length: 6 }, () => RespClient.connect(first.port)));
  const loads = clients.map(async (c, ci) => {
    for (let i = 1; !killed && i < 10_000; i++) {
      try {
        const v = String(i);
        const replies = await c.pipeline([
          ['MULTI'],
          ['SET', `t${ci}:a`, v],
          ['SET', `t${ci}:b`, v],
          ['RPUSH', `t${ci}:log`, v],
          ['SET', `t${ci}:c`, v],
          ['EXEC'],
        ]);
        assert.deepEqual(replies[5], [{ status: 'OK' }, { status: 'OK' }, i, { status: 'OK' }]);
        acknowledged.set(ci, i);
        if (++total >= KILL_AFTER) reachedTarget();
      } catch {
        return; // killed mid-transaction: never acknowledged
      }
    }
  });
  await target;
  killed = true;
  const c = await killAndRestart(t, first, Promise.all(loads), clients, image, 'always');
  for (let ci = 0; ci < clients.length; ci++) {
    const [a, b, cc] = (await c.call('MGET', `t${ci}:a`, `t${ci}:b`, `t${ci}:c`)) as (string | null)[];
    const len = (await c.call('LLEN', `t${ci}:log`)) as number;
    assert.equal(a, b, `client ${ci}: a and b disagree`);
    assert.equal(a, cc, `client ${ci}: a and c disagree`);
    assert.equal(String(len), a ?? '0', `client ${ci}: the list is out of step`);
    assert.ok(Number(a ?? 0) >= (acknowledged.get(ci) ?? 0), `client ${ci}: an acknowledged transaction is missing`);
  }
});

test('after kill -9 during compactions under a SET load in always mode, every acknowledged and preloaded key is present', async (t) => {
  const { image, first } = await firstRun(t, 'crash-compact', 'always');
  let compactions = 0;
  first.child.stderr!.on('data', (d: Buffer) => (compactions += d.toString().split('database log compacted').length - 1));

  // A preloaded data set big enough that each compaction's snapshot takes many slices.
  const PRELOAD = 16_000;
  const loader = await RespClient.connect(first.port);
  for (let i = 0; i < PRELOAD; i += 1000) {
    await loader.pipeline(Array.from({ length: 1000 }, (_, j) => ['SET', `pre:${i + j}`, `p${i + j}-${'z'.repeat(64)}`]));
  }
  const acknowledged = new Map<string, string>();
  /** The overwrite each client had in flight at the kill: it may have become durable without an answer. */
  const inFlight = new Map<string, string>();
  let killed = false;
  let acksAtRewrite = Infinity;
  let reachedTarget!: () => void;
  const target = new Promise<void>((resolve) => (reachedTarget = resolve));
  const clients = await Promise.all(Array.from({ length: 8 }, () => RespClient.connect(first.port)));
  const loads = clients.map(async (c, ci) => {
    for (let i = 0; !killed && i < 100_000; i++) {
      const key = `c${ci}:k${i}`;
      const value = `v-${ci}-${i}`;
      // Overwrites of preloaded keys (each client its own eighth): changes ahead of and behind the snapshot's walk.
      const pre = `pre:${ci + 8 * ((i * 7919) % (PRELOAD / 8))}`;
      try {
        assert.deepEqual(await c.call('SET', key, value), { status: 'OK' });
        acknowledged.set(key, value);
        inFlight.set(pre, value);
        assert.deepEqual(await c.call('SET', pre, value), { status: 'OK' });
        inFlight.delete(pre);
        acknowledged.set(pre, value);
        // Killed 20 acknowledged writes into the second rewrite this client saw started.
        if (acknowledged.size >= acksAtRewrite + 20) reachedTarget();
      } catch {
        return; // the server was killed mid-request: this one was never acknowledged
      }
    }
  });
  // Rewrites one after another (each is refused while one runs), until the kill.
  let started = 0;
  const rewrites = (async () => {
    while (!killed) {
      const reply = await loader.call('BGREWRITEAOF').catch(() => null);
      if (reply !== null && typeof reply === 'object' && 'status' in reply && ++started === 2) acksAtRewrite = acknowledged.size;
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  await target;
  killed = true;
  const c = await killAndRestart(t, first, Promise.all([...loads, rewrites]), [...clients, loader], image, 'always');
  assert.ok(compactions >= 1, 'no compaction finished before the kill');
  for (let i = 0; i < PRELOAD; i++) if (!acknowledged.has(`pre:${i}`)) acknowledged.set(`pre:${i}`, `p${i}-${'z'.repeat(64)}`);
  const keys = [...acknowledged.keys()];
  const missing: string[] = [];
  for (let i = 0; i < keys.length; i += 5000) {
    const part = keys.slice(i, i + 5000);
    const values = (await c.call('MGET', ...part)) as (string | null)[];
    part.forEach((k, j) => {
      if (values[j] !== acknowledged.get(k) && values[j] !== inFlight.get(k)) missing.push(k);
    });
  }
  assert.deepEqual(missing.slice(0, 10), []);
});

test('after kill -9 during a SET load in everysec mode, every acknowledged key is present', async (t) => {
  // everysec replies once the record is written (not yet flushed), as Redis writes its AOF
  // before replying: a killed process loses nothing acknowledged; only a host crash may lose
  // up to the second since the last flush.
  const { lost, acknowledged } = await lostAfterKill(t, 'crash-everysec', 'everysec', 2000);
  assert.deepEqual(lost, []);
  assert.ok(acknowledged >= 2000);
});
