import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NbdClient } from '../../src/nbd/client.ts';
import { ThreadGuest } from '../../src/deploy/guest/thread-guest.ts';
import { startController, waitRunning } from '../helpers/controller.ts';

/**
 * A guest killed again and again (as a hostile client could) keeps coming back
 * past the old limit of five crashes a minute, and /status shows the pending
 * restart: state, restarts, when, and how many crashes in a row.
 */
test('a guest crashed six times in a row is restarted every time, and /status shows the growing back-off of the seventh', async (t) => {
  const c = await startController(t, {
    volumes: [{ name: 'v', sizeMiB: 8 }],
    functions: [{ name: 'g', function: 'nbd-export', volume: 'v', options: { exportName: 'g' } }],
  });
  let address = await waitRunning(c, 'g');
  for (let i = 1; i <= 6; i++) {
    await (c.deployment('g') as ThreadGuest).kill();
    address = await waitRunning(c, 'g', i);
  }
  const client = await NbdClient.connect({ ...address, exportName: 'g' });
  await client.close();

  await (c.deployment('g') as ThreadGuest).kill();
  // The seventh restart waits 50 ms x 2^6 = 3.2 s: long enough to see it pending.
  let s = await c.deployment('g')!.status();
  for (const end = Date.now() + 3000; s.state !== 'restarting' && Date.now() < end; s = await c.deployment('g')!.status()) {
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.equal(s.state, 'restarting');
  assert.equal(s.restarts, 6);
  assert.equal(s.nextRestart?.consecutiveCrashes, 7);
  assert.ok(s.nextRestart!.inMs > 0 && s.nextRestart!.inMs <= 3200, `next attempt in ${s.nextRestart!.inMs} ms`);
  assert.ok(Date.parse(s.nextRestart!.at) > Date.now() - 1000);
  const fromApi = (await c.status()).functions[0]!;
  assert.equal(fromApi.state, 'restarting');
  assert.equal(fromApi.nextRestart?.consecutiveCrashes, 7);
});
