import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig, ConfigError } from '../../src/config/config.ts';
import { startController } from '../helpers/controller.ts';
import { NbdClient } from '../../src/nbd/client.ts';

/**
 * RBD volumes in the config, and a controller where librbd cannot be used
 * (STORVISOR_RBD=0 stands in for a machine without librbd): no cluster needed.
 */
process.env.STORVISOR_RBD = '0';

test('an rbd volume takes its cluster, user, pool and image from the config, with defaults', () => {
  const c = parseConfig({ volumes: [{ name: 'a', sizeMiB: 4, backend: 'rbd' }, { name: 'b', sizeMiB: 4, backend: 'rbd', rbd: { conf: '/c.conf', user: 'u', pool: 'p', image: 'i', timeoutSec: 5 } }, { name: 'f', sizeMiB: 4 }] }, '/', {});
  assert.deepEqual(c.volumes[0]!.rbd, { conf: '/etc/ceph/ceph.conf', user: 'admin', pool: 'rbd', image: 'a', timeoutSec: 30 });
  assert.deepEqual(c.volumes[1]!.rbd, { conf: '/c.conf', user: 'u', pool: 'p', image: 'i', timeoutSec: 5 });
  assert.equal(c.volumes[2]!.backend, undefined);
});

test('a bad rbd field is reported with its path', () => {
  const bad = (v: Record<string, unknown>) => () => parseConfig({ volumes: [{ name: 'a', sizeMiB: 4, ...v }] }, '/', {});
  assert.throws(bad({ backend: 'ceph' }), (e: ConfigError) => e.path === 'volumes[0].backend');
  assert.throws(bad({ backend: 'rbd', rbd: { pool: '' } }), (e: ConfigError) => e.path === 'volumes[0].rbd.pool');
  assert.throws(bad({ backend: 'rbd', rbd: { user: 'client.admin' } }), (e: ConfigError) => e.path === 'volumes[0].rbd.user');
  assert.throws(bad({ backend: 'rbd', rbd: { poool: 'x' } }), (e: ConfigError) => e.path === 'volumes[0].rbd.poool');
  assert.throws(bad({ rbd: { pool: 'x' } }), (e: ConfigError) => e.path === 'volumes[0].rbd');
});

test('without librbd an rbd volume is unavailable with the reason, and file volumes still serve', async (t) => {
  const c = await startController(t, {
    volumes: [
      { name: 'r', sizeMiB: 4, backend: 'rbd', rbd: { conf: '/nonexistent.conf' } },
      { name: 'f', sizeMiB: 4 },
    ],
  });
  const vols = (await c.status()).volumes as Array<{ name: string; backend?: string; open: boolean; error?: string }>;
  const r = vols.find((v) => v.name === 'r')!;
  assert.equal(r.backend, 'rbd');
  assert.match(r.error!, /RBD is disabled by STORVISOR_RBD=0/);
  await assert.rejects(NbdClient.connect({ ...c.nbdEndpoint(), exportName: 'r' }));
  const f = await NbdClient.connect({ ...c.nbdEndpoint(), exportName: 'f' });
  await f.pwrite(Buffer.alloc(4096, 1), 0);
  await f.close();
});
