import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { NbdClient } from '../../src/nbd/client.ts';
import { parseConfig } from '../../src/config/config.ts';
import { startController, waitRunning } from '../helpers/controller.ts';
import { pattern } from '../helpers/load.ts';

/**
 * A volume a function owns is never on the controller's NBD export, not even in
 * the instant between the export listening and the function starting; and
 * deploying a function on a volume first closes the export's connections to it.
 */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

test('an NBD client that keeps connecting to an owned volume while the controller starts is never let in', async (t) => {
  const port = await freePort();
  let started = false;
  let attemptsWhileStarting = 0;
  let refusedByHandshake = 0;
  let refusedWhileStarting = 0;
  let succeeded = 0;
  const attacker = (async () => {
    // Bounded: until the controller is up and a few more tries after.
    for (let after = 0; after < 20; ) {
      if (started) after++;
      else attemptsWhileStarting++;
      try {
        const conn = await NbdClient.connect({ host: '127.0.0.1', port, exportName: 'gv' });
        succeeded++;
        await conn.close();
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ECONNREFUSED') {
          refusedByHandshake++; // the export listened and said no
          if (!started) refusedWhileStarting++;
        }
        await new Promise((r) => setImmediate(r));
      }
    }
  })();
  const c = await startController(t, {
    nbd: { host: '127.0.0.1', port },
    volumes: [
      { name: 'first', sizeMiB: 8 },
      { name: 'gv', sizeMiB: 8 },
      { name: 'free', sizeMiB: 8 },
    ],
    // Functions start one after another: 'g' takes its volume only after 'f' is up.
    functions: [
      { name: 'f', function: 'nbd-export', volume: 'first', options: { exportName: 'f' } },
      { name: 'g', function: 'nbd-export', volume: 'gv', options: { exportName: 'g' } },
    ],
  });
  started = true;
  await attacker;
  assert.equal(succeeded, 0, 'no connection to the owned volume ever succeeded');
  assert.ok(refusedWhileStarting > 0, `the export was probed during start-up (${attemptsWhileStarting} attempts, ${refusedByHandshake} refused by the handshake)`);
  // The export itself works for the volume nobody owns.
  const free = await NbdClient.connect({ host: '127.0.0.1', port, exportName: 'free' });
  await free.close();
  await waitRunning(c, 'g');
});

test('deploying a function on a volume closes the NBD export connections to it, and new ones are refused', async (t) => {
  const c = await startController(t, { volumes: [{ name: 'v', sizeMiB: 8 }] });
  const nbd = c.nbdEndpoint();
  const early = await NbdClient.connect({ ...nbd, exportName: 'v' });
  await early.pwrite(pattern(7), 7 * 4096);

  const f = parseConfig({ volumes: [{ name: 'v', sizeMiB: 8 }], functions: [{ name: 'g', function: 'nbd-export', volume: 'v', options: { exportName: 'g' } }] }, '/tmp', {}).functions[0]!;
  const address = await c.deploy(f);
  assert.equal(c.volumeUsers('v').join(), "function 'g' (guest)", 'no export connection left on v');
  await assert.rejects(early.pwrite(pattern(8), 8 * 4096), 'the old connection is closed');
  await assert.rejects(NbdClient.connect({ ...nbd, exportName: 'v' }), 'a new connection is refused');

  const viaFunction = await NbdClient.connect({ ...address, exportName: 'g' });
  const back = Buffer.alloc(4096);
  await viaFunction.pread(back, 7 * 4096);
  assert.deepEqual(back, pattern(7), 'what the early client wrote before the deploy is there');
  await viaFunction.close();
  await early.close().catch(() => {});
});
