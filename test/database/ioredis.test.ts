/**
 * The comparison script through a real client library, ioredis: storvisor's
 * database (as a thread guest on a controller volume) and redis-server must give
 * ioredis the same results and the same errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { startRedisServer, type Value } from './helpers.ts';
import { script, normalise } from './script.ts';
import { startController } from '../helpers/controller.ts';
import { requireTools } from '../helpers/tools.ts';
import { waitFor } from '../net/helpers.ts';

async function call(client: Redis, args: string[]): Promise<Value> {
  try {
    return (await client.call(args[0]!, ...args.slice(1))) as Value;
  } catch (err) {
    return { err: (err as Error).message };
  }
}

test('ioredis gets the same replies from the database guest as from redis-server', async (t) => {
  requireTools('redis-server');
  const redisPort = await startRedisServer(t);
  const c = await startController(t, {
    volumes: [{ name: 'db', sizeMiB: 64 }],
    functions: [{ name: 'redis', function: 'database', volume: 'db', deploy: 'guest' }],
  });
  const port = (await c.status()).functions[0]!.address!.port;
  const opts = { host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false };
  const ours = new Redis({ ...opts, port });
  const theirs = new Redis({ ...opts, port: redisPort });
  await Promise.all([ours.connect(), theirs.connect()]);
  t.after(() => {
    ours.disconnect();
    theirs.disconnect();
  });
  const mismatches: string[] = [];
  let compared = 0;
  // ioredis tracks subscriptions itself and wants its own subscribe API (tested below), not call().
  const subscribing = new Set(['SUBSCRIBE', 'UNSUBSCRIBE', 'PSUBSCRIBE', 'PUNSUBSCRIBE', 'RESET']);
  for (const [args, how] of script) {
    if (args.length === 0 || subscribing.has(args[0]!)) continue;
    const [a, b] = await Promise.all([call(ours, args), call(theirs, args)]);
    compared++;
    const na = normalise(a, how);
    const nb = normalise(b, how);
    try {
      assert.deepEqual(na, nb);
    } catch {
      mismatches.push(`${args.join(' ')}\n   storvisor: ${JSON.stringify(na)}\n   redis:     ${JSON.stringify(nb)}`);
    }
  }
  assert.ok(compared > 200, `compared ${compared} commands`);
  assert.deepEqual(mismatches, []);
});

test('ioredis pipelines, transactions, WATCH, pub/sub and blocking pops work against the database guest', async (t) => {
  const c = await startController(t, {
    volumes: [{ name: 'db', sizeMiB: 64 }],
    functions: [{ name: 'redis', function: 'database', volume: 'db', deploy: 'guest' }],
  });
  const port = (await c.status()).functions[0]!.address!.port;
  const opts = { host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0 };
  const [r, other, sub] = [new Redis(opts), new Redis(opts), new Redis(opts)];
  await Promise.all([r.connect(), other.connect(), sub.connect()]);
  t.after(() => [r, other, sub].forEach((x) => x.disconnect()));

  assert.deepEqual(await r.pipeline().set('p', 'a').get('p').incr('n').hset('h', 'f', 'v').hgetall('h').exec(), [
    [null, 'OK'], [null, 'a'], [null, 1], [null, 1], [null, { f: 'v' }],
  ]);
  const tx = (await r.multi().set('t', '1').incr('t').lpush('t', 'x').get('t').exec())!;
  assert.deepEqual(tx.map(([, v]) => v), ['OK', 2, undefined, '2']);
  assert.match((tx[2]![0] as Error).message, /^WRONGTYPE/);
  await r.watch('w');
  await other.set('w', 'changed');
  assert.equal(await r.multi().set('w', 'mine').exec(), null);
  assert.equal(await r.get('w'), 'changed');

  const messages: string[] = [];
  sub.on('message', (ch: string, m: string) => messages.push(`${ch}:${m}`));
  sub.on('pmessage', (p: string, ch: string, m: string) => messages.push(`${p}|${ch}:${m}`));
  await sub.subscribe('news');
  await sub.psubscribe('n*');
  assert.equal(await r.publish('news', 'one'), 2);
  assert.equal(await r.publish('nope', 'two'), 1);
  await waitFor(() => messages.length === 3, 'three messages');
  assert.deepEqual(messages, ['news:one', 'n*|news:one', 'n*|nope:two']);

  // Pushed before or after the pop blocks, the popper gets the element.
  const popped = other.blpop('jobs', 0);
  await r.rpush('jobs', 'j1');
  assert.deepEqual(await popped, ['jobs', 'j1']);
});
