import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { NbdClient } from '../../src/nbd/client.ts';
import { startController, waitRunning } from '../helpers/controller.ts';
import type { Controller } from '../../src/controller/controller.ts';

/**
 * A hostile process guest harms only itself: it scribbles its ring, overflows
 * its message channel, tries to truncate the region under the controller, or
 * floods its doorbell; the controller and a neighbour guest keep serving.
 */
const hostile = fileURLToPath(new URL('../deploy/helpers/hostile-function.ts', import.meta.url));

async function neighbourServes(c: Controller): Promise<void> {
  const addr = await waitRunning(c, 'b');
  const b = await NbdClient.connect({ ...addr, exportName: 'b' });
  const data = Buffer.alloc(4096, 0x5a);
  for (let i = 0; i < 64; i++) await b.pwrite(data, i * 4096);
  const back = new Uint8Array(4096);
  await b.pread(back, 63 * 4096);
  assert.deepEqual(Buffer.from(back), data);
  await b.close();
}

async function until(what: string, check: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > end) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function setup(t: Parameters<typeof startController>[0], how: string): Promise<Controller> {
  return startController(t, {
    volumes: [
      { name: 'va', sizeMiB: 8 },
      { name: 'vb', sizeMiB: 8 },
    ],
    functions: [
      { name: 'h', function: hostile, volume: 'va', kind: 'process', standby: false, restart: 'never', options: { how, exportName: 'h' } },
      { name: 'b', function: 'nbd-export', volume: 'vb', kind: 'process', standby: false, options: { exportName: 'b' } },
    ],
  });
}

test('a process guest that scribbles garbage over its ring breaks only its own queue and is stopped', async (t) => {
  const c = await setup(t, 'scribble');
  await until('the hostile guest is stopped', async () => (await c.deployment('h')!.status()).state === 'crashed');
  const s = await c.deployment('h')!.status();
  assert.match(s.lastError ?? '', /queue broken/);
  await neighbourServes(c);
});

test('a process guest that sends an overlong message is killed, and the controller keeps serving', async (t) => {
  const c = await setup(t, 'channel');
  await until('the hostile guest is stopped', async () => (await c.deployment('h')!.status()).state === 'crashed');
  await neighbourServes(c);
});

test('a process guest cannot truncate the shared region under the controller (the memfd is sealed)', async (t) => {
  const c = await setup(t, 'truncate');
  await until('the hostile guest tried', async () => ((await c.deployment('h')!.status()).stats.fn_hostile_acted ?? 0) === 1);
  const s = await c.deployment('h')!.status();
  assert.equal(s.stats.fn_hostile_truncateDone, 0);
  assert.ok((s.stats.fn_hostile_truncateRefused ?? 0) >= 1, 'it found the controller memfds and was refused');
  assert.equal(s.state, 'running');
  // Its own queue still works through the region it could not shrink.
  const h = await NbdClient.connect({ ...s.address!, exportName: 'h' });
  await h.pwrite(Buffer.alloc(4096, 1), 0);
  await h.close();
  await neighbourServes(c);
});

test('a process guest that floods its doorbell does not stop the controller serving its neighbour', async (t) => {
  const c = await setup(t, 'flood');
  await until('the flood started', async () => ((await c.deployment('h')!.status()).stats.fn_hostile_kicks ?? 0) > 0);
  await neighbourServes(c);
});
