import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { NbdClient } from '../../src/nbd/client.ts';
import { ThreadGuest } from '../../src/deploy/guest/thread-guest.ts';
import { startController, waitRunning } from '../helpers/controller.ts';
import { rng } from '../helpers/tmp.ts';
import { writeLoad, verifyBlocks, shuffledBlocks } from '../helpers/load.ts';

/**
 * Containment: a guest that throws, runs out of memory, or is terminated in the
 * middle of a write load takes nobody with it. The other guest keeps serving,
 * the crashed one is restarted on the same port, and every write it had
 * acknowledged before dying is on its volume.
 */
const faulty = fileURLToPath(new URL('../fixtures/faulty-function.ts', import.meta.url));

for (const how of ['throw', 'oom', 'buffers', 'terminate'] as const) {
  test(`a guest that dies by ${how} mid-load loses no acknowledged write and the other guest keeps serving`, async (t) => {
    const c = await startController(t, {
      volumes: [
        { name: 'va', sizeMiB: 32 },
        { name: 'vb', sizeMiB: 32 },
      ],
      functions: [
        {
          name: 'a',
          function: how === 'terminate' ? 'nbd-export' : faulty,
          volume: 'va',
          heapMiB: 64,
          restart: 'on-failure',
          options: how === 'terminate' ? { exportName: 'a' } : { exportName: 'a', failAfterWrites: 300, how },
        },
        { name: 'b', function: 'nbd-export', volume: 'vb', options: { exportName: 'b' } },
      ],
    });
    const addrA = await waitRunning(c, 'a', 0);
    const addrB = await waitRunning(c, 'b', 0);
    const a = await NbdClient.connect({ ...addrA, exportName: 'a' });
    const b = await NbdClient.connect({ ...addrB, exportName: 'b' });
    const next = rng(how.length);
    let aDead = false;
    let bAfterCrash = 0;
    const loadA = writeLoad(a, {
      blocks: shuffledBlocks(8192, next),
      depth: 8,
      onAck: (n) => {
        if (how === 'terminate' && n === 300) void (c.deployment('a') as ThreadGuest).kill();
      },
    }).then((r) => {
      aDead = true;
      return r;
    });
    const loadB = writeLoad(b, {
      blocks: shuffledBlocks(8192, next),
      depth: 4,
      stop: () => aDead && bAfterCrash >= 200,
      onAck: () => {
        if (aDead) bAfterCrash++;
      },
    });
    const [ra, rb] = await Promise.all([loadA, loadB]);
    assert.ok(ra.error, 'guest a died under its client');
    assert.ok(ra.acked.length >= 250, `a acknowledged ${ra.acked.length} writes before dying`);
    assert.equal(rb.error, undefined, 'guest b never failed a request');
    assert.ok(bAfterCrash >= 200, 'guest b kept serving after a died');

    const back = await waitRunning(c, 'a', 1);
    assert.deepEqual(back, addrA, 'a came back on the same address');
    const a2 = await NbdClient.connect({ ...back, exportName: 'a' });
    assert.deepEqual(await verifyBlocks(a2, ra.acked), []);
    assert.deepEqual(await verifyBlocks(b, rb.acked), []);
    await Promise.all([a2.close(), b.close(), a.close().catch(() => {})]);
  });
}
