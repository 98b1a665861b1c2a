/**
 * The RPC server stays awake for a bounded time after a reply (rpc/stay-awake.ts):
 * the spin's bounds one at a time, then real QD1 clients (our own, nfs-cat,
 * nfs-ls) against a server that spins between their calls.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { StayAwake } from '../../../src/functions/fileserver/rpc/stay-awake.ts';
import { RunnableMeter } from '../../../src/functions/fileserver/rpc/runnable-meter.ts';
import { readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { NfsClient, NFS } from './helpers/nfs-client.ts';
import { nfsUrl } from './helpers/real-clients.ts';
import { startMemoryServer } from './helpers/server.ts';
import { requireTools } from '../../helpers/tools.ts';

const run = promisify(execFile);

/** Wait for `cond` on the event loop (setImmediate turns), failing after `ms`. */
async function until(cond: () => boolean, ms = 2_000, what = 'condition'): Promise<void> {
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

/** A clock that moves only when told (each empty pass moves it by `step` ms). */
function fakeClock(step: number) {
  let t = 1_000;
  return { now: () => t, yieldCpu: () => void (t += step), advance: (ms: number) => void (t += ms) };
}

test('a spin after a reply ends when its budget is used, counted as a miss', async () => {
  const clock = fakeClock(0.01);
  const s = new StayAwake({ budgetUs: 100, contention: null, now: clock.now, yieldCpu: clock.yieldCpu });
  s.replied();
  assert.equal(s.isSpinning, true);
  await until(() => !s.isSpinning, 2_000, 'the spin to end');
  assert.deepEqual({ spins: s.stats.spins, hits: s.stats.hits, misses: s.stats.misses }, { spins: 1, hits: 0, misses: 1 });
  assert.ok(s.stats.passes >= 9 && s.stats.passes <= 11, `about budget / step passes (${s.stats.passes})`);
});

test('a request arriving ends the spin at its next pass, counted as a hit', async () => {
  const clock = fakeClock(0);
  const s = new StayAwake({ budgetUs: 100, contention: null, now: clock.now, yieldCpu: clock.yieldCpu });
  s.replied();
  await new Promise((r) => setImmediate(r));
  s.arrived();
  await until(() => !s.isSpinning, 2_000, 'the spin to end');
  assert.equal(s.stats.hits, 1);
  assert.equal(s.stats.misses, 0);
});

test('a reply during a spin restarts its budget from that reply', async () => {
  const clock = fakeClock(0);
  const s = new StayAwake({ budgetUs: 100, contention: null, now: clock.now, yieldCpu: clock.yieldCpu });
  s.replied();
  clock.advance(0.09);
  s.arrived();
  s.replied(); // answered before the pass saw the request
  clock.advance(0.09); // 180 µs after the first reply, 90 µs after the second
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  assert.equal(s.isSpinning, true, 'still within the budget of the second reply');
  clock.advance(0.02);
  await until(() => !s.isSpinning, 2_000, 'the spin to end');
  assert.deepEqual({ spins: s.stats.spins, hits: s.stats.hits, misses: s.stats.misses }, { spins: 1, hits: 1, misses: 1 });
});

test('no spin starts while another thread wants the core', () => {
  const s = new StayAwake({ budgetUs: 100, contention: { contended: () => true, close: () => {} } });
  s.replied();
  assert.equal(s.isSpinning, false);
  assert.equal(s.stats.contended, 1);
  assert.equal(s.stats.spins, 0);
});

test('once spins that caught nothing pass the waste share of a window, none starts until the next window', async () => {
  const clock = fakeClock(0.04);
  // 5% of 10 ms = 0.5 ms of waste; each missed spin of a 100 µs budget wastes 120 µs (three 40 µs passes): five spins.
  const s = new StayAwake({ budgetUs: 100, maxWasteShare: 0.05, windowMs: 10, contention: null, now: clock.now, yieldCpu: clock.yieldCpu });
  for (let i = 0; i < 8; i++) {
    s.replied();
    await until(() => !s.isSpinning, 2_000, 'the spin to end');
  }
  assert.equal(s.stats.misses, 5);
  assert.equal(s.stats.overBudget, 3);
  clock.advance(10);
  s.replied();
  assert.equal(s.isSpinning, true, 'a new window may spin again');
  await until(() => !s.isSpinning, 2_000, 'the spin to end');
});

test('stop() ends a spin under way at its next pass and no spin starts after it', async () => {
  const s = new StayAwake({ budgetUs: 1_000_000, contention: null });
  s.replied();
  s.stop();
  await until(() => !s.isSpinning, 2_000, 'the spin to end');
  s.replied();
  assert.equal(s.isSpinning, false);
  assert.equal(s.stats.spins, 1);
});

test('a QD1 client gets every one of 2,000 calls answered while the server stays awake between them', async (t) => {
  const { server, port } = await startMemoryServer({ stayAwake: { contention: null } });
  t.after(() => server.stop());
  const c = await NfsClient.connect(port);
  t.after(() => c.close());
  const root = await c.root();
  const f = await c.create(root, 'f', 0, { mode: 0o644 });
  const data = randomBytes(64 << 10);
  assert.equal((await c.write(f.fh!, 0, data, 2)).status, 0);
  for (let i = 0; i < 2_000; i++) {
    const k = i % 3;
    if (k === 0) assert.equal((await c.rpc.call(NFS, 3, 0)).stat, 0);
    else if (k === 1) assert.equal((await c.getattr(f.fh!)).status, 0);
    else {
      const r = await c.read(f.fh!, (i % 16) * 4096, 4096);
      assert.equal(r.status, 0);
      assert.ok(Buffer.from(r.data!).equals(data.subarray((i % 16) * 4096, (i % 16 + 1) * 4096)));
    }
  }
  const st = server.stats();
  assert.ok(st.awakeSpins! > 0, 'the server spun after replies');
  assert.ok(st.awakeHits! > 0, `spins caught the next call (${JSON.stringify(st)})`);
});

test('nfs-cat and nfs-ls, one call at a time each, all complete against a server that stays awake', async (t) => {
  requireTools('nfs-cat', 'nfs-ls');
  const { server, port } = await startMemoryServer({ stayAwake: { contention: null } });
  t.after(() => server.stop());
  const c = await NfsClient.connect(port);
  const root = await c.root();
  const data = randomBytes(200_000);
  const f = await c.create(root, 'file', 0, { mode: 0o644 });
  assert.equal((await c.write(f.fh!, 0, data, 2)).status, 0);
  for (let i = 0; i < 20; i++) assert.equal((await c.create(root, `e${i}`, 0, { mode: 0o644 })).status, 0);
  await c.close();
  for (let i = 0; i < 5; i++) {
    const cat = await run('nfs-cat', [nfsUrl(port, '/file')], { encoding: 'buffer', maxBuffer: 1 << 20, timeout: 20_000 });
    assert.ok(cat.stdout.equals(data), `nfs-cat pass ${i}`);
    const ls = await run('nfs-ls', [nfsUrl(port)], { timeout: 20_000 });
    assert.equal(ls.stdout.trim().split('\n').length, 21, `nfs-ls pass ${i}`);
  }
  assert.ok(server.stats().awakeSpins! > 0, 'the server spun between their calls');
});

test('with a budget of 0 the server answers without ever spinning', async (t) => {
  const { server, port } = await startMemoryServer({ stayAwake: { budgetUs: 0 } });
  t.after(() => server.stop());
  const c = await NfsClient.connect(port);
  t.after(() => c.close());
  for (let i = 0; i < 50; i++) assert.equal((await c.rpc.call(NFS, 3, 0)).stat, 0);
  assert.equal(server.stats().awakeSpins, 0);
});

test('the runnable meter says contended once a thread more than the cores is runnable, and free again at the cores or fewer', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'storvisor-loadavg-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'loadavg');
  const say = (runnable: number) => writeFileSync(file, `0.50 0.40 0.30 ${runnable}/300 4242\n`);
  say(1);
  const m = new RunnableMeter(2, file);
  t.after(() => m.close());
  let now = 0;
  const sample = (n: number) => {
    for (let i = 0; i < n; i++) m.contended((now += 10));
    return m.contended(now);
  };
  assert.equal(sample(5), false, 'one runnable thread on two cores');
  say(2);
  assert.equal(sample(30), false, 'two runnable threads on two cores: a spinner and its client fit');
  say(3);
  assert.equal(sample(30), true, 'three runnable threads on two cores: someone waits');
  say(1);
  assert.equal(sample(30), false, 'free again');
  say(6);
  assert.equal(sample(30), true, 'six runnable threads on two cores');
  say(2);
  assert.equal(sample(3), true, 'hysteresis: not free at once');
  say(1);
  assert.equal(sample(30), false, 'free again');
  assert.ok(m.samples > 90);
});

