/**
 * A virtual volume: the dedup function, in a guest on its backing volume,
 * exports a deduplicating volume that the controller hands to a file server
 * guest. NFS writes land deduplicated; the provider can crash and come back
 * under its consumer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NfsClient } from '../fileserver/nfs/helpers/nfs-client.ts';
import type { ThreadGuest } from '../../src/deploy/guest/thread-guest.ts';
import { startController, waitRunning } from '../helpers/controller.ts';

const CHUNK = 64 * 1024;

test('a file server guest on a dedup virtual volume stores repeated data once and survives a provider restart', async (t) => {
  const c = await startController(t, {
    volumes: [{ name: 'backing', sizeMiB: 128 }, { name: 'dd', provider: 'dedup0' }],
    functions: [
      { name: 'dedup0', function: 'dedup', volume: 'backing', options: { logicalSize: 256 * 2 ** 20 } },
      { name: 'nfs', function: 'fileserver', volume: 'dd' },
    ],
  });
  const status = await c.status();
  assert.ok(status.volumes.some((v: any) => v.name === 'dd' && v.virtual && v.size === 256 * 2 ** 20));
  const nfs = await NfsClient.connect((await waitRunning(c, 'nfs')).port);
  t.after(() => nfs.close().catch(() => {}));
  const root = await nfs.root();
  const same = Buffer.alloc(CHUNK, 0x5a);
  for (let i = 0; i < 4; i++) same.write(`block ${i}`, i * 4096); // 16 distinct 4 KiB blocks, repeated
  const created = await nfs.create(root, 'repeated.bin', 1, { mode: 0o644 });
  assert.equal(created.status, 0);
  for (let off = 0; off < 32 * CHUNK; off += CHUNK) assert.equal((await nfs.write(created.fh!, off, same, 2)).status, 0);

  const stats = (await c.deployment('dedup0')!.status()).stats;
  // 2 MiB of file data (plus the filesystem's own metadata) in well under a quarter of that.
  assert.ok(stats.fn_dedupHits! > 400, `dedup hits ${stats.fn_dedupHits}`);
  assert.ok(stats.fn_physicalBytesUsed! < (32 * CHUNK) / 4, `physical bytes used ${stats.fn_physicalBytesUsed}`);

  // The provider dies; the controller restarts it; the consumer keeps its data.
  await (c.deployment('dedup0') as ThreadGuest).kill();
  await waitRunning(c, 'dedup0', 1);
  for (let off = 0; off < 32 * CHUNK; off += CHUNK) {
    const r = await nfs.read(created.fh!, off, CHUNK);
    assert.equal(r.status, 0);
    assert.ok(r.data!.equals(same), `read back at ${off}: ${r.data!.length} bytes, ${r.data!.subarray(0, 16).toString("hex")} ... at 4096: ${r.data!.subarray(4096, 4112).toString("hex")}`);
  }
  assert.equal((await nfs.write(created.fh!, 32 * CHUNK, same, 2)).status, 0, 'writes work after the provider restart');
});
