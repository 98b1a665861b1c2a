import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { NbdClient } from '../../src/nbd/client.ts';
import { startController, waitRunning } from '../helpers/controller.ts';
import { pattern } from '../helpers/load.ts';
import { call, startTestApi } from './helpers.ts';

/**
 * A volume in use cannot be pulled from under its user: shrinking or deleting
 * the volume of a running function, or of a volume with connections on the
 * controller's NBD export, gets 409 SV_ERR_IN_USE, and the user keeps working.
 * Growing is allowed.
 */
const run = promisify(execFile);
const MiB = 2 ** 20;

test('shrinking or deleting the volume of a running database guest gets 409 and the database keeps serving', async (t) => {
  const c = await startController(t, {
    volumes: [{ name: 'db', sizeMiB: 64 }],
    functions: [{ name: 'redis0', function: 'database', volume: 'db', options: { appendfsync: 'always' } }],
  });
  const api = await startTestApi(t, c);
  const { port } = await waitRunning(c, 'redis0');
  const cli = async (...args: string[]) => (await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args])).stdout.trim();
  assert.equal(await cli('SET', 'before', 'attack'), 'OK');

  const shrink = await call(api, 'POST', '/volumes/db/resize', { auth: true, body: { size: 16384, allowShrink: true } });
  assert.equal(shrink.status, 409, shrink.text);
  assert.equal(shrink.json.code, 'SV_ERR_IN_USE');
  assert.match(shrink.json.error, /cannot shrink volume 'db': it is in use by function 'redis0' \(guest\)/);
  const del = await call(api, 'DELETE', '/volumes/db', { auth: true, body: {} });
  assert.equal(del.status, 409, del.text);
  assert.equal(del.json.code, 'SV_ERR_IN_USE');

  assert.equal(c.store.manifest('db').size, 64 * MiB);
  assert.equal(await cli('GET', 'before'), 'attack');
  assert.equal(await cli('SET', 'after', 'still here'), 'OK');
  assert.equal(await cli('GET', 'after'), 'still here');
  assert.equal((await c.status()).functions[0]!.state, 'running');
});

test('a volume with a connection on the NBD export cannot be shrunk or deleted, but it can grow', async (t) => {
  const c = await startController(t, { volumes: [{ name: 'v', sizeMiB: 16 }] });
  const api = await startTestApi(t, c);
  const client = await NbdClient.connect({ ...c.nbdEndpoint(), exportName: 'v' });
  await client.pwrite(pattern(3), 3 * 4096);

  const shrink = await call(api, 'POST', '/volumes/v/resize', { auth: true, body: { size: 4 * MiB, allowShrink: true } });
  assert.equal(shrink.status, 409, shrink.text);
  assert.match(shrink.json.error, /1 connection\(s\) on the controller's NBD export/);
  assert.equal((await call(api, 'DELETE', '/volumes/v', { auth: true, body: {} })).status, 409);
  const grow = await call(api, 'POST', '/volumes/v/resize', { auth: true, body: { size: 32 * MiB } });
  assert.equal(grow.status, 200, grow.text);
  assert.equal(c.store.manifest('v').size, 32 * MiB);

  const back = Buffer.alloc(4096);
  await client.pread(back, 3 * 4096);
  assert.deepEqual(back, pattern(3), 'the client still reads its data');
  await client.close();

  // Once nobody uses it, it may be shrunk and deleted.
  await waitFor(() => c.volumeUsers('v').length === 0);
  assert.equal((await call(api, 'POST', '/volumes/v/resize', { auth: true, body: { size: 4 * MiB, allowShrink: true } })).status, 200);
  assert.equal((await call(api, 'DELETE', '/volumes/v', { auth: true, body: {} })).status, 200);
  assert.equal(c.store.exists('v'), false);
});

async function waitFor(cond: () => boolean, deadlineMs = 5000): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
