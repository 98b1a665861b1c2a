import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Restarter, restartStatus } from '../../src/deploy/restart-policy.ts';

/** The restart policy, on an injected clock: a crashing function is never given up on. */
function clock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_000_000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

test('a function crashing in a tight loop keeps being restarted far past the old five-in-a-minute limit, with back-off growing to the cap', () => {
  const c = clock();
  const r = new Restarter('on-failure', { baseMs: 50, maxMs: 30_000, stableMs: 60_000, now: c.now });
  const delays: number[] = [];
  for (let i = 0; i < 40; i++) {
    r.started();
    c.advance(10); // crashes 10 ms after each start
    const plan = r.next(true);
    assert.ok(plan, `crash ${i + 1} is restarted`);
    assert.equal(plan.consecutive, i + 1);
    assert.equal(plan.at, c.now() + plan.delayMs);
    delays.push(plan.delayMs);
    c.advance(plan.delayMs);
  }
  assert.deepEqual(delays.slice(0, 6), [50, 100, 200, 400, 800, 1600]);
  for (let i = 1; i < delays.length; i++) assert.ok(delays[i]! >= delays[i - 1]!, 'back-off never shrinks within a crash loop');
  assert.equal(Math.max(...delays), 30_000, 'capped');
  assert.equal(delays.at(-1), 30_000);
});

test('the scheduled restart is visible until it begins, and a stop cancels it', () => {
  const c = clock();
  const r = new Restarter('always', { now: c.now });
  r.started();
  const plan = r.next(true)!;
  assert.deepEqual(r.scheduled(), plan);
  r.started();
  assert.equal(r.scheduled(), null);
  r.next(true);
  r.cancel();
  assert.equal(r.scheduled(), null);
});

test('a function that ran stably after its crashes gets a fast restart on its next crash', () => {
  const c = clock();
  const r = new Restarter('on-failure', { baseMs: 50, maxMs: 30_000, stableMs: 60_000, now: c.now });
  for (let i = 0; i < 12; i++) {
    r.started();
    c.advance(r.next(true)!.delayMs);
  }
  r.started();
  c.advance(60_000);
  assert.deepEqual(r.next(true), { delayMs: 50, at: c.now() + 50, consecutive: 1 });
});

test('policy never stays down and on-failure does not restart a clean exit, however few crashes', () => {
  const c = clock();
  assert.equal(new Restarter('never', { now: c.now }).next(true), null);
  assert.equal(new Restarter('on-failure', { now: c.now }).next(false), null);
  assert.ok(new Restarter('always', { now: c.now }).next(false));
});

test('the defaults are 50 ms base, a 30 s cap and 60 s to count as stable', () => {
  const r = new Restarter('always');
  assert.deepEqual([r.baseMs, r.maxMs, r.stableMs], [50, 30_000, 60_000]);
});

test('a crash one millisecond short of the stable window keeps the back-off; at the window it is forgotten', () => {
  const c = clock();
  const r = new Restarter('on-failure', { baseMs: 10, maxMs: 10_000, stableMs: 1_000, now: c.now });
  r.started();
  r.next(true);
  r.started();
  c.advance(999);
  assert.deepEqual(r.next(true), { delayMs: 20, at: c.now() + 20, consecutive: 2 });
  r.started();
  c.advance(1_000);
  assert.deepEqual(r.next(true), { delayMs: 10, at: c.now() + 10, consecutive: 1 });
});

test('thousands of crashes in a row keep a finite delay at the cap (the exponent is bounded)', () => {
  const c = clock();
  const r = new Restarter('always', { baseMs: 1, maxMs: 5_000, now: c.now });
  let plan = null;
  for (let i = 0; i < 5_000; i++) {
    r.started();
    plan = r.next(true);
  }
  assert.equal(plan!.consecutive, 5_000);
  assert.equal(plan!.delayMs, 5_000);
  assert.ok(Number.isFinite(plan!.at));
});

test('restartStatus shows the scheduled restart as an ISO time and a non-negative wait, and null when none is due', () => {
  const r = new Restarter('always', { baseMs: 60_000, maxMs: 60_000 });
  assert.equal(restartStatus(r), null);
  r.started();
  const plan = r.next(true)!;
  const s = restartStatus(r)!;
  assert.equal(s.at, new Date(plan.at).toISOString());
  assert.equal(s.consecutiveCrashes, 1);
  assert.ok(s.inMs > 0 && s.inMs <= 60_000, String(s.inMs));
  const past = new Restarter('always', { baseMs: 1, maxMs: 1, now: () => 0 });
  past.started();
  past.next(true);
  assert.equal(restartStatus(past)!.inMs, 0, 'a restart due in the past waits 0, never a negative time');
  r.cancel();
  assert.equal(restartStatus(r), null);
});
