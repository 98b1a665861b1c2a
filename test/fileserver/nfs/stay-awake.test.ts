/**
 * The RPC server stays awake for a bounded time after a reply (src/net/stay-awake.ts,
 * whose bounds test/net/stay-awake.test.ts tests one at a time): real QD1
 * clients (our own, nfs-cat, nfs-ls) against a server that spins between their calls.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { readdirSync, readlinkSync } from 'node:fs';
import { NfsClient, NFS } from './helpers/nfs-client.ts';
import { nfsUrl } from './helpers/real-clients.ts';
import { startMemoryServer } from './helpers/server.ts';
import { requireTools } from '../../helpers/tools.ts';

const run = promisify(execFile);

test('a QD1 client gets every one of 2,000 calls answered while the server stays awake between them', async (t) => {
  const { server, port } = await startMemoryServer({ stayAwake: { contention: null } });
  t.after(() => server.stop());
  const c = await NfsClient.connect(port);
  t.after(() => c.close());
  const root = await c.root();
  const f = await c.create(root, 'f', 0, { mode: 0o644 });
  const data = randomBytes(64 << 10);
  assert.equal((await c.write(f.fh!, 0, data, 2)).status, 0);
  for (let i = 0; i < 2_000; i++) {
    const k = i % 3;
    if (k === 0) assert.equal((await c.rpc.call(NFS, 3, 0)).stat, 0);
    else if (k === 1) assert.equal((await c.getattr(f.fh!)).status, 0);
    else {
      const r = await c.read(f.fh!, (i % 16) * 4096, 4096);
      assert.equal(r.status, 0);
      assert.ok(Buffer.from(r.data!).equals(data.subarray((i % 16) * 4096, (i % 16 + 1) * 4096)));
    }
  }
  const st = server.stats();
  assert.ok(st.awakeSpins! > 0, 'the server spun after replies');
  assert.ok(st.awakeHits! > 0, `spins caught the next call (${JSON.stringify(st)})`);
});

test('nfs-cat and nfs-ls, one call at a time each, all complete against a server that stays awake', async (t) => {
  requireTools('nfs-cat', 'nfs-ls');
  const { server, port } = await startMemoryServer({ stayAwake: { contention: null } });
  t.after(() => server.stop());
  const c = await NfsClient.connect(port);
  const root = await c.root();
  const data = randomBytes(200_000);
  const f = await c.create(root, 'file', 0, { mode: 0o644 });
  assert.equal((await c.write(f.fh!, 0, data, 2)).status, 0);
  for (let i = 0; i < 20; i++) assert.equal((await c.create(root, `e${i}`, 0, { mode: 0o644 })).status, 0);
  await c.close();
  for (let i = 0; i < 5; i++) {
    const cat = await run('nfs-cat', [nfsUrl(port, '/file')], { encoding: 'buffer', maxBuffer: 1 << 20, timeout: 20_000 });
    assert.ok(cat.stdout.equals(data), `nfs-cat pass ${i}`);
    const ls = await run('nfs-ls', [nfsUrl(port)], { timeout: 20_000 });
    assert.equal(ls.stdout.trim().split('\n').length, 21, `nfs-ls pass ${i}`);
  }
  assert.ok(server.stats().awakeSpins! > 0, 'the server spun between their calls');
});

test('with a budget of 0 the server answers without ever spinning', async (t) => {
  const { server, port } = await startMemoryServer({ stayAwake: { budgetUs: 0 } });
  t.after(() => server.stop());
  const c = await NfsClient.connect(port);
  t.after(() => c.close());
  for (let i = 0; i < 50; i++) assert.equal((await c.rpc.call(NFS, 3, 0)).stat, 0);
  assert.equal(server.stats().awakeSpins, 0);
});

test('the server opens its contention meters at its first reply and closes them when it stops', async () => {
  const base = meterFds();
  const { server, port } = await startMemoryServer();
  assert.equal(meterFds(), base, 'nothing opened before a call was answered');
  const c = await NfsClient.connect(port);
  assert.equal((await c.rpc.call(NFS, 3, 0)).stat, 0);
  assert.equal(meterFds(), base + 1, '/proc/loadavg is open while the server runs');
  await c.close();
  await server.stop();
  assert.equal(meterFds(), base, 'and closed once it stopped');
});

/** Descriptors of this process open on /proc/loadavg (the runnable meter's file). */
function meterFds(): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === '/proc/loadavg') n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}
