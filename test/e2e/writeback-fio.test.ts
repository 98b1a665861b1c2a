import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Controller } from '../../src/controller/controller.ts';
import { startController, nbdUri, fioVerify, waitRunning } from '../helpers/controller.ts';
import { requireTools } from '../helpers/tools.ts';

/**
 * fio's nbd engine writes with plain NBD WRITEs (no FUA, no FLUSH), which a
 * file volume now takes write-back, through the controller's export and an
 * integrated nbd-export alike: fio's verification reads every block back, no
 * write cost a sync, and a FLUSH (fio --fsync) is one fdatasync at most.
 */
requireTools('fio');

/** The backend counters of volume `name` (zeroes before it is first opened). */
async function backendOf(c: Controller, name: string): Promise<{ writes: number; unsynced: number; syncs: number }> {
  const v = ((await c.status()).volumes as Array<{ name: string; stats?: Record<string, number> }>).find((x) => x.name === name)!;
  const s = v.stats ?? {};
  return { writes: s.backend_writes ?? 0, unsynced: s.backend_unsyncedWrites ?? 0, syncs: s.backend_syncs ?? 0 };
}

async function setup(t: Parameters<typeof startController>[0]) {
  const c = await startController(t, {
    volumes: [
      { name: 'v', sizeMiB: 16 },
      { name: 'iv', sizeMiB: 16 },
    ],
    functions: [{ name: 'i', function: 'nbd-export', volume: 'iv', deploy: 'integrated', options: { exportName: 'i' } }],
  });
  const integrated = await waitRunning(c, 'i');
  return { c, exports: [{ volume: 'v', uri: nbdUri(c.nbdEndpoint(), 'v') }, { volume: 'iv', uri: nbdUri(integrated, 'i') }] };
}

test('fio verify of plain NBD writes reads every block back, through the export and integrated, with no sync per write', async (t) => {
  const { c, exports } = await setup(t);
  for (const { volume, uri } of exports) {
    const before = await backendOf(c, volume);
    const r = await fioVerify(uri, 'randwrite', ['--size=4M']);
    assert.equal(r.error, 0);
    assert.ok(r.writeIos >= 1024 && r.readIos >= 1024, `${volume}: fio wrote ${r.writeIos} and verified ${r.readIos} blocks`);
    const after = await backendOf(c, volume);
    const writes = after.writes - before.writes;
    assert.ok(writes >= 1024, `${volume}: ${writes} backend writes`);
    assert.equal(after.unsynced - before.unsynced, writes, `${volume}: every write left to a flush`);
    assert.equal(after.syncs - before.syncs, 0, `${volume}: no fdatasync without a FLUSH`);
  }
});

test('fio with a FLUSH after every write costs at most one fdatasync per write, and verifies', async (t) => {
  const { c, exports } = await setup(t);
  for (const { volume, uri } of exports) {
    const before = await backendOf(c, volume);
    const r = await fioVerify(uri, 'randwrite', ['--size=1M', '--fsync=1', '--iodepth=8']);
    assert.equal(r.error, 0);
    const after = await backendOf(c, volume);
    const syncs = after.syncs - before.syncs;
    assert.ok(syncs >= 1 && syncs <= r.writeIos, `${volume}: ${syncs} fdatasyncs for ${r.writeIos} writes, each followed by a FLUSH`);
  }
});
