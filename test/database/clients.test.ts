/**
 * Behaviour between clients: WATCH against another client's write, pub/sub
 * message order, blocking pops served first come first served, and the
 * bounds on subscribers and transactions. Where Redis defines the bytes, the
 * same scenario runs against redis-server and the replies must be identical.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { Database } from '../../src/functions/database/database.ts';
import { RespServer } from '../../src/functions/database/server.ts';
import { MAX_PATTERNS } from '../../src/functions/database/commands/pubsub.ts';
import { MULTI_QUEUE_LIMIT } from '../../src/functions/database/commands/transactions.ts';
import { open, waitFor, within } from '../net/helpers.ts';
import { RespClient, encodeCommand, startDatabase, startRedisServer, type Value } from './helpers.ts';

const MiB = 1 << 20;

/** Poll an asynchronous condition (a query to the server) until it holds, within a deadline. */
async function until(cond: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Wait until the server reports `n` blocked clients (INFO clients, as redis-server reports them). */
async function blockedClients(c: RespClient, n: number): Promise<void> {
  await until(async () => String(await c.call('INFO', 'clients')).includes(`blocked_clients:${n}\r\n`), `${n} blocked clients`);
}

/** Run `scenario` against storvisor and redis-server; returns both results. */
async function both<T>(t: TestContext, scenario: (port: number) => Promise<T>): Promise<[T, T]> {
  const redisPort = await startRedisServer(t);
  const { port } = await startDatabase(t);
  return [await scenario(port), await scenario(redisPort)];
}

async function clients(t: TestContext, port: number, n: number): Promise<RespClient[]> {
  const cs = await Promise.all(Array.from({ length: n }, () => RespClient.connect(port)));
  t.after(() => cs.forEach((c) => c.close()));
  return cs;
}

test('EXEC answers a null array when another client changed a WATCHed key, as redis-server does', async (t) => {
  const [ours, theirs] = await both(t, async (port) => {
    const [a, b] = await clients(t, port, 2);
    const out: Value[] = [];
    out.push(await a.call('SET', 'w', '1'), await a.call('WATCH', 'w', 'other'));
    out.push(await b.call('INCR', 'w'));
    out.push(await a.call('MULTI'), await a.call('SET', 'w', 'mine'), await a.call('EXEC'), await a.call('GET', 'w'));
    // The watch ended with EXEC: the next transaction goes through.
    out.push(await a.call('MULTI'), await a.call('SET', 'w', 'mine'), await a.call('EXEC'), await a.call('GET', 'w'));
    // A key that was missing when watched and is created by another client also aborts.
    out.push(await a.call('WATCH', 'fresh'), await b.call('SET', 'fresh', 'x'), await a.call('MULTI'), await a.call('EXEC'));
    // FLUSHDB by another client touches every watched key.
    out.push(await a.call('WATCH', 'w'), await b.call('FLUSHDB'), await a.call('MULTI'), await a.call('EXEC'));
    return out;
  });
  assert.deepEqual(ours, theirs);
  assert.equal(ours[5], null);
});

test('a WATCHed key that expires before EXEC aborts the transaction', async (t) => {
  const { port } = await startDatabase(t);
  const [a] = await clients(t, port, 1);
  // The key must still be live after WATCH; on a slow machine a short expiry is retried longer.
  for (const px of [100, 1000, 5000]) {
    await a.call('SET', 'e', 'v', 'PX', String(px));
    await a.call('WATCH', 'e');
    if ((await a.call('EXISTS', 'e')) === 1) break;
    await a.call('UNWATCH');
  }
  await until(async () => (await a.call('EXISTS', 'e')) === 0, 'the key to expire');
  await a.call('MULTI');
  await a.call('SET', 'x', '1');
  assert.equal(await a.call('EXEC'), null);
});

test('subscribers get messages and pattern messages in publish order, byte for byte as from redis-server', async (t) => {
  const [ours, theirs] = await both(t, async (port) => {
    const [sub, pub] = await clients(t, port, 2);
    let got = '';
    sub.socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    sub.writeRaw(encodeCommand(['SUBSCRIBE', 'news', 'sport']));
    sub.writeRaw(encodeCommand(['PSUBSCRIBE', 'n*']));
    await waitFor(() => (got.match(/subscribe/g) ?? []).length === 3, 'three subscribe confirmations');
    const counts: Value[] = [];
    for (const [ch, msg] of [['news', 'one'], ['sport', 'two'], ['none', 'three'], ['nows', 'four'], ['news', 'five']]) {
      counts.push(await pub.call('PUBLISH', ch, msg));
    }
    counts.push(await pub.call('PUBSUB', 'NUMSUB', 'news', 'none'), await pub.call('PUBSUB', 'NUMPAT'));
    sub.writeRaw(encodeCommand(['UNSUBSCRIBE', 'news']));
    sub.writeRaw(encodeCommand(['PING']));
    await waitFor(() => got.includes('pong'), 'the subscribed-mode PING reply');
    return { counts, got };
  });
  assert.deepEqual(ours.counts, theirs.counts);
  assert.equal(ours.got, theirs.got);
});

test('clients blocked on a list are served first come, first served, and a timeout answers a null array', async (t) => {
  const [ours, theirs] = await both(t, async (port) => {
    const [a, b, c, pusher] = await clients(t, port, 4);
    const replies: Value[] = [];
    // Replies to different sockets arrive in any order: who got what is what must match.
    const served: Record<string, Value> = {};
    const pa = a.call('BLPOP', 'q', '0').then((v) => (served.a = v));
    await blockedClients(pusher, 1);
    const pb = b.call('BRPOP', 'other', 'q', '0').then((v) => (served.b = v));
    await blockedClients(pusher, 2);
    const pc = c.call('BLMOVE', 'q', 'dst', 'LEFT', 'RIGHT', '0').then((v) => (served.c = v));
    await blockedClients(pusher, 3);
    // One push of three: each waiter gets one element, in the order they blocked.
    replies.push(['push', await pusher.call('RPUSH', 'q', 'x', 'y', 'z')]);
    await Promise.all([pa, pb, pc]);
    replies.push(['a', served.a], ['b', served.b], ['c', served.c]);
    replies.push(['dst', await pusher.call('LRANGE', 'dst', '0', '-1')], ['q', await pusher.call('EXISTS', 'q')]);
    replies.push(['timeout', await a.call('BLPOP', 'never', '0.05')]);
    replies.push(['after', await a.call('PING')]);
    return replies;
  });
  assert.deepEqual(ours, theirs);
});

test('a blocked client runs the commands it pipelined behind the blocking one once served', async (t) => {
  const { port } = await startDatabase(t);
  const [a, b] = await clients(t, port, 2);
  const replies = a.pipeline([['BLPOP', 'k', '0'], ['GET', 'after'], ['LLEN', 'k']]);
  await blockedClients(b, 1);
  await b.call('SET', 'after', 'yes');
  await b.call('RPUSH', 'k', 'v1', 'v2');
  assert.deepEqual(await replies, [['k', 'v1'], 'yes', 1]);
});

test('a client that disconnects while blocked is forgotten: the next push is left for others', async (t) => {
  const { port } = await startDatabase(t);
  const [a, b] = await clients(t, port, 2);
  a.writeRaw(encodeCommand(['BLPOP', 'k', '0']));
  await blockedClients(b, 1);
  a.close();
  await a.closed;
  await blockedClients(b, 0);
  assert.equal(await b.call('RPUSH', 'k', 'v'), 1);
  assert.deepEqual(await b.call('LRANGE', 'k', '0', '-1'), ['v']);
});

test('a client cannot subscribe to more patterns than the cap; it keeps those it has', async (t) => {
  const { port } = await startDatabase(t);
  const [a, b] = await clients(t, port, 2);
  const names = Array.from({ length: MAX_PATTERNS + 1 }, (_, i) => `p${i}*`);
  a.writeRaw(encodeCommand(['PSUBSCRIBE', ...names]));
  const replies: Value[] = [];
  for (let i = 0; i < names.length; i++) replies.push(await a.read());
  assert.deepEqual(replies[MAX_PATTERNS - 1], ['psubscribe', `p${MAX_PATTERNS - 1}*`, MAX_PATTERNS]);
  assert.deepEqual(replies[MAX_PATTERNS], { err: `ERR too many patterns subscribed (limit ${MAX_PATTERNS} per client)` });
  assert.equal(await b.call('PUBSUB', 'NUMPAT'), MAX_PATTERNS);
});

test('a subscriber that never reads is closed once its unsent messages pass the output limit', async (t) => {
  const logs: string[] = [];
  let server: RespServer | null = null;
  const db = await Database.open(new MemoryBlockDevice(16 * MiB), {
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
  const deaf = await open(port);
  deaf.write(encodeCommand(['SUBSCRIBE', 'flood']));
  const [pub] = await clients(t, port, 1);
  await until(async () => ((await pub.call('PUBSUB', 'NUMSUB', 'flood')) as Value[])[1] === 1, 'the subscription');
  deaf.pause();
  const message = Buffer.alloc(MiB, 'm');
  for (let i = 0; i < 64 && srv.netStats().limitClosedConnections === 0; i++) await pub.call('PUBLISH', 'flood', message);
  await waitFor(() => srv.netStats().limitClosedConnections === 1, 'the subscriber to be closed');
  assert.ok(logs.some((l) => /reply bytes queued for a client that does not read/.test(l)), logs.join('\n'));
  await until(async () => ((await pub.call('PUBSUB', 'NUMSUB', 'flood')) as Value[])[1] === 0, 'the subscription to be dropped');
});

test('a MULTI queue over its byte limit fails the transaction with EXECABORT and nothing runs', async (t) => {
  const { port } = await startDatabase(t, { device: new MemoryBlockDevice(64 * MiB) });
  const [a] = await clients(t, port, 1);
  assert.deepEqual(await a.call('MULTI'), { status: 'OK' });
  const big = Buffer.alloc(8 * MiB, 'b');
  let refused: Value = null;
  for (let i = 0; i * 8 * MiB <= MULTI_QUEUE_LIMIT + 8 * MiB; i++) {
    const r = await a.call('SET', `k${i}`, big);
    if (typeof r === 'object' && r !== null && 'err' in r) {
      refused = r;
      break;
    }
  }
  assert.deepEqual(refused, { err: `ERR MULTI queue over its limit of ${MULTI_QUEUE_LIMIT} bytes` });
  assert.deepEqual(await a.call('EXEC'), { err: 'EXECABORT Transaction discarded because of previous errors.' });
  assert.equal(await a.call('DBSIZE'), 0);
});
