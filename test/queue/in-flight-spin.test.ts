/**
 * Spinning for completions pays only when they come within the spin budget
 * (#17): the controller's poller and the guest's driver each time how long
 * they wait for the next completion while requests are in flight, keep
 * spinning while that is within the budget (a file volume), and sleep while
 * it is far longer (an RBD volume, a slow disk).
 */
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { Poller, type PolledQueue } from '../../src/queue/poller.ts';
import { VirtioBlkDevice } from '../../src/queue/blk-device.ts';
import { VirtioBlkDriver } from '../../src/queue/blk-driver.ts';
import { createRegion } from '../../src/queue/layout.ts';
import { InFlightWait } from '../../src/queue/in-flight-wait.ts';
import type { IoEngine } from '../../src/storage/engine.ts';
import { runDeviceLoop } from './helpers/device-loop.ts';
import { DeferredBlockDevice } from './helpers/deferred-device.ts';
import { closeOpenPairs, track } from './helpers/pair.ts';

afterEach(closeOpenPairs);

/** A queue whose requests stay in flight until the test completes them. */
class InFlightQueue implements PolledQueue {
  pending = 0;
  inFlight = 0;
  /** Of those in flight, flushes in their fdatasync (set by the test). */
  syncing = 0;
  taken = 0;
  broken = false;
  kickEnabled = false;
  private kick: (() => void) | undefined;
  poll(): number {
    const n = this.pending;
    this.pending = 0;
    this.taken += n;
    this.inFlight += n;
    return n;
  }
  enableKick(): boolean {
    this.kickEnabled = true;
    return this.pending === 0;
  }
  disableKick(): void {
    this.kickEnabled = false;
  }
  waitKick(): Promise<'kick' | 'timeout'> {
    return new Promise((resolve) => (this.kick = () => resolve('kick')));
  }
  submit(): void {
    this.pending++;
    if (this.kickEnabled) {
      const k = this.kick;
      this.kick = undefined;
      k?.();
    }
  }
  complete(): void {
    this.inFlight--;
  }
}

const noContention = { contended: () => false, close() {} };

/** Wait (turning the event loop) until cond holds; fail after 10 s instead of hanging. */
async function until(cond: () => boolean, what = 'condition'): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

/** Let at least `ms` of wall time pass, turning the event loop (the poller keeps running). */
async function elapse(ms: number): Promise<void> {
  const end = performance.now() + ms;
  await until(() => performance.now() >= end);
}

test('a polled queue keeps spinning while requests are in flight whose completions come within the spin budget', async () => {
  const p = new Poller(20_000, undefined, { contention: noContention });
  const q = new InFlightQueue();
  p.add(q, 'adaptive');
  for (let i = 0; i < 4; i++) {
    q.submit();
    await until(() => q.taken === i + 1, 'the take');
    q.complete(); // at once: a gap of a pass or two
    await until(() => p.counters.iterations > 0 && q.inFlight === 0);
  }
  q.submit();
  await until(() => q.taken === 5, 'the take');
  await elapse(50); // longer than the 20 ms idle budget: only the in-flight rule keeps it spinning
  assert.equal(p.spinningCount(), 1);
  assert.equal(p.counters.sleeps, 0);
  q.complete();
  p.stop();
});

test('the wait estimate ignores a rare long wait and turns when most waits are long', () => {
  const w = new InFlightWait();
  for (let i = 0; i < 100; i++) w.record(i % 8 === 0 ? 5000 : 40, 200); // a descheduled thread now and then
  assert.equal(w.pays, true);
  for (let i = 0; i < 6; i++) w.record(700, 200); // an RBD read
  assert.equal(w.pays, false);
  for (let i = 0; i < 6; i++) w.record(40, 200);
  assert.equal(w.pays, true);
});

const TRAIN = 6;

/**
 * An adaptive poller on an InFlightQueue that has taken and completed `count`
 * requests, each in flight `holdMs` (nothing measured before: it spins for the
 * first completions, and times them); `spinning`: check it spun for each.
 */
