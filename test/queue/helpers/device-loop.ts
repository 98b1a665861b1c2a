/**
 * A reference poller for one VirtioBlkDevice, in the queue's notification mode.
 * The controller's real poller serves many guests from one loop; this one is
 * for tests, benchmarks and single-guest use, and shows how the device API is
 * meant to be driven:
 *   poll:     disableKick(), then poll() on every event-loop turn, forever.
 *   notify:   poll(); when the ring is empty, enableKick() and waitKick().
 *   adaptive: disableKick() and spin for a budget after the last request,
 *             then enableKick() (which re-checks the ring) and waitKick().
 */
import type { VirtioBlkDevice } from '../../../src/queue/blk-device.ts';
import type { QueueModeName } from '../../../src/queue/layout.ts';
import { SpinBudget } from '../../../src/queue/spin-budget.ts';

export interface DeviceLoopOptions {
  mode: QueueModeName;
  /** adaptive: spin this long after the last request before sleeping. Default 50 µs. */
  spinBudgetUs?: number;
  /** adaptive: let the budget grow up to this when sleeps turn out short (see SpinBudget). Default = spinBudgetUs. */
  maxSpinBudgetUs?: number;
  /** Longest single doorbell wait; the loop re-arms after it. Default 1000 ms. */
  waitTimeoutMs?: number;
}

export interface DeviceLoop {
  /** Stop polling and wait for the loop to exit (in-flight requests are not drained). */
  stop(): Promise<void>;
  stats(): { turns: number; sleeps: number; spinBudgetUs: number };
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

export function runDeviceLoop(device: VirtioBlkDevice, options: DeviceLoopOptions): DeviceLoop {
  const baseUs = options.spinBudgetUs ?? 50;
  const budget = new SpinBudget(baseUs, options.maxSpinBudgetUs ?? baseUs);
  const timeoutMs = options.waitTimeoutMs ?? 1000;
  let stopped = false;
  let turns = 0;
  let sleeps = 0;

  const sleep = async () => {
    if (device.enableKick()) {
      sleeps++;
      const sleptAt = performance.now();
      await device.waitKick(timeoutMs);
      budget.slept((performance.now() - sleptAt) * 1000);
    }
  };

  const run = async () => {
    if (options.mode !== 'notify') device.disableKick();
    let lastWork = performance.now();
    while (!stopped && !device.broken) {
      turns++;
      if (device.poll() > 0) {
        lastWork = performance.now();
        continue;
      }
      if (options.mode === 'poll' || (options.mode === 'adaptive' && performance.now() - lastWork < budget.ms)) {
        await nextTurn();
        continue;
      }
      await sleep();
      if (options.mode === 'adaptive') {
        device.disableKick();
        lastWork = performance.now();
      }
    }
  };
  const done = run();
  return {
    async stop() {
      stopped = true;
      device.wake();
      await done;
    },
    stats: () => ({ turns, sleeps, spinBudgetUs: budget.us }),
  };
}
