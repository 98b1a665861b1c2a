import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { NbdClient } from '../../src/nbd/client.ts';
import { startController } from '../helpers/controller.ts';
import { pattern, verifyBlocks } from '../helpers/load.ts';
import { startCluster, rbdConfig, type Cluster } from './cluster.ts';

/**
 * The cluster goes away (its only OSD stopped): clients get errors within the
 * volume's timeout, never data that is not on the image, and I/O resumes by
 * itself when the OSD comes back.
 */
let cluster: Cluster;
const TIMEOUT_SEC = 3;
/** Blocks written in 64 KiB runs (multi-block writes do not fill the read cache, so reads go to the cluster). */
const BLOCKS = 256;

describe('RBD volume while the cluster is away', () => {
  before(async () => {
    cluster = await startCluster();
  });
  after(async () => {
    await cluster?.stop();
  });

  test('with the OSD stopped, reads and writes fail with an I/O error in bounded time, and I/O resumes when it is back', async (t) => {
    const c = await startController(t, { volumes: [{ name: 'o', sizeMiB: 16, backend: 'rbd', rbd: rbdConfig(cluster, 'outage', TIMEOUT_SEC) }] });
    const dev = await NbdClient.connect({ ...c.nbdEndpoint(), exportName: 'o' });
    t.after(() => dev.close());
    const run = Buffer.alloc(65536);
    for (let b = 0; b < BLOCKS; b += 16) {
      for (let i = 0; i < 16; i++) pattern(b + i).copy(run, i * 4096);
      await dev.pwrite(run, b * 4096);
    }
    const written = Array.from({ length: BLOCKS }, (_, i) => i);

    await cluster.stopOsd();
    const t0 = performance.now();
    const buf = Buffer.alloc(65536);
    await assert.rejects(dev.pread(buf, 128 * 4096), (err: Error & { code?: string }) => {
      assert.match(`${err.code} ${err.message}`, /error 5\b|EIO/);
      return true;
    });
    const readFailedAfter = (performance.now() - t0) / 1000;
    assert.ok(readFailedAfter < TIMEOUT_SEC + 10, `the read failed after ${readFailedAfter.toFixed(1)} s`);
    await assert.rejects(dev.pwrite(Buffer.alloc(65536, 0xee), 512 * 4096), /error 5\b|EIO/); // EIO on the wire
    const status = (await c.status()).volumes[0] as { stats: Record<string, number> };
    assert.ok(status.stats.backend_errors >= 2, `backend errors ${status.stats.backend_errors}`);

    await cluster.startOsd();
    // Every block reads back as written (no zeroes, no stale cache), and writes work again.
    assert.deepEqual(await verifyBlocks(dev, written), []);
    await dev.pwrite(pattern(600), 600 * 4096);
    assert.deepEqual(await verifyBlocks(dev, [600]), []);
    const image = Buffer.alloc(4096);
    await dev.pread(image, 600 * 4096);
    assert.ok(image.equals(pattern(600)));
  });
});