async function trainedPoller(budgetUs: number, count: number, holdMs: number, spinning = false): Promise<{ p: Poller; q: InFlightQueue }> {
  const p = new Poller(budgetUs, undefined, { contention: noContention });
  const q = new InFlightQueue();
  p.add(q, 'adaptive');
  for (let i = 1; i <= count; i++) {
    q.submit();
    await until(() => q.taken === i, 'a take');
    await elapse(holdMs);
    if (spinning) assert.equal(p.spinningCount(), 1);
    q.complete();
    await until(() => p.counters.sleeps === i, 'the idle sleep');
  }
  return { p, q };
}

test('a polled queue sleeps while requests are in flight whose completions take far longer than the spin budget, and a kick wakes it', async () => {
  const { p, q } = await trainedPoller(0, TRAIN, 1, true);
  q.submit();
  await until(() => q.taken === TRAIN + 1, 'the take after training');
  // In flight, and completions take longer than the (zero) budget: it sleeps with the request out.
  await until(() => p.spinningCount() === 0, 'a sleep in flight');
  assert.equal(q.inFlight, 1);
  assert.equal(q.kickEnabled, true);
  q.complete();
  q.submit();
  await until(() => q.taken === TRAIN + 2, 'the take after the kick');
  q.complete();
  p.stop();
});

test('a polled queue sleeps right after a take while requests are in flight whose completions take longer than the spin budget, whatever the budget', async () => {
  const BUDGET_US = 20_000;
  const { p, q } = await trainedPoller(BUDGET_US, TRAIN, BUDGET_US / 1000 + 5); // waits longer than the budget
  const idle = p.counters.idlePasses;
  q.submit();
  await until(() => q.taken === TRAIN + 1, 'the take after training');
  // Only a completion brings the guest's next request: it sleeps at its next idle pass, not after the budget.
  await until(() => p.spinningCount() === 0, 'a sleep in flight');
  assert.ok(p.counters.idlePasses - idle <= 1, `${p.counters.idlePasses - idle} idle passes after the take`);
  assert.equal(q.inFlight, 1);
  q.complete();
  p.stop();
});

function deferredDriver(spinBudgetUs: number) {
  const capacity = 64 * 1024;
  const region = createRegion({ mode: 'adaptive', queueSize: 16, dataBytes: 128 * 1024, capacityBytes: capacity });
  const backend = new DeferredBlockDevice(capacity);
  const device = new VirtioBlkDevice({ region, backend, name: 'deferred' });
  const driver = new VirtioBlkDriver({ region, spinBudgetUs, contention: noContention });
  const loop = runDeviceLoop(device, { mode: 'adaptive' });
  return track({ region, backend, device, driver, async close() { driver.close(); await loop.stop(); } });
}

/** `count` reads, each held `holdMs` by the backend: the driver times their completions. */
async function trainDriver(p: ReturnType<typeof deferredDriver>, count: number, holdMs: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const read = p.driver.pread(new Uint8Array(4096), 0);
    await p.backend.waitHeld(i + 1);
    await elapse(holdMs);
    p.backend.held[i]!.release();
    await read;
  }
}

/** The next read's first pass (inside pread) arms the doorbell and sleeps without a spin; then it completes. */
async function sleepsInFirstPass(p: ReturnType<typeof deferredDriver>, held: number): Promise<void> {
  const before = p.driver.stats();
  const next = p.driver.pread(new Uint8Array(4096), 4096);
  const s = p.driver.stats();
  assert.equal(s.interruptsWaited, before.interruptsWaited + 1);
  assert.equal(s.spins, before.spins);
  await p.backend.waitHeld(held + 1);
  p.backend.held[held]!.release();
  await next;
}

test('an adaptive driver sleeps at once while a request is in flight once its completions take longer than the spin budget', async () => {
  const p = deferredDriver(0);
  await trainDriver(p, 6, 1);
  // A completion ~1 ms away is not worth spinning for.
  await sleepsInFirstPass(p, 6);
  await p.close();
});

