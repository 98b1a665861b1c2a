import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startController, run, nbdUri, fioVerify } from '../helpers/controller.ts';
import { tempDir } from '../helpers/tmp.ts';
import { startCluster, rbdConfig, type Cluster } from './cluster.ts';
import { NbdClient } from '../../src/nbd/client.ts';
import { createImage, openRbd, MAX_IN_FLIGHT_OPS } from '../../src/storage/rbd-backend.ts';

/**
 * An RBD-backed volume is a volume like any other: real NBD clients (fio with
 * verification, nbdcopy) through the controller's export and through an
 * nbd-export guest, FLUSH and TRIM through to librbd, and /status naming the
 * backend.
 */
const SIZE = 32 * 2 ** 20;
let cluster: Cluster;

describe('RBD volumes with real NBD clients', () => {
  before(async () => {
    cluster = await startCluster();
  });
  after(async () => {
    await cluster?.stop();
  });

  test('fio verifies random writes and reads on an RBD volume through the export and through a guest', async (t) => {
    const c = await startController(t, {
      volumes: [
        { name: 'r', size: SIZE, backend: 'rbd', rbd: rbdConfig(cluster, 'clients-r') },
        { name: 'rg', size: SIZE, backend: 'rbd', rbd: rbdConfig(cluster, 'clients-rg') },
      ],
      functions: [{ name: 'g', function: 'nbd-export', volume: 'rg', deploy: 'guest', options: { exportName: 'g' } }],
    });
    const guest = (await c.status()).functions[0]!.address!;
    for (const uri of [nbdUri(c.nbdEndpoint(), 'r'), nbdUri(guest, 'g')]) {
      const r = await fioVerify(uri, 'randwrite', ['--size=4M', '--iodepth=16']);
      assert.equal(r.error, 0);
      assert.ok(r.writeIos >= 1024 && r.readIos >= 1024, `${uri}: wrote ${r.writeIos}, verified ${r.readIos}`);
    }
    const status = await c.status();
    const vols = status.volumes as Array<{ name: string; backend: string; rbd?: { pool: string; image: string } }>;
    assert.deepEqual(vols.map((v) => [v.name, v.backend, v.rbd?.image]), [['r', 'rbd', 'clients-r'], ['rg', 'rbd', 'clients-rg']]);
  });

  test('nbdcopy copies a file onto an RBD volume and back unchanged, and the image holds it', async (t) => {
    const dir = tempDir(t);
    const c = await startController(t, { volumes: [{ name: 'copy', size: SIZE, backend: 'rbd', rbd: rbdConfig(cluster, 'clients-copy') }] });
    const src = join(dir, 'src.bin');
    const back = join(dir, 'back.bin');
    const data = randomBytes(SIZE);
    writeFileSync(src, data);
    const uri = nbdUri(c.nbdEndpoint(), 'copy');
    await run('nbdcopy', [src, uri]);
    await run('nbdcopy', [uri, back]);
    assert.ok(readFileSync(back).equals(data), 'the round trip changed the data');
    // The blocks are in the image itself, not only in the controller's cache.
    await c.stop();
    await cluster.rbd('export', 'rbd/clients-copy', join(dir, 'export.bin'));
    assert.ok(readFileSync(join(dir, 'export.bin')).equals(data), 'the RBD image does not hold what was written');
  });

  test('FLUSH and TRIM reach librbd, and written zeroes read back as zeroes', async (t) => {
    const c = await startController(t, { volumes: [{ name: 'ft', size: SIZE, backend: 'rbd', rbd: rbdConfig(cluster, 'clients-ft') }] });
    const v = c.store.openVolumes().find((x) => x.name === 'ft')!;
    const block = Buffer.alloc(65536, 0xab);
    await v.pwrite(block, 0);
    await v.flush();
    await v.zero(4096, 8192);
    await v.trim(65536 * 4, 65536);
    const out = Buffer.alloc(65536);
    await v.pread(out, 0);
    assert.ok(out.subarray(0, 4096).every((b) => b === 0xab));
    assert.ok(out.subarray(4096, 12288).every((b) => b === 0), 'zeroed range');
    assert.ok(out.subarray(12288).every((b) => b === 0xab));
    const stats = (await c.status()).volumes[0] as { stats: Record<string, number> };
    assert.ok(stats.stats.backend_syncs >= 2, `syncs ${stats.stats.backend_syncs}`);
  });

  test('resize and delete of an RBD volume go to the image', async (t) => {
    const c = await startController(t, { volumes: [{ name: 'rd', size: SIZE, backend: 'rbd', rbd: rbdConfig(cluster, 'clients-rd') }] });
    await c.resizeVolume('rd', 2 * SIZE);
    const info = JSON.parse(await cluster.rbd('info', '--format', 'json', 'rbd/clients-rd')) as { size: number; features: string[] };
    assert.equal(info.size, 2 * SIZE);
    assert.ok(info.features.includes('exclusive-lock'), `features ${info.features.join(',')}`);
    const dev = await NbdClient.connect({ ...c.nbdEndpoint(), exportName: 'rd' });
    assert.equal(dev.size, 2 * SIZE);
    await dev.pwrite(Buffer.alloc(4096, 3), 2 * SIZE - 4096);
    await dev.close();
    // The export notices the disconnect on its own turn: wait for it (bounded), then delete.
    for (const until = Date.now() + 10_000; c.volumeUsers('rd').length > 0 && Date.now() < until; ) await new Promise((r) => setImmediate(r));
    await c.deleteVolume('rd');
    assert.doesNotMatch(await cluster.rbd('ls', 'rbd'), /clients-rd\b/);
  });

  test('requests past the in-flight bound wait in order, a flush behind them covers them all, and every completion arrives through the eventfd watch', async () => {
    const loc = { ...(rbdConfig(cluster, 'clients-bound') as { conf: string; user: string; pool: string; timeoutSec: number }), image: 'clients-bound' };
    await createImage(loc, SIZE);
    const b = await openRbd(loc, { controller: 'bound-test', volume: 'bound' });
    try {
      assert.equal(b.engineKind, 'rbd+eventfd');
      const n = MAX_IN_FLIGHT_OPS + 88; // 4 KiB writes, one object operation each
      const data = b.alloc(n * 4096).buf;
      for (let i = 0; i < n; i++) data.fill((i * 7 + 1) & 0xff, i * 4096, (i + 1) * 4096);
      const done: Promise<void>[] = [];
      for (let i = 0; i < n; i++) done.push(b.write(data, i * 4096, 4096, i * 4096));
      assert.equal(b.stats.inFlight, MAX_IN_FLIGHT_OPS);
      assert.equal(b.queued, n - MAX_IN_FLIGHT_OPS);
      done.push(b.datasync()); // behind the waiting writes, never ahead of them
      assert.equal(b.queued, n - MAX_IN_FLIGHT_OPS + 1);
      await Promise.all(done);
      assert.equal(b.stats.maxInFlight, MAX_IN_FLIGHT_OPS);
      assert.equal(b.queued, 0);
      const back = b.alloc(n * 4096).buf;
      await b.read(back, 0, n * 4096, 0);
      assert.ok(back.subarray(0, n * 4096).equals(data.subarray(0, n * 4096)), 'a write was lost or reordered');
      assert.equal(b.rbdCounters.drained, n + 2);
      assert.ok(b.rbdCounters.wakeups <= b.rbdCounters.drained, `wake-ups ${b.rbdCounters.wakeups}`);
    } finally {
      await b.close();
    }
  });

  test('requests started in one turn reach librbd together on the next tick, and read back what was written', async () => {
    const loc = { ...(rbdConfig(cluster, 'clients-batch') as { conf: string; user: string; pool: string; timeoutSec: number }), image: 'clients-batch' };
    await createImage(loc, SIZE);
    const b = await openRbd(loc, { controller: 'batch-test', volume: 'batch' });
    try {
      const n = 32;
      const data = b.alloc(n * 4096).buf;
      for (let i = 0; i < n; i++) data.fill(i + 1, i * 4096, (i + 1) * 4096);
      const calls = b.rbdCounters.libCalls;
      const batches = b.rbdCounters.batches;
      const writes: Promise<void>[] = [];
      for (let i = 0; i < n; i++) writes.push(b.write(data, i * 4096, 4096, (n - 1 - i) * 4096));
      assert.equal(b.rbdCounters.libCalls, calls, 'a request reached librbd inside the turn that started it');
      await Promise.all(writes);
      assert.equal(b.rbdCounters.batches, batches + 1);
      const back = b.alloc(n * 4096).buf;
      await b.read(back, 0, n * 4096, 0);
      for (let i = 0; i < n; i++) assert.equal(back[(n - 1 - i) * 4096], i + 1, `block ${n - 1 - i}`);
    } finally {
      await b.close();
    }
  });
});
