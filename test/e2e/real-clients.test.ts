import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startController, run, nbdUri, fioVerify } from '../helpers/controller.ts';
import { tempDir } from '../helpers/tmp.ts';
import type { Controller } from '../../src/controller/controller.ts';
import { requireTools } from '../helpers/tools.ts';

/**
 * Real NBD clients (fio, nbdcopy, nbdinfo, qemu-img) against the controller's own
 * export and against the nbd-export function running in a thread guest, i.e.
 * through the shared-memory queue and the controller's poller.
 */
const SIZE = 64 * 2 ** 20;
// A missing client fails the suite here, before anything starts: never a silent skip.
requireTools('fio', 'nbdinfo', 'nbdcopy', 'qemu-img');

async function endpoints(t: { after: (fn: () => unknown) => void }, notify: string) {
  const c: Controller = await startController(t, {
    volumes: [
      { name: 'direct', size: SIZE },
      { name: 'guestvol', size: SIZE },
    ],
    functions: [{ name: 'g', function: 'nbd-export', volume: 'guestvol', deploy: 'guest', notify, options: { exportName: 'g' } }],
  });
  const guest = (await c.status()).functions[0]!.address!;
  return { controller: nbdUri(c.nbdEndpoint(), 'direct'), guest: nbdUri(guest, 'g') };
}

describe('real NBD clients', () => {
  for (const notify of ['adaptive', 'poll', 'notify']) {
    test(`fio verifies random writes and reads through the controller export and a ${notify} guest`, async (t) => {
      const e = await endpoints(t, notify);
      for (const uri of notify === 'adaptive' ? [e.controller, e.guest] : [e.guest]) {
        const r = await fioVerify(uri, 'randwrite');
        assert.equal(r.error, 0);
        assert.ok(r.writeIos >= 4096 && r.readIos >= 4096, `${uri}: wrote ${r.writeIos}, verified ${r.readIos}`);
      }
    });
  }

  test('fio mixed random read/write with verification through a guest', async (t) => {
    const e = await endpoints(t, 'adaptive');
    const r = await fioVerify(e.guest, 'randrw', ['--rwmixread=50']);
    assert.equal(r.error, 0);
    assert.ok(r.readIos > 0 && r.writeIos > 0);
  });

  test('nbdinfo and qemu-img report the volume size and flags', async (t) => {
    const e = await endpoints(t, 'adaptive');
    for (const uri of [e.controller, e.guest]) {
      const info = JSON.parse((await run('nbdinfo', ['--json', uri])).stdout);
      const exp = info.exports[0];
      assert.equal(exp['export-size'], SIZE);
      assert.equal(exp['is_read_only'], false);
      assert.equal(exp['can_flush'], true);
      const q = JSON.parse((await run('qemu-img', ['info', '--output=json', uri])).stdout);
      assert.equal(q['virtual-size'], SIZE);
    }
  });

  test('nbdcopy round-trips a file byte for byte through both paths', async (t) => {
    const e = await endpoints(t, 'adaptive');
    const dir = tempDir(t);
    const src = join(dir, 'src.img');
    writeFileSync(src, randomBytes(SIZE));
    for (const [i, uri] of [e.controller, e.guest].entries()) {
      const out = join(dir, `out${i}.img`);
      await run('nbdcopy', [src, uri]);
      await run('nbdcopy', [uri, out]);
      assert.ok(readFileSync(out).equals(readFileSync(src)), `${uri}: copy differs`);
    }
  });
});

describe('the gateway deployment', () => {
  test('fio verifies random writes through nbd-export in a gateway process that reaches its volume over NBD', async (t) => {
    const c: Controller = await startController(t, {
      volumes: [{ name: 'gwvol', size: SIZE }],
      functions: [{ name: 'gw', function: 'nbd-export', volume: 'gwvol', deploy: 'gateway', options: { exportName: 'gw' } }],
    });
    const s = (await c.status()).functions[0]!;
    assert.equal(s.deploy, 'gateway');
    const r = await fioVerify(nbdUri(s.address!, 'gw'), 'randwrite');
    assert.equal(r.error, 0);
    assert.ok(r.writeIos >= 4096 && r.readIos >= 4096);
    const after = (await c.status()).volumes.find((v: any) => v.name === 'gwvol') as { stats?: Record<string, number> };
    assert.ok((after.stats?.writes ?? 0) >= 4096, 'the writes reached the controller volume');
  });
});