test('an adaptive driver does not spin after a submission while its completions take longer than the spin budget, whatever the budget', async () => {
  const BUDGET_US = 5000;
  const p = deferredDriver(BUDGET_US);
  await trainDriver(p, 6, BUDGET_US / 1000 + 2); // longer than the budget: not worth a spin
  // Past the budget after the last completion: the loop has ended, the next pread runs its first pass.
  await until(() => !p.driver['loopRunning'], 'the idle loop to end');
  // Nothing but the (slow) completion can follow a submission: no spin for the budget.
  await sleepsInFirstPass(p, 6);
  await p.close();
});

test('an adaptive driver keeps spinning while a request is in flight whose completions come within the spin budget', async () => {
  const p = deferredDriver(10_000_000);
  for (let i = 0; i < 3; i++) {
    const read = p.driver.pread(new Uint8Array(4096), 0);
    await p.backend.waitHeld(i + 1);
    p.backend.held[i]!.release();
    await read;
  }
  const before = p.driver.stats();
  const read = p.driver.pread(new Uint8Array(4096), 0);
  await p.backend.waitHeld(4);
  await until(() => p.driver.stats().spins > before.spins + 100, 'spins with the request in flight');
  p.backend.held[3]!.release();
  await read;
  assert.equal(p.driver.stats().interruptsWaited, 0);
  await p.close();
});

/** The engine's side the poller sees: short io_uring I/O in flight (inFlight), and whether its eventfd wake-up is on. */
function fakeEngine() {
  const engine = {
    kind: 'io_uring',
    inFlight: 0,
    onBusy: null as (() => void) | null,
    woken: true,
    poll: () => 0,
    setSpinning(on: boolean): number {
      engine.woken = !on;
      return 0;
    },
  };
  return engine;
}

/**
 * A poller reaping a fake io_uring engine, its adaptive queue trained with
 * `TRAIN` requests each in flight 1 ms against a zero budget: the queue's own
 * waits say a spin does not pay.
 */
async function engineTrainedPoller(options: { engineSpinMaxUs: number; contention?: { contended(now: number): boolean; close(): void } }) {
  const engine = fakeEngine();
  const p = new Poller(0, engine as unknown as IoEngine, { contention: options.contention ?? noContention, engineSpinMaxUs: options.engineSpinMaxUs });
  const q = new InFlightQueue();
  p.add(q, 'adaptive');
  for (let i = 1; i <= TRAIN; i++) {
    q.submit();
    await until(() => q.taken === i, 'a take');
    await elapse(1);
    q.complete();
    await until(() => p.counters.sleeps === i, 'the idle sleep');
  }
  return { engine, p, q };
}

/** Submit one request with short engine I/O in flight; resolves once it is taken. */
async function takeWithEngineIo(t: { engine: ReturnType<typeof fakeEngine>; q: InFlightQueue }): Promise<void> {
  const taken = t.q.taken;
  t.engine.inFlight = 1;
  t.q.submit();
  await until(() => t.q.taken === taken + 1, 'the take');
}

test('a polled queue keeps spinning while short io_uring I/O it reaps itself is in flight, however long its waits measured', async () => {
  // The engine's inFlight counts short transfers only (SPIN_MAX_BYTES): a sync write to a
  // file volume (~300 µs, over the budget) is reaped by this loop, so a spin saves the wake-up.
  const t = await engineTrainedPoller({ engineSpinMaxUs: 60_000 });
  const { engine, p, q } = t;
  try {
    await takeWithEngineIo(t);
    await elapse(20); // waits measured long: without the engine's I/O it would sleep at once
    assert.equal(p.spinningCount(), 1);
    engine.inFlight = 0; // only slow I/O left (RBD, a long transfer): the measured rule again
    await until(() => p.spinningCount() === 0, 'a sleep in flight');
    assert.equal(q.inFlight, 1);
    q.complete();
  } finally {
    p.stop(); // a failed assertion must not leave the poller turning the loop
  }
});

