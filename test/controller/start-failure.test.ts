import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { NbdClient } from '../../src/nbd/client.ts';
import { startController, waitRunning } from '../helpers/controller.ts';
import { pattern } from '../helpers/load.ts';

/**
 * One function that cannot start does not stop the controller: it is logged,
 * reported in /status as failed with its reason, its volume stays off the NBD
 * export, and every other function and the export are served.
 */
const startFails = fileURLToPath(new URL('./fixtures/start-fails.ts', import.meta.url));

for (const deploy of ['guest', 'integrated'] as const) {
  test(`a ${deploy} function whose start fails is reported failed with its reason while the others keep serving`, async (t) => {
    const c = await startController(t, {
      volumes: [
        { name: 'bad-vol', sizeMiB: 8 },
        { name: 'good-vol', sizeMiB: 8 },
        { name: 'plain', sizeMiB: 8 },
      ],
      functions: [
        { name: 'bad', function: startFails, volume: 'bad-vol', deploy },
        { name: 'good', function: 'nbd-export', volume: 'good-vol', deploy, options: { exportName: 'good' } },
      ],
    });
    const status = await c.status();
    const bad = status.functions.find((f) => f.name === 'bad')!;
    assert.equal(bad.state, 'failed');
    assert.match(bad.lastError!, /refusing to start on this volume/);
    assert.equal(status.functions.find((f) => f.name === 'good')!.state, 'running');

    const good = await NbdClient.connect({ ...(await waitRunning(c, 'good')), exportName: 'good' });
    await good.pwrite(pattern(1), 4096);
    const back = Buffer.alloc(4096);
    await good.pread(back, 4096);
    assert.deepEqual(back, pattern(1));
    await good.close();

    const nbd = c.nbdEndpoint();
    const plain = await NbdClient.connect({ ...nbd, exportName: 'plain' });
    await plain.close();
    await assert.rejects(NbdClient.connect({ ...nbd, exportName: 'bad-vol' }), 'a failed function still owns its volume');
  });
}

test('a function on a volume that cannot be created fails alone, with the volume error as its reason', async (t) => {
  const c = await startController(t, {
    volumes: [
      { name: 'too-big', sizeGiB: 15 * 1024 },
      { name: 'ok', sizeMiB: 8 },
    ],
    functions: [
      { name: 'on-big', function: 'nbd-export', volume: 'too-big', deploy: 'integrated' },
      { name: 'on-ok', function: 'nbd-export', volume: 'ok', deploy: 'integrated' },
    ],
  });
  const fns = (await c.status()).functions;
  assert.equal(fns.find((f) => f.name === 'on-big')!.state, 'failed');
  assert.match(fns.find((f) => f.name === 'on-big')!.lastError!, /SV_ERR_OVERCOMMIT|would commit/);
  assert.equal(fns.find((f) => f.name === 'on-ok')!.state, 'running');
});
