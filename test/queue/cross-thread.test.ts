/**
 * End to end across threads: a worker runs the driver, the main thread runs
 * the device on a MemoryBlockDevice, in each notification mode.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { VirtioBlkDevice } from '../../src/queue/blk-device.ts';
import { runDeviceLoop } from './helpers/device-loop.ts';
import { createRegion } from '../../src/queue/layout.ts';
import { firstMessage, spawnTsWorker } from './helpers/spawn-worker.ts';

interface Reply {
  ok: boolean;
  error?: string;
  mismatches: number;
  reference: Uint8Array;
  stats: { submitted: number; completed: number; kicks: number; interruptsWaited: number; spins: number; waitTimeouts: number };
}

const cases = [
  { name: 'poll mode', mode: 'poll' },
  { name: 'notify mode', mode: 'notify' },
  { name: 'adaptive mode', mode: 'adaptive' },
  // A zero spin budget on both sides puts every request through the arm/re-check/sleep path.
  { name: 'adaptive mode, zero spin budget', mode: 'adaptive', spinBudgetUs: 0 },
  { name: 'adaptive mode, growing spin budget', mode: 'adaptive', spinBudgetUs: 0, maxSpinBudgetUs: 500 },
] as const;

for (const c of cases) {
  const { mode } = c;
  const spinBudgetUs = 'spinBudgetUs' in c ? c.spinBudgetUs : undefined;
  const maxSpinBudgetUs = 'maxSpinBudgetUs' in c ? c.maxSpinBudgetUs : undefined;
  const budgets = { ...(spinBudgetUs !== undefined ? { spinBudgetUs } : {}), ...(maxSpinBudgetUs !== undefined ? { maxSpinBudgetUs } : {}) };
  test(`a worker's random reads and writes match its reference copy (${c.name})`, async (t) => {
    const capacityBytes = 1024 * 1024;
    const region = createRegion({ mode, queueSize: 32, dataBytes: 256 * 1024, capacityBytes, sizeMax: 16 * 1024 });
    const backend = new MemoryBlockDevice(capacityBytes);
    const device = new VirtioBlkDevice({ region, backend, name: `e2e-${mode}` });
    const loop = runDeviceLoop(device, { mode, ...budgets });
    const worker = spawnTsWorker(new URL('./helpers/driver-worker.ts', import.meta.url), { region, seed: 42, opsPerLane: 150, budgets });
    t.after(async () => {
      await loop.stop();
      await worker.terminate();
    });
    const reply = await firstMessage<Reply>(worker);
    assert.equal(reply.error, undefined);
    assert.equal(reply.ok, true);
    assert.equal(reply.mismatches, 0);
    assert.equal(Buffer.compare(backend.bytes, reply.reference), 0);
    assert.equal(reply.stats.completed, reply.stats.submitted);
    assert.equal(device.stats().requests, reply.stats.submitted);
    assert.equal(device.broken, false);
    assert.equal(reply.stats.waitTimeouts, 0, 'a driver wait ended by timeout: lost wake-up');
    if (mode === 'notify') {
      // Every submission batch kicks, and the driver sleeps between completions.
      assert.ok(reply.stats.kicks >= 1 && reply.stats.kicks <= reply.stats.submitted);
      assert.ok(reply.stats.interruptsWaited >= 1);
    }
    if (mode === 'poll') assert.equal(reply.stats.interruptsWaited, 0);
    // (Whether a zero-budget adaptive driver ever waits depends on the device's speed: it
    // spins up to IN_FLIGHT_SPIN_MS while requests are in flight, whatever the budget.)
  });
}
