import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startController, run, nbdUri, fioVerify } from '../helpers/controller.ts';
import { requireTools } from '../helpers/tools.ts';
import { startTestApi, call } from '../api/helpers.ts';
import { tempDir } from '../helpers/tmp.ts';
import { NbdClient } from '../../src/nbd/client.ts';
import { B, block } from './helpers/blocks.ts';

/**
 * Snapshots and clones through the management API and the controller's NBD
 * export, checked with real clients (fio verify, nbdcopy, nbdinfo).
 */
const MiB = 1024 * 1024;
requireTools('fio', 'nbdcopy', 'nbdinfo');

/** Generation of each block of an image (0 = never written); fails on a torn or misplaced block. */
function gensOf(image: Buffer): number[] {
  const out: number[] = [];
  for (let b = 0; b * B < image.length; b++) {
    const blk = image.subarray(b * B, (b + 1) * B);
    if (blk.every((x) => x === 0)) {
      out.push(0);
      continue;
    }
    const gen = blk.readUInt32LE(4);
    assert.ok(block(b, gen).equals(blk), `block ${b} is torn or misplaced`);
    out.push(gen);
  }
  return out;
}

async function setup(t: Parameters<typeof tempDir>[0], sizeMiB = 16) {
  const c = await startController(t, { volumes: [{ name: 'v', sizeMiB }], functions: [] });
  const api = await startTestApi(t, c);
  const nbd = c.nbdEndpoint();
  return { c, api, nbd };
}

test('a snapshot taken over the API mid-write-load over NBD reads back one point in time through the read-only export', async (t) => {
  const { api, nbd } = await setup(t, 1);
  const blocks = (1 * MiB) / B;
  const client = await NbdClient.connect({ ...nbd, exportName: 'v' });
  t.after(() => client.close());
  // Eight writers over NBD, writer w owning the blocks b % 8 == w, so each block's write order is known.
  const acked = new Array<number>(blocks).fill(0);
  const issued = new Array<number>(blocks).fill(0);
  let gen = 0;
  let stop = false;
  const writer = async (w: number) => {
    for (let i = 0; !stop; i++) {
      const b = ((i * 37) % (blocks / 8)) * 8 + w;
      const g = ++gen;
      issued[b] = g;
      await client.pwrite(block(b, g), b * B);
      acked[b] = g;
    }
  };
  const writers = Array.from({ length: 8 }, (_, w) => writer(w));
  while (gen < 600) await new Promise((r) => setImmediate(r));
  const ackedBefore = [...acked];
  const r = await call(api, 'POST', '/volumes/v/snapshots', { auth: true, body: { name: 'mid' } });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.export, nbdUri(nbd, 'v@mid'));
  const issuedAfter = [...issued];
  const genAtSnapshot = gen;
  while (gen < genAtSnapshot + 600) await new Promise((r) => setImmediate(r));
  stop = true;
  await Promise.all(writers);

  const info = JSON.parse((await run('nbdinfo', ['--json', r.json.export])).stdout);
  assert.equal(info.exports[0]['is_read_only'], true);
  const out = join(tempDir(t), 'mid.img');
  await run('nbdcopy', [r.json.export, out]);
  const got = gensOf(readFileSync(out));
  let fromBefore = 0;
  for (let b = 0; b < blocks; b++) {
    assert.ok(got[b]! >= ackedBefore[b]!, `block ${b}: generation ${got[b]} is older than ${ackedBefore[b]}, acknowledged before the snapshot`);
    assert.ok(got[b]! <= issuedAfter[b]!, `block ${b}: generation ${got[b]} was written after the snapshot`);
    if (got[b]! > 0) fromBefore++;
  }
  assert.ok(fromBefore > blocks / 2, 'the load wrote most blocks before the snapshot');
  // More writes after: the snapshot does not change.
  await Promise.all(Array.from({ length: blocks }, (_, b) => client.pwrite(block(b, 999_999), b * B)));
  const again = join(tempDir(t), 'again.img');
  await run('nbdcopy', [r.json.export, again]);
  assert.deepEqual(gensOf(readFileSync(again)), got);
});

