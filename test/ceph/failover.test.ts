import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NbdClient } from '../../src/nbd/client.ts';
import { tempDir, rng } from '../helpers/tmp.ts';
import { run } from '../helpers/controller.ts';
import { writeLoad, verifyBlocks, shuffledBlocks } from '../helpers/load.ts';
import { startCluster, rbdConfig, type Cluster } from './cluster.ts';
import { RespClient } from '../database/helpers.ts';
import { verifyStableWrites, writeUntilKilled } from '../fileserver/nfs/helpers/stable-writes.ts';
import { FileBlockDevice } from '../../src/block/file-device.ts';
import { fsck } from '../../src/functions/fileserver/fs/index.ts';
import type { ThreadGuest } from '../../src/deploy/guest/thread-guest.ts';
import { startController, waitRunning } from '../helpers/controller.ts';

/**
 * Controllers on one cluster, as real processes (bin/storvisor.js): kill -9
 * mid-load then restart keeps every acknowledged write; a second controller is
 * refused the image while the first holds it, and `storvisor volume takeover`
 * after the first is killed fences it (blocklist) and serves every write it
 * acknowledged, through the function on the volume.
 */
const launcher = fileURLToPath(new URL('../../bin/storvisor.js', import.meta.url));
const MiB = 2 ** 20;
let cluster: Cluster;

interface Running {
  child: ChildProcess;
  nbd: Map<string, { host: string; port: number }>;
  redis: number | undefined;
  api: string | undefined;
  output: () => string;
}

function startProcess(t: { after: (fn: () => unknown) => void }, configFile: string): Promise<Running> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [launcher, 'start', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, UV_THREADPOOL_SIZE: '16' } });
    t.after(() => child.kill('SIGKILL'));
    let out = '';
    child.stderr!.on('data', (d) => (out += d));
    child.stdout!.on('data', (d) => {
      out += d;
      if (!out.includes('Ctrl-C stops')) return;
      const nbd = new Map<string, { host: string; port: number }>();
      for (const m of out.matchAll(/nbd:\/\/([\d.]+):(\d+)\/(\S*)/g)) nbd.set(m[3] || '', { host: m[1]!, port: Number(m[2]) });
      const api = /(http:\/\/[\d.]+:\d+)\/status/.exec(out)?.[1];
      const redis = /redis:\/\/[\d.]+:(\d+)/.exec(out)?.[1];
      resolve({ child, nbd, api, redis: redis === undefined ? undefined : Number(redis), output: () => out });
    });
    child.once('exit', (code) => reject(new Error(`controller exited (${code}) before it was ready:\n${out}`)));
  });
}

function writeConfig(dir: string, image: string, opts: { api?: boolean; guest?: boolean; database?: boolean } = {}): string {
  const file = join(dir, 'storvisor.json');
  writeFileSync(
    file,
    JSON.stringify({
      dataDir: join(dir, 'data'),
      cacheMiB: 8,
      api: opts.api ? { port: 0 } : null,
      nbd: { port: 0 },
      volumes: [{ name: 'v', sizeMiB: 16, backend: 'rbd', rbd: rbdConfig(cluster, image) }],
      functions: opts.guest
        ? [{ name: 'g', function: 'nbd-export', volume: 'v', options: { exportName: 'g' } }]
        : opts.database
          ? [{ name: 'db', function: 'database', volume: 'v', options: { appendfsync: 'always' } }]
          : [],
    }),
  );
  return file;
}

/** Load `dev` until `killAt` writes are acknowledged, then kill -9 `victim`; resolves with the acknowledged blocks. */
async function loadAndKill(dev: NbdClient, victim: ChildProcess, killAt: number, seed: number): Promise<number[]> {
  let killed = false;
  const r = await writeLoad(dev, {
    blocks: shuffledBlocks(4096, rng(seed)),
    depth: 16,
    onAck: (n) => {
      if (n === killAt && !killed) {
        killed = true;
        victim.kill('SIGKILL');
      }
    },
  });
  assert.ok(killed, 'the controller was killed mid-load');
  assert.ok(r.error, 'the load saw the connection die');
  assert.ok(r.acked.length >= killAt, `acked ${r.acked.length}`);
  await new Promise((resolve) => (victim.exitCode !== null || victim.signalCode !== null ? resolve(null) : victim.once('exit', resolve)));
  return r.acked;
}