test('a polled queue stops spinning for short io_uring I/O that has not completed within the engine spin bound, and sleeps with it in flight', async () => {
  // A database compaction's 64 KiB write-through chunk on a busy disk: milliseconds (#10).
  const t = await engineTrainedPoller({ engineSpinMaxUs: 2000 });
  const { engine, p, q } = t;
  try {
    await takeWithEngineIo(t);
    await until(() => p.spinningCount() === 0, 'a sleep once the bound ran out');
    assert.equal(p.counters.engineSpinsStopped, 1);
    assert.equal(q.inFlight, 1);
    assert.equal(engine.woken, true, "the engine's eventfd brings the completion");
  } finally {
    p.stop();
  }
});

test('after a spin for engine I/O ran out, the queue sleeps right after its next take, and spins for the one after that again', async () => {
  const BOUND_US = 20_000;
  const t = await engineTrainedPoller({ engineSpinMaxUs: BOUND_US });
  const { p, q } = t;
  try {
    await takeWithEngineIo(t);
    await until(() => p.spinningCount() === 0, 'a sleep once the bound ran out');
    q.complete();
    // The next take is skipped: asleep at its first idle pass, not after another bound's spin.
    const idle = p.counters.idlePasses;
    await takeWithEngineIo(t);
    await until(() => p.spinningCount() === 0, 'a sleep after the skipped take');
    assert.ok(p.counters.idlePasses - idle <= 1, `${p.counters.idlePasses - idle} idle passes after the skipped take`);
    q.complete();
    // The skip is over: the next one is spun for (well within the bound).
    await takeWithEngineIo(t);
    await elapse(2);
    assert.equal(p.spinningCount(), 1);
    q.complete();
    assert.equal(p.counters.engineSpinsStopped, 1);
  } finally {
    p.stop();
  }
});

test('a polled queue does not spin for short io_uring I/O while other threads want its core', async () => {
  let contended = false;
  const t = await engineTrainedPoller({ engineSpinMaxUs: 60_000, contention: { contended: () => contended, close() {} } });
  const { p, q } = t;
  try {
    contended = true;
    const idle = p.counters.idlePasses;
    await takeWithEngineIo(t);
    await until(() => p.spinningCount() === 0, 'a sleep while contended');
    assert.ok(p.counters.idlePasses - idle <= 1, `${p.counters.idlePasses - idle} idle passes after the take`);
    assert.equal(q.inFlight, 1);
    q.complete();
  } finally {
    p.stop();
  }
});

test('the loop spins for the engine alone at most the engine spin bound, then stops with its eventfd on', async () => {
  const engine = fakeEngine();
  const p = new Poller(0, engine as unknown as IoEngine, { contention: noContention, engineSpinMaxUs: 2000 });
  try {
    engine.inFlight = 1;
    engine.onBusy!(); // an integrated function's I/O started: the engine asks the loop to run
    await until(() => p.counters.engineSpinsStopped === 1, 'the loop to stop');
    assert.equal(engine.woken, true);
    const passes = p.counters.iterations;
    await elapse(5);
    assert.equal(p.counters.iterations, passes, 'no pass after the loop stopped');
  } finally {
    p.stop();
  }
});

test('a polled queue does not spin while its only request in flight is a flush in its fdatasync, however short the engine I/O looks', async () => {
  // A database log batch's FLUSH on a file volume: the fdatasync takes a millisecond or more,
  // a wake-up by the engine's eventfd tens of µs; the loop spun 30-60 passes per batch (#10).
  const t = await engineTrainedPoller({ engineSpinMaxUs: 60_000_000 }); // the engine alone would hold it a minute
  const { engine, p, q } = t;
  try {
    q.syncing = 1;
    await takeWithEngineIo(t);
    await until(() => p.spinningCount() === 0, 'a sleep with the sync in flight');
    assert.equal(p.counters.engineSpinsStopped, 0, 'asleep before any engine spin bound ran out');
    assert.equal(engine.woken, true, "the engine's eventfd brings the completion");
    // Asleep, and no pass spins for the engine's I/O either.
    const passes = p.counters.iterations;
    await elapse(20);
    assert.ok(p.counters.iterations <= passes + 1, `${p.counters.iterations - passes} passes while asleep`);
    assert.equal(q.inFlight, 1);
    q.syncing = 0;
    q.complete();
  } finally {
    p.stop();
  }
});
