/**
 * Attacks on the database function's memory and connections, each as a small
 * client: the guest stays within its bounds, the attacker is throttled or
 * closed, and redis-cli is served meanwhile and afterwards.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { Database } from '../../src/functions/database/database.ts';
import database from '../../src/functions/database/index.ts';
import { OUTPUT_SOFT_LIMIT, QUERY_BUFFER_LIMIT, RespServer } from '../../src/functions/database/server.ts';
import type { RunningFunction } from '../../src/functions/types.ts';
import { forceGc, open, waitFor, within } from '../net/helpers.ts';
import { encodeCommand, RespClient } from './helpers.ts';

const MiB = 1 << 20;
const execFileP = promisify(execFile);

async function redisCli(port: number, ...args: string[]): Promise<string> {
  const r = await execFileP('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 30_000 });
  return r.stdout.trim();
}

async function start(t: TestContext, extra: Record<string, unknown> = {}, deviceBytes = 16 * MiB): Promise<{ fn: RunningFunction; port: number; logs: string[] }> {
  const logs: string[] = [];
  const fn = await database.start({
    device: new MemoryBlockDevice(deviceBytes),
    listen: { host: '127.0.0.1', port: 0 },
    options: database.parseOptions!({ appendfsync: 'always', ...extra }),
    instance: 'test',
    log: (m) => logs.push(m),
  });
  t.after(() => fn.stop());
  return { fn, port: fn.address.port, logs };
}

test('clients pipelining 5,000 GETs of an 8 MiB value without reading are throttled; memory stays bounded; redis-cli is served', async (t) => {
  const { fn, port } = await start(t, {}, 64 * MiB);
  const setter = await RespClient.connect(port);
  t.after(() => setter.close());
  assert.deepEqual(await setter.call('SET', 'big', Buffer.alloc(8 * MiB, 'v')), { status: 'OK' });
  assert.deepEqual(await setter.call('SET', 'small', 'hello'), { status: 'OK' });
  forceGc();
  const ab0 = process.memoryUsage().arrayBuffers;
  const chunk = Buffer.concat(Array.from({ length: 5000 }, () => encodeCommand(['GET', 'big'])));
  for (let round = 0; round < 5; round++) {
    const before = fn.stats().commands!;
    const attacker = await open(port);
    attacker.pause(); // never reads
    attacker.write(chunk);
    await waitFor(() => fn.stats().queuedBytes! >= OUTPUT_SOFT_LIMIT, 'replies to pile up for the attacker');
    assert.equal(await redisCli(port, 'GET', 'small'), 'hello'); // served meanwhile
    const executed = fn.stats().commands! - before - 1;
    // Execution stops once 4 MiB wait unsent: only what the kernel buffers took got executed.
    t.diagnostic(`round ${round}: executed ${executed} of 5000 GETs`);
    assert.ok(executed < 100, `executed ${executed} of 5000 GETs for a client that does not read`);
    attacker.destroy();
    await waitFor(() => fn.stats().activeConnections === 1, 'the attacker to be gone');
  }
  forceGc();
  const growth = process.memoryUsage().arrayBuffers - ab0;
  assert.ok(growth < 64 * MiB, `arrayBuffers grew by ${growth} bytes`);
  assert.equal(await redisCli(port, 'STRLEN', 'big'), String(8 * MiB)); // afterwards
});

test('an unfinished RPUSH of three 120 MB bulks is refused at its first bulk header, with nothing buffered', async (t) => {
  const { fn, port } = await start(t);
  const c = await RespClient.connect(port);
  c.writeRaw(`*5\r\n$5\r\nRPUSH\r\n$4\r\nlist\r\n$${120_000_000}\r\n`);
  c.writeRaw(Buffer.alloc(1 * MiB, 'x'));
  assert.deepEqual(await c.read(), { err: 'ERR Protocol error: invalid bulk length' });
  await within(c.closed, 5_000, 'the connection to close');
  assert.equal(fn.stats().bufferedBytes, 0);
  assert.equal(await redisCli(port, 'PING'), 'PONG');
});

test('a command whose arguments together pass the 64 MiB query limit is refused at the bulk header that passes it', async (t) => {
  const { port } = await start(t);
  const c = await RespClient.connect(port);
  c.writeRaw(`*3\r\n$6\r\nLPUSH1\r\n$${40 * MiB}\r\n`);
  c.writeRaw(Buffer.alloc(40 * MiB, 'a'));
  c.writeRaw(`\r\n$${40 * MiB}\r\n`);
  assert.deepEqual(await c.read(), { err: `ERR Protocol error: request larger than the query buffer limit of ${QUERY_BUFFER_LIMIT} bytes` });
  await within(c.closed, 5_000, 'the connection to close');
});

test('clients holding half-sent 24 MiB values beyond the server budget are closed heaviest first; memory stays bounded', async (t) => {
  const { fn, port } = await start(t);
  forceGc();
  const ab0 = process.memoryUsage().arrayBuffers;
  const payload = Buffer.alloc(24 * MiB, 'p'); // one buffer, written by every attacker
  const attackers = await Promise.all(Array.from({ length: 8 }, () => open(port)));
  t.after(() => attackers.forEach((s) => s.destroy()));
  for (const s of attackers) {
    s.write(`*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$${32 * MiB}\r\n`);
    s.write(payload); // 8 × 24 MiB = 192 MiB if nothing stopped it
  }
  // Settled: every attacker is either closed or holds its whole unfinished value.
  await waitFor(() => {
    const st = fn.stats();
    return st.activeConnections! + st.limitClosedConnections! === 8 && st.bufferedBytes! >= st.activeConnections! * payload.length;
  }, 'every attacker to be held or closed', 30_000);
  assert.equal(await redisCli(port, 'PING'), 'PONG'); // served meanwhile
  const st = fn.stats();
  assert.ok(st.limitClosedConnections! >= 2, `closed ${st.limitClosedConnections}`);
  assert.ok(st.bufferedBytes! <= 128 * MiB, `buffered ${st.bufferedBytes}`);
  forceGc();
  const growth = process.memoryUsage().arrayBuffers - ab0 - payload.length;
  t.diagnostic(`held ${st.bufferedBytes} by ${st.activeConnections} connections, closed for limits ${st.limitClosedConnections}, arrayBuffers +${growth}`);
  assert.ok(growth < 144 * MiB, `arrayBuffers grew by ${growth} bytes (budget 128 MiB)`);
});

test('connections beyond maxConnections are closed at once; redis-cli works once one is released', async (t) => {
  const limit = 20;
  const { fn, port } = await start(t, { maxConnections: limit });
  const sockets = await Promise.all(Array.from({ length: limit + 50 }, () => open(port)));
  t.after(() => sockets.forEach((s) => s.destroy()));
  let closed = 0;
  for (const s of sockets) void s.gone.then(() => closed++);
  await waitFor(() => closed === 50, 'the 50 excess connections to be closed');
  assert.equal(fn.stats().refusedConnections, 50);
  await assert.rejects(redisCli(port, 'PING')); // full: refused at once
  sockets.find((s) => !s.destroyed)!.destroy();
  await waitFor(() => fn.stats().activeConnections === limit - 1, 'a slot to free');
  assert.equal(await redisCli(port, 'PING'), 'PONG');
});

test('a client idle for idleTimeoutMs is closed', async (t) => {
  const { fn, port } = await start(t, { idleTimeoutMs: 150 });
  const c = await RespClient.connect(port);
  assert.deepEqual(await c.call('PING'), { status: 'PONG' });
  await within(c.closed, 5_000, 'the idle client to be closed');
  assert.equal(fn.stats().timedOutConnections, 1);
});

test('a client whose unsent replies pass the hard output limit is closed with a log line', async (t) => {
  const logs: string[] = [];
  let server: RespServer | null = null;
  const db = await Database.open(new MemoryBlockDevice(32 * MiB), {
    appendfsync: 'everysec',
    log: (m) => logs.push(m),
    onDurable: (seq) => server?.durable(seq),
    onFailure: (err) => server?.durable(db.writer.durableSeq, err),
  });
  server = new RespServer(db, { db, appendfsync: 'everysec', limits: { maxQueuedBytes: MiB, maxOutputBytes: 8 * MiB }, log: (m) => logs.push(m) });
  const srv = server;
  const { port } = await srv.listen('127.0.0.1', 0);
  t.after(async () => {
    await srv.close();
    await db.close();
  });
  const c = await RespClient.connect(port);
  assert.deepEqual(await c.call('SET', 'v', Buffer.alloc(12 * MiB, 'v')), { status: 'OK' });
  const deaf = await open(port);
  deaf.pause();
  deaf.write(encodeCommand(['GET', 'v']));
  await waitFor(() => srv.netStats().limitClosedConnections === 1, 'the client to be closed');
  assert.ok(logs.some((l) => /reply bytes queued for a client that does not read/.test(l)), logs.join('\n'));
  assert.deepEqual(await c.call('STRLEN', 'v'), 12 * MiB);
});
