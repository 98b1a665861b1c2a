import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Restarter } from '../../src/deploy/restart-policy.ts';

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
