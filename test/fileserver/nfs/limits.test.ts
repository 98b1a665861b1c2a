/**
 * Attacks on the NFS server's memory and connections, each as a small client:
 * the server stays within its bounds, the attacker is throttled or closed,
 * and nfs-ls is served meanwhile and afterwards.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { MemoryFileSystem } from '../../../src/functions/fileserver/nfs/memory-fs.ts';
import { startNfsServer } from '../../../src/functions/fileserver/nfs/server.ts';
import { frameRecord } from '../../../src/functions/fileserver/rpc/record-reader.ts';
import type { TcpServiceLimits } from '../../../src/net/tcp-service.ts';
import { forceGc, open, waitFor, within } from '../../net/helpers.ts';
import { NFS, NfsClient } from './helpers/nfs-client.ts';
import { nfsUrl } from './helpers/real-clients.ts';
import { RpcClient } from './helpers/rpc-client.ts';

const MiB = 1 << 20;
const execFileP = promisify(execFile);

async function start(t: TestContext, limits: Partial<TcpServiceLimits> = {}) {
  const logs: string[] = [];
  const server = await startNfsServer({ fs: new MemoryFileSystem(), host: '127.0.0.1', port: 0, limits, log: (m) => logs.push(m) });
  t.after(() => server.stop());
  const port = server.address.port;
  const stats = () => server.stats();
  return { server, port, stats, logs };
}

/** nfs-ls of the export root: the real client that must keep working. */
async function assertServed(port: number, name?: string): Promise<void> {
  const r = await execFileP('nfs-ls', [nfsUrl(port)], { timeout: 30_000 });
  if (name !== undefined) assert.match(r.stdout, new RegExp(name));
}

test('8 connections pipelining 200 × 1 MiB READs without reading are throttled or closed; memory stays bounded; nfs-ls is served', async (t) => {
  const { port, stats } = await start(t);
  const c = await NfsClient.connect(port);
  t.after(() => c.close());
  const root = await c.root();
  const fh = (await c.create(root, 'big', 1, { mode: 0o644 })).fh!;
  assert.equal((await c.write(fh, 0, Buffer.alloc(MiB, 7), 2)).status, 0);
  forceGc();
  const ab0 = process.memoryUsage().arrayBuffers;
  const calls0 = stats().calls!;
  const reads = Buffer.concat(
    Array.from({ length: 200 }, (_, i) =>
      frameRecord(RpcClient.encodeCall(i + 1, NFS, 3, 6, { flavor: 1, uid: 0, gid: 0 }, (e) => e.opaque(fh).u64(0).u32(MiB))),
    ),
  );
  const attackers = await Promise.all(Array.from({ length: 8 }, () => open(port)));
  t.after(() => attackers.forEach((s) => s.destroy()));
  let peakQueued = 0;
  for (const s of attackers) {
    s.pause(); // never reads
    s.write(reads);
  }
  // Settled: nothing in flight, and what is queued stays queued (nobody reads).
  await waitFor(() => {
    const st = stats();
    peakQueued = Math.max(peakQueued, st.queuedBytes!);
    return st.inflightRequests === 0 && st.activeConnections! <= 9 && (st.queuedBytes! > 0 || st.activeConnections === 1);
  }, 'the attack to settle', 30_000);
  await assertServed(port, 'big'); // meanwhile
  const st = stats();
  const executed = st.calls! - calls0;
  assert.ok(executed < 8 * 200, `executed ${executed} of 1600 READs for clients that do not read`);
  assert.ok(peakQueued <= 128 * MiB + 2 * MiB, `peak queued ${peakQueued}`);
  forceGc();
  const growth = process.memoryUsage().arrayBuffers - ab0;
  t.diagnostic(`READs executed ${executed}/1600, peak queued ${peakQueued}, closed for limits ${st.limitClosedConnections}, arrayBuffers +${growth}`);
  assert.ok(growth < 200 * MiB, `arrayBuffers grew by ${growth} bytes (budget 128 MiB)`);
  attackers.forEach((s) => s.destroy());
  await waitFor(() => stats().activeConnections === 1, 'the attackers to be gone');
  await assertServed(port, 'big'); // afterwards
});

test('100 connections each holding an unfinished 2 MiB record are closed heaviest first over the budget; nfs-ls is served', async (t) => {
  const { port, stats } = await start(t);
  forceGc();
  const ab0 = process.memoryUsage().arrayBuffers;
  const mark = Buffer.alloc(4);
  mark.writeUInt32BE((0x80000000 | (2 * MiB)) >>> 0, 0);
  const body = Buffer.alloc(2 * MiB - 64 * 1024); // one buffer shared by every attacker
  const attackers = await Promise.all(Array.from({ length: 100 }, () => open(port)));
  t.after(() => attackers.forEach((s) => s.destroy()));
  for (const s of attackers) {
    s.write(mark);
    s.write(body);
  }
  // Settled: every attacker is either closed or holds its whole unfinished record.
  await waitFor(() => {
    const st = stats();
    return st.activeConnections! + st.limitClosedConnections! === 100 && st.bufferedBytes === st.activeConnections! * body.length;
  }, 'every attacker to be held or closed', 30_000);
  await assertServed(port); // meanwhile
  const st = stats();
  assert.ok(st.limitClosedConnections! >= 20, `closed ${st.limitClosedConnections}`);
  assert.ok(st.bufferedBytes! <= 128 * MiB, `buffered ${st.bufferedBytes}`);
  forceGc();
  const growth = process.memoryUsage().arrayBuffers - ab0;
  t.diagnostic(`held ${st.bufferedBytes} by ${st.activeConnections} connections, closed for limits ${st.limitClosedConnections}, arrayBuffers +${growth}`);
  assert.ok(growth < 160 * MiB, `arrayBuffers grew by ${growth} bytes`);
});

test('a record started but not finished within the request timeout closes the connection', async (t) => {
  const { port, stats } = await start(t, { requestTimeoutMs: 150 });
  const s = await open(port);
  s.write(Buffer.from([0x80, 0x00, 0x10, 0x00, 1, 2, 3])); // 4 KiB promised, 3 bytes sent
  await within(s.gone, 5_000, 'the half-sent record to time out');
  assert.equal(stats().timedOutConnections, 1);
  assert.equal(stats().bufferedBytes, 0);
});

test('connections beyond maxConnections are closed at once; nfs-ls works once one is released', async (t) => {
  const limit = 10;
  const { port, stats } = await start(t, { maxConnections: limit });
  const sockets = await Promise.all(Array.from({ length: limit + 50 }, () => open(port)));
  t.after(() => sockets.forEach((s) => s.destroy()));
  let closed = 0;
  for (const s of sockets) void s.gone.then(() => closed++);
  await waitFor(() => closed === 50, 'the 50 excess connections to be closed');
  assert.equal(stats().refusedConnections, 50);
  // libnfs holds its MOUNT connection while it opens the NFS one: free a few slots.
  sockets.filter((s) => !s.destroyed).slice(0, 3).forEach((s) => s.destroy());
  await waitFor(() => stats().activeConnections === limit - 3, 'slots to free');
  await assertServed(port);
});

test('a connection idle for idleTimeoutMs is closed', async (t) => {
  const { port, stats } = await start(t, { idleTimeoutMs: 150 });
  const c = await NfsClient.connect(port);
  await c.root();
  await within(c.rpc.closed, 5_000, 'the idle connection to be closed');
  assert.equal(stats().timedOutConnections, 1);
});
