/**
 * The comparison script through a real client library, ioredis: storvisor's
 * database (as a thread guest on a controller volume) and redis-server must give
 * ioredis the same results and the same errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { hasTool, startRedisServer, type Value } from './helpers.ts';
import { script, normalise } from './script.ts';
import { startController } from '../helpers/controller.ts';

async function call(client: Redis, args: string[]): Promise<Value> {
  try {
    return (await client.call(args[0]!, ...args.slice(1))) as Value;
  } catch (err) {
    return { err: (err as Error).message };
  }
}

test('ioredis gets the same replies from the database guest as from redis-server', async (t) => {
  if (!hasTool('redis-server')) return t.skip('redis-server is not installed');
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
