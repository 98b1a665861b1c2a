import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startController, waitRunning } from '../helpers/controller.ts';
import type { ProcessGuest } from '../../src/deploy/guest/process-guest.ts';
import { startAffinity } from '../../src/native/sched.ts';

/**
 * The controller's poller (its main thread) on its own core at its own
 * priority, read back from /proc; guests it starts afterwards are not born on
 * the poller's core. (Its own test file: it pins this process's main thread.)
 */
test('the poller runs on its configured core and nice value, and a guest started after it is not confined to that core', async (t) => {
  if (startAffinity.length < 2) {
    t.skip('needs two CPUs');
    return;
  }
  const c = await startController(t, {
    poller: { cores: [startAffinity[0]], priority: 3 },
    volumes: [{ name: 'v', sizeMiB: 8 }],
    functions: [{ name: 'p', function: 'nbd-export', volume: 'v', kind: 'process', standby: false, options: { exportName: 'p' } }],
  });
  await waitRunning(c, 'p');
  const s = (await c.status()).poller as { thread: { affinity: string; nice: number } };
  assert.equal(s.thread.affinity, String(startAffinity[0]));
  assert.equal(s.thread.nice, 3);
  const pid = (c.deployment('p') as ProcessGuest).pid()!;
  const guest = /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1];
  assert.notEqual(guest, String(startAffinity[0]), 'the guest inherited the poller core');
});