test('fio verify: a snapshot keeps what fio wrote while fio overwrites the volume, and a clone of it serves fio verify writes', async (t) => {
  const { api, nbd } = await setup(t, 4);
  const v = nbdUri(nbd, 'v');
  const size = '--size=2M';
  assert.equal((await fioVerify(v, 'write', [size])).error, 0);
  const snap = await call(api, 'POST', '/volumes/v/snapshots', { auth: true, body: { name: 'a' } });
  assert.equal(snap.status, 201, snap.text);
  // A different seed: any block of this run seen through the snapshot would fail the first job's verification.
  assert.equal((await fioVerify(v, 'randwrite', [size, '--randseed=4242', '--verify_pattern=0x5a5a5a5a', '--verify=pattern'])).error, 0);
  const read = await fioVerify(snap.json.export, 'read', [size, '--verify_only=1']);
  assert.equal(read.error, 0);
  assert.ok(read.readIos >= 512, `fio verified ${read.readIos} blocks of the snapshot`);
  // The control: the same verification of the volume itself fails, since it was overwritten.
  await assert.rejects(fioVerify(v, 'read', [size, '--verify_only=1']), /verify|bad|fail/i);

  const clone = await call(api, 'POST', '/volumes/v/snapshots/a/clone', { auth: true, body: { name: 'c' } });
  assert.equal(clone.status, 201, clone.text);
  assert.deepEqual(clone.json.parent, { volume: 'v', snapshot: 'a' });
  assert.equal((await fioVerify(nbdUri(nbd, 'c'), 'read', [size, '--verify_only=1'])).error, 0);
  assert.equal((await fioVerify(nbdUri(nbd, 'c'), 'randwrite', ['--randseed=99', '--size=1M'])).error, 0);
  assert.equal((await fioVerify(snap.json.export, 'read', [size, '--verify_only=1'])).error, 0);
});

test('the snapshot routes list, refuse and delete with stable error codes, behind the token', async (t) => {
  const { c, api, nbd } = await setup(t, 4);
  assert.equal((await call(api, 'GET', '/volumes/v/snapshots')).status, 401);
  assert.equal((await call(api, 'POST', '/volumes/v/snapshots', { auth: true, body: { name: 'a' } })).status, 201);
  const bad = await call(api, 'POST', '/volumes/v/snapshots', { auth: true, body: { name: '../x' } });
  assert.deepEqual([bad.status, bad.json.code], [400, 'SV_ERR_INVALID_ARGUMENT']);
  const dup = await call(api, 'POST', '/volumes/v/snapshots', { auth: true, body: { name: 'a' } });
  assert.deepEqual([dup.status, dup.json.code], [409, 'SV_ERR_EXISTS']);
  const missing = await call(api, 'GET', '/volumes/v/snapshots/nope', { auth: true });
  assert.deepEqual([missing.status, missing.json.code], [404, 'SV_ERR_NOT_FOUND']);
  const list = await call(api, 'GET', '/volumes/v/snapshots', { auth: true });
  assert.deepEqual(list.json.map((s: { name: string }) => s.name), ['a']);
  assert.equal((await call(api, 'POST', '/volumes/v/snapshots/a/clone', { auth: true, body: { name: 'c' } })).status, 201);

  const refused = await call(api, 'DELETE', '/volumes/v/snapshots/a', { auth: true });
  assert.deepEqual([refused.status, refused.json.code], [409, 'SV_ERR_HAS_CLONES']);
  const vol = await call(api, 'DELETE', '/volumes/v', { auth: true });
  assert.deepEqual([vol.status, vol.json.code], [409, 'SV_ERR_HAS_SNAPSHOTS']);

  // A client reading the snapshot holds it.
  const reader = await NbdClient.connect({ ...nbd, exportName: 'v@a' });
  const busy = await call(api, 'DELETE', '/volumes/v/snapshots/a?flatten=true', { auth: true });
  assert.deepEqual([busy.status, busy.json.code], [409, 'SV_ERR_IN_USE']);
  await reader.close();
  await waitFor(() => c.volumeUsers('v@a').length === 0);

  const gone = await call(api, 'DELETE', '/volumes/v/snapshots/a?flatten=true', { auth: true });
  assert.equal(gone.status, 200, gone.text);
  assert.deepEqual(gone.json, { deleted: 'v@a', flattened: ['c'] });
  assert.equal(c.store.manifest('c').parent, undefined);
  assert.deepEqual((await call(api, 'GET', '/volumes/v/snapshots', { auth: true })).json, []);
  assert.equal((await call(api, 'DELETE', '/volumes/v', { auth: true })).status, 200);
});

/** Poll a condition with a bounded deadline (a state change with no event to wait on). */
async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