describe('RBD controllers: kill -9, lock refusal and takeover', () => {
  before(async () => {
    cluster = await startCluster();
  });
  after(async () => {
    await cluster?.stop();
  });

  test('after kill -9 mid-load and a restart, every acknowledged write to an RBD volume reads back', async (t) => {
    const config = writeConfig(tempDir(t), 'failover-restart');
    const first = await startProcess(t, config);
    const dev = await NbdClient.connect({ ...first.nbd.get('v')!, exportName: 'v' });
    const acked = await loadAndKill(dev, first.child, 300, 1);

    // The same controller (same data directory) restarts: its own stale lock is broken and fenced.
    const second = await startProcess(t, config);
    assert.match(second.output(), /stale lock of this controller broken/);
    const dev2 = await NbdClient.connect({ ...second.nbd.get('v')!, exportName: 'v' });
    assert.deepEqual(await verifyBlocks(dev2, acked), []);
    await dev2.close();
    second.child.kill('SIGINT');
    await new Promise((r) => second.child.once('exit', r));
  });

  test('the database on an RBD volume keeps every acknowledged SET across kill -9 of the controller', async (t) => {
    const config = writeConfig(tempDir(t), 'failover-db', { database: true });
    const first = await startProcess(t, config);
    const acknowledged = new Map<string, string>();
    let killed = false;
    const clients = await Promise.all(Array.from({ length: 8 }, () => RespClient.connect(first.redis!)));
    await Promise.all(
      clients.map(async (c, ci) => {
        for (let i = 0; !killed && i < 10_000; i++) {
          const key = `c${ci}:k${i}`;
          const value = `value-${ci}-${i}-${'x'.repeat(i % 50)}`;
          try {
            assert.deepEqual(await c.call('SET', key, value), { status: 'OK' });
          } catch {
            return; // killed mid-request: never acknowledged
          }
          acknowledged.set(key, value);
          if (acknowledged.size >= 300 && !killed) {
            killed = true;
            first.child.kill('SIGKILL');
          }
        }
      }),
    );
    clients.forEach((c) => c.close());
    assert.ok(killed && acknowledged.size >= 300, `acknowledged ${acknowledged.size}`);
    await new Promise((resolve) => (first.child.exitCode !== null || first.child.signalCode !== null ? resolve(null) : first.child.once('exit', resolve)));

    const second = await startProcess(t, config);
    const c = await RespClient.connect(second.redis!);
    const keys = [...acknowledged.keys()];
    const values = (await c.call('MGET', ...keys)) as (string | null)[];
    assert.deepEqual(keys.filter((k, i) => values[i] !== acknowledged.get(k)), []);
    c.close();
    second.child.kill('SIGINT');
    await new Promise((r) => second.child.once('exit', r));
  });

  test('a file server guest on an RBD volume killed mid-write comes back with every stable write, and fsck of the image is clean', async (t) => {
    const SIZE_MIB = 64;
    const c = await startController(t, {
      nbd: null,
      volumes: [{ name: 'fs', sizeMiB: SIZE_MIB, backend: 'rbd', rbd: rbdConfig(cluster, 'failover-fs') }],
      functions: [{ name: 'nfs', function: 'fileserver', volume: 'fs', deploy: 'guest', restart: 'on-failure' }],
    });
    const { port } = await waitRunning(c, 'nfs');
    const { acked } = await writeUntilKilled(port, 60, () => void (c.deployment('nfs') as ThreadGuest).kill());
    assert.equal((await waitRunning(c, 'nfs', 1)).port, port, 'the guest came back on its port');
    await verifyStableWrites(port, acked);
    await c.stop();
    // fsck the image itself, as the cluster has it.
    const image = join(tempDir(t), 'fs.img');
    await cluster.rbd('export', 'rbd/failover-fs', image);
    const device = await FileBlockDevice.open(image, SIZE_MIB << 20, { readOnly: true });
    const report = await fsck(device);
    await device.close();
    assert.deepEqual(report.problems, []);
  });

  test('a second controller is refused the image and names the holder; takeover after kill -9 keeps every acknowledged write', async (t) => {
    const a = await startProcess(t, writeConfig(tempDir(t), 'failover-two'));
    const bConfig = writeConfig(tempDir(t), 'failover-two', { api: true, guest: true });
    const b = await startProcess(t, bConfig);

    // B cannot have the volume while A holds it, and says who does.
    const refusal = new RegExp(`volume v \\(rbd rbd/failover-two\\) is locked by storvisor controller \\S+ on host \\S+ \\(pid ${a.child.pid},`);
    assert.match(b.output(), refusal);
    assert.match(b.output(), /storvisor volume takeover v/);

    const dev = await NbdClient.connect({ ...a.nbd.get('v')!, exportName: 'v' });
    const held = JSON.parse(await cluster.rbd('lock', 'ls', '--format', 'json', 'rbd/failover-two')) as Array<{ address: string }> | Record<string, { address: string }>;
    const holderAddress = (Array.isArray(held) ? held[0]! : Object.values(held)[0]!).address;
    const acked = await loadAndKill(dev, a.child, 300, 2);

    // The explicit command, against the running controller B.
    const { stdout } = await run(process.execPath, [launcher, 'volume', 'takeover', 'v', '--json', '--config', bConfig, '--api', b.api!]);
    assert.deepEqual(JSON.parse(stdout), { volume: 'v', started: ['g'] });
    const blocklist = await cluster.ceph('osd', 'blocklist', 'ls');
    assert.ok(blocklist.includes(holderAddress), `${holderAddress} is not blocklisted:\n${blocklist}`);

    // The function on the volume serves again, with every write A acknowledged.
    const status = await (await fetch(`${b.api}/status`, { headers: { authorization: `Bearer ${await token(bConfig)}` } })).json() as { functions: Array<{ name: string; state: string; address: { host: string; port: number } }> };
    const g = status.functions.find((f) => f.name === 'g')!;
    assert.equal(g.state, 'running');
    const viaGuest = await NbdClient.connect({ ...g.address, exportName: 'g' });
    assert.deepEqual(await verifyBlocks(viaGuest, acked), []);
    await viaGuest.close();
    b.child.kill('SIGINT');
    await new Promise((r) => b.child.once('exit', r));
  });
});

async function token(configFile: string): Promise<string> {
  const { tokenPath } = await import('../../src/api/token.ts');
  const { readFileSync } = await import('node:fs');
  const { loadConfig } = await import('../../src/config/config.ts');
  return readFileSync(tokenPath(loadConfig(configFile).dataDir), 'utf8').trim();
}