test('the runnable meter never says contended where loadavg cannot be read', () => {
  const m = new RunnableMeter(2, '/nonexistent/loadavg');
  assert.equal(m.contended(1_000), false);
  m.close();
});

test('a spin that replies keep going ends at its next pass once the cores are wanted', async () => {
  const clock = fakeClock(0);
  let busy = false;
  const s = new StayAwake({ budgetUs: 100, contention: { contended: () => busy, close: () => {} }, now: clock.now, yieldCpu: clock.yieldCpu });
  s.replied();
  s.arrived();
  s.replied(); // answered within the turn: the spin goes on
  await new Promise((r) => setImmediate(r));
  assert.equal(s.isSpinning, true);
  busy = true;
  s.arrived();
  s.replied();
  await until(() => !s.isSpinning, 2_000, 'the spin to end');
  assert.deepEqual({ hits: s.stats.hits, contended: s.stats.contended, misses: s.stats.misses }, { hits: 2, contended: 1, misses: 0 });
});

test('the server opens its contention meters at its first reply and closes them when it stops', async () => {
  const base = meterFds();
  const { server, port } = await startMemoryServer();
  assert.equal(meterFds(), base, 'nothing opened before a call was answered');
  const c = await NfsClient.connect(port);
  assert.equal((await c.rpc.call(NFS, 3, 0)).stat, 0);
  assert.equal(meterFds(), base + 1, '/proc/loadavg is open while the server runs');
  await c.close();
  await server.stop();
  assert.equal(meterFds(), base, 'and closed once it stopped');
});

/** Descriptors of this process open on /proc/loadavg (the runnable meter's file). */
function meterFds(): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === '/proc/loadavg') n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}
