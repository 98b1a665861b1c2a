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

/** One write load of the kill -9 tests: export `name`, with FUA writes or plain ones. */
interface Load {
  name: string;
  fua?: boolean;
}

/**
 * Start a controller process on a fresh data directory with `volumes` and
 * `functions`, run one write load per export in `loads` (16 deep, distinct
 * blocks), SIGKILL it once 600 writes are acknowledged, restart it on the same
 * data directory and check that every acknowledged block reads back exactly.
 */
async function killMidLoad(t: Parameters<typeof tempDir>[0], volumes: object[], functions: object[], loads: Load[], seed: number): Promise<void> {
  const dir = tempDir(t);
  const config = join(dir, 'storvisor.json');
  writeFileSync(config, JSON.stringify({ dataDir: join(dir, 'data'), cacheMiB: 8, api: null, nbd: { port: 0 }, volumes, functions }));

  const first = await startProcess(config);
  t.after(() => first.child.kill('SIGKILL'));
  const clients = await Promise.all(loads.map((l) => NbdClient.connect({ ...first.urls.get(l.name)!, exportName: l.name })));
  const next = rng(seed);
  let total = 0;
  let killed = false;
  const onAck = () => {
    // Kill while every load has writes in flight.
    if (++total === 600 && !killed) {
      killed = true;
      first.child.kill('SIGKILL');
    }
  };
  const results = await Promise.all(
    clients.map((c, i) => {
      const dev = loads[i]!.fua ? Object.assign(Object.create(c) as NbdClient, { pwrite: (buf: Uint8Array, off: number) => c.pwrite(buf, off, { fua: true }) }) : c;
      return writeLoad(dev, { blocks: shuffledBlocks(8192, next), depth: 16, onAck });
    }),
  );
  assert.ok(killed, 'the controller was killed mid-load');
  for (const [i, r] of results.entries()) {
    assert.ok(r.error, `load ${loads[i]!.name} saw the connection die`);
    assert.ok(r.acked.length > 50, `load ${loads[i]!.name} acked ${r.acked.length}`);
  }

  const second = await startProcess(config);
  t.after(() => second.child.kill('SIGKILL'));
  for (const [i, l] of loads.entries()) {
    const client = await NbdClient.connect({ ...second.urls.get(l.name)!, exportName: l.name });
    assert.deepEqual(await verifyBlocks(client, results[i]!.acked), [], `export ${l.name}`);
    await client.close();
  }
  second.child.kill('SIGINT');
  await new Promise((r) => second.child.once('exit', r));
}

test('acknowledged writes survive kill -9 of the controller, through the export and through a guest', async (t) => {
  await killMidLoad(
    t,
    [
      { name: 'v', sizeMiB: 32 },
      { name: 'gv', sizeMiB: 32 },
    ],
    [{ name: 'g', function: 'nbd-export', volume: 'gv', options: { exportName: 'g' } }],
    [{ name: 'v' }, { name: 'g' }],
    9,
  );
});

test('acknowledged plain writes survive kill -9 of the controller through an integrated nbd-export, and FUA writes through the export', async (t) => {
  // A plain WRITE to a file volume is write-back over NBD: its data is in the
  // host's page cache when it is acknowledged, which a killed process cannot take back.
  await killMidLoad(
    t,
    [
      { name: 'v', sizeMiB: 32 },
      { name: 'iv', sizeMiB: 32 },
    ],
    [{ name: 'i', function: 'nbd-export', volume: 'iv', deploy: 'integrated', options: { exportName: 'i' } }],
    [{ name: 'i' }, { name: 'v', fua: true }],
    11,
  );
});
