/**
 * The stay-awake after a reply (src/net/stay-awake.ts) and the runnable-thread
 * meter it asks (src/native/runnable-meter.ts): the spin's bounds one at a time.
 * The file server's real QD1 clients against it are in test/fileserver/nfs/stay-awake.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { StayAwake } from '../../src/net/stay-awake.ts';
import { RunnableMeter } from '../../src/native/runnable-meter.ts';

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
