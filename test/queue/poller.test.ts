import { test } from 'node:test';
import assert from 'node:assert/strict';
import { POLL_IDLE_PASSES, Poller, type PolledQueue } from '../../src/queue/poller.ts';

/** A queue whose requests are injected by the test and whose doorbell is a promise. */
class FakeQueue implements PolledQueue {
  pending_ = 0;
  taken = 0;
  kickEnabled = false;
  broken = false;
  inFlight = 0;
  private kick: (() => void) | undefined;
  polls = 0;
  poll(): number {
    this.polls++;
    const n = this.pending_;
    this.taken += n;
    this.pending_ = 0;
    return n;
  }
  enableKick(): boolean {
    this.kickEnabled = true;
    return this.pending_ === 0;
  }
  disableKick(): void {
    this.kickEnabled = false;
  }
  waitKick(): Promise<'kick' | 'timeout'> {
    return new Promise((resolve) => (this.kick = () => resolve('kick')));
  }
  submit(n: number): void {
    this.pending_ += n;
    if (this.kickEnabled) {
      const k = this.kick;
      this.kick = undefined;
      k?.();
    }
  }
}

const until = async (cond: () => boolean) => {
  while (!cond()) await new Promise((r) => setImmediate(r));
};

test('poll mode keeps spinning with the kick disabled while no other thread wants the core', async () => {
  const p = new Poller(50, undefined, { contention: { contended: () => false, close() {} } });
  const q = new FakeQueue();
  p.add(q, 'poll');
  await until(() => q.polls > 100);
  assert.equal(q.kickEnabled, false);
  assert.equal(p.spinningCount(), 1);
  q.submit(3);
  await until(() => q.taken === 3);
  p.stop();
});

test('adaptive mode sleeps after its budget and wakes on a kick', async () => {
  const p = new Poller(0);
  const q = new FakeQueue();
  p.add(q, 'adaptive');
  await until(() => p.counters.sleeps === 1);
  assert.equal(q.kickEnabled, true);
  assert.equal(p.spinningCount(), 0);
  q.submit(2);
  await until(() => q.taken === 2);
  assert.equal(p.counters.wakeups, 1);
  p.stop();
});

test('notify mode never spins: each kick drains the queue and re-arms', async () => {
  const p = new Poller(1000);
  const q = new FakeQueue();
  p.add(q, 'notify');
  assert.equal(p.spinningCount(), 0);
  for (let i = 1; i <= 5; i++) {
    q.submit(1);
    await until(() => q.taken === i);
  }
  assert.equal(p.counters.iterations, 0);
  assert.equal(q.kickEnabled, true);
  p.stop();
});

test('a broken queue is dropped from the loop', async () => {
  const p = new Poller(50);
  const q = new FakeQueue();
  p.add(q, 'poll');
  q.broken = true;
  await until(() => p.spinningCount() === 0);
  const polls = q.polls;
  await new Promise((r) => setImmediate(r));
  assert.equal(q.polls, polls);
  p.stop();
});

test('a pass already scheduled when the poller stops leaves the engine woken by its eventfd', async () => {
  // A fake engine with one request in flight: a spinning poller turns its wake-ups off.
  const calls: boolean[] = [];
  const engine = {
    kind: 'io_uring' as const,
    inFlight: 1,
    onBusy: null as (() => void) | null,
    read() {}, write() {}, datasync() {}, close() {},
    poll: () => 0,
    setSpinning(on: boolean) {
      calls.push(on);
      return 0;
    },
    stats: () => ({ engine: 'io_uring' as const, submitted: 0, completed: 0, submits: 0, reapedPolling: 0, reapedWoken: 0, inFlight: 1, maxInFlight: 1 }),
  };
  const poller = new Poller(50, engine);
  const q = new FakeQueue();
  poller.add(q, 'poll');
  await until(() => calls.includes(true));
  poller.stop(); // a pass is still scheduled (the loop spins)
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  assert.equal(calls.at(-1), false, `wake-ups must end on: ${calls.join(',')}`);
});

/** A contention meter with a verdict the test sets. */
const meter = (verdict: { on: boolean }) => ({ contended: () => verdict.on, close() {} });

test('an idle adaptive queue sleeps at once, budget or not, while other threads want the core', async () => {
  const verdict = { on: true };
  const p = new Poller(1e7, undefined, { contention: meter(verdict) });
  const q = new FakeQueue();
  p.add(q, 'adaptive');
  await until(() => p.counters.sleeps === 1);
  assert.equal(p.counters.contendedSleeps, 1);
  assert.equal(q.kickEnabled, true);
  p.stop();
});

test('an idle adaptive queue spins its budget while no other thread wants the core', async () => {
  const p = new Poller(1e7, undefined, { contention: meter({ on: false }) });
  const q = new FakeQueue();
  p.add(q, 'adaptive');
  await until(() => q.polls > 100);
  assert.equal(p.counters.sleeps, 0);
  assert.equal(p.spinningCount(), 1);
  p.stop();
});

test('an idle poll queue that serves bursts sleeps on its kick after a few empty passes while other threads want the core, and spins again on the next kick', async () => {
  const verdict = { on: false };
  const p = new Poller(50, undefined, { contention: meter(verdict) });
  const q = new FakeQueue();
  p.add(q, 'poll');
  await until(() => q.polls > POLL_IDLE_PASSES * 4);
  assert.equal(p.counters.sleeps, 0, 'slept while uncontended');
  verdict.on = true;
  for (let i = 0; i < 40; i++) {
    // Bursts of requests (a queue depth above one): a kick per burst is worth a sleep.
    q.submit(8);
    await until(() => q.pending_ === 0);
  }
  await until(() => p.spinningCount() === 0);
  assert.ok(p.counters.sleeps >= 1);
  assert.equal(p.counters.contendedSleeps, p.counters.sleeps);
  assert.equal(q.kickEnabled, true);
  verdict.on = false;
  const before = q.taken;
  q.submit(4);
  await until(() => q.taken === before + 4);
  assert.equal(q.kickEnabled, false, 'spinning again with the kick off');
  assert.equal(p.spinningCount(), 1);
  p.stop();
});

test('a poll queue with work never sleeps, contended or not', async () => {
  const p = new Poller(50, undefined, { contention: meter({ on: true }) });
  const q = new FakeQueue();
  q.inFlight = 1; // a request being served: its completion, and the next request, follow at once
  p.add(q, 'poll');
  await until(() => q.polls > POLL_IDLE_PASSES * 4);
  assert.equal(p.counters.sleeps, 0);
  p.stop();
});

test('a poll queue that serves one request at a time keeps spinning, contended or not (a kick per request costs more than the spin)', async () => {
  const p = new Poller(50, undefined, { contention: meter({ on: true }) });
  const q = new FakeQueue();
  p.add(q, 'poll');
  for (let i = 0; i < 40; i++) {
    q.submit(1);
    await until(() => q.pending_ === 0);
    const polls = q.polls;
    await until(() => q.polls > polls + POLL_IDLE_PASSES * 2);
  }
  assert.equal(p.counters.sleeps, 0);
  p.stop();
});
