import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NbdClient } from '../../src/nbd/client.ts';
import { tempDir, rng } from '../helpers/tmp.ts';
import { writeLoad, verifyBlocks, shuffledBlocks } from '../helpers/load.ts';

/**
 * Acknowledged writes survive kill -9 of the controller: a real controller
 * process (bin/storvisor.js) takes a write load through its own NBD export and
 * through a thread guest, is SIGKILLed mid-load, restarted on the same data
 * directory, and every acknowledged block must read back exactly.
 */
const launcher = fileURLToPath(new URL('../../bin/storvisor.js', import.meta.url));

interface Running {
  child: ChildProcess;
  urls: Map<string, { host: string; port: number; name: string }>;
}

function startProcess(configFile: string): Promise<Running> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [launcher, 'start', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr!.on('data', (d) => (err += d));
    child.stdout!.on('data', (d) => {
      out += d;
      if (!out.includes('Ctrl-C stops')) return;
      const urls = new Map<string, { host: string; port: number; name: string }>();
      for (const m of out.matchAll(/nbd:\/\/([\d.]+):(\d+)\/(\S*)/g)) {
        const name = m[3] || 'g';
        urls.set(name, { host: m[1]!, port: Number(m[2]), name });
      }
      resolve({ child, urls });
    });
    child.once('exit', (code) => reject(new Error(`controller exited (${code}) before it was ready:\n${err}\n${out}`)));
  });
}

test('acknowledged writes survive kill -9 of the controller, through the export and through a guest', async (t) => {
  const dir = tempDir(t);
  const config = join(dir, 'storvisor.json');
  writeFileSync(
    config,
    JSON.stringify({
      dataDir: join(dir, 'data'),
      cacheMiB: 8,
      api: null,
      nbd: { port: 0 },
      volumes: [
        { name: 'v', sizeMiB: 32 },
        { name: 'gv', sizeMiB: 32 },
      ],
      functions: [{ name: 'g', function: 'nbd-export', volume: 'gv', options: { exportName: 'g' } }],
    }),
  );

  const first = await startProcess(config);
  t.after(() => first.child.kill('SIGKILL'));
  const direct = await NbdClient.connect({ ...first.urls.get('v')!, exportName: 'v' });
  const viaGuest = await NbdClient.connect({ ...first.urls.get('g')!, exportName: 'g' });
  const next = rng(9);
  let total = 0;
  let killed = false;
  const onAck = () => {
    // Kill while both loads have writes in flight.
    if (++total === 600 && !killed) {
      killed = true;
      first.child.kill('SIGKILL');
    }
  };
  const [a, b] = await Promise.all([
    writeLoad(direct, { blocks: shuffledBlocks(8192, next), depth: 16, onAck }),
    writeLoad(viaGuest, { blocks: shuffledBlocks(8192, next), depth: 16, onAck }),
  ]);
  assert.ok(killed, 'the controller was killed mid-load');
  assert.ok(a.error && b.error, 'both loads saw the connection die');
  assert.ok(a.acked.length > 50 && b.acked.length > 50, `acked ${a.acked.length} + ${b.acked.length}`);

  const second = await startProcess(config);
  t.after(() => second.child.kill('SIGKILL'));
  const direct2 = await NbdClient.connect({ ...second.urls.get('v')!, exportName: 'v' });
  const viaGuest2 = await NbdClient.connect({ ...second.urls.get('g')!, exportName: 'g' });
  assert.deepEqual(await verifyBlocks(direct2, a.acked), []);
  assert.deepEqual(await verifyBlocks(viaGuest2, b.acked), []);
  await direct2.close();
  await viaGuest2.close();
  second.child.kill('SIGINT');
  await new Promise((r) => second.child.once('exit', r));
});

test('acknowledged plain writes survive kill -9 of the controller through an integrated nbd-export, and FUA writes through the export', async (t) => {
  // Both volumes are write-back over NBD now: a plain WRITE's data is in the
  // host's page cache when it is acknowledged, which a killed process cannot take back.
  const dir = tempDir(t);
  const config = join(dir, 'storvisor.json');
  writeFileSync(
    config,
    JSON.stringify({
      dataDir: join(dir, 'data'),
      cacheMiB: 8,
      api: null,
      nbd: { port: 0 },
      volumes: [
        { name: 'v', sizeMiB: 32 },
        { name: 'iv', sizeMiB: 32 },
      ],
      functions: [{ name: 'i', function: 'nbd-export', volume: 'iv', deploy: 'integrated', options: { exportName: 'i' } }],
    }),
  );

  const first = await startProcess(config);
  t.after(() => first.child.kill('SIGKILL'));
  const fua = await NbdClient.connect({ ...first.urls.get('v')!, exportName: 'v' });
  const integrated = await NbdClient.connect({ ...first.urls.get('i')!, exportName: 'i' });
  const fuaDevice = Object.assign(Object.create(fua) as NbdClient, { pwrite: (buf: Uint8Array, off: number) => fua.pwrite(buf, off, { fua: true }) });
  const next = rng(11);
  let total = 0;
  let killed = false;
  const onAck = () => {
    if (++total === 600 && !killed) {
      killed = true;
      first.child.kill('SIGKILL');
    }
  };
  const [a, b] = await Promise.all([
    writeLoad(integrated, { blocks: shuffledBlocks(8192, next), depth: 16, onAck }),
    writeLoad(fuaDevice, { blocks: shuffledBlocks(8192, next), depth: 16, onAck }),
  ]);
  assert.ok(killed, 'the controller was killed mid-load');
  assert.ok(a.error && b.error, 'both loads saw the connection die');
  assert.ok(a.acked.length > 50 && b.acked.length > 50, `acked ${a.acked.length} + ${b.acked.length}`);

  const second = await startProcess(config);
  t.after(() => second.child.kill('SIGKILL'));
  const integrated2 = await NbdClient.connect({ ...second.urls.get('i')!, exportName: 'i' });
  const direct2 = await NbdClient.connect({ ...second.urls.get('v')!, exportName: 'v' });
  assert.deepEqual(await verifyBlocks(integrated2, a.acked), []);
  assert.deepEqual(await verifyBlocks(direct2, b.acked), []);
  await integrated2.close();
  await direct2.close();
  second.child.kill('SIGINT');
  await new Promise((r) => second.child.once('exit', r));
});
