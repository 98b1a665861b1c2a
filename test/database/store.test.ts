import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { Database } from '../../src/functions/database/database.ts';
import { globMatch } from '../../src/functions/database/store/glob.ts';
import { IN_PLACE_MAX, Keyspace } from '../../src/functions/database/store/keyspace.ts';
import { Op, num } from '../../src/functions/database/store/mutations.ts';
import { formatDouble } from '../../src/functions/database/commands/args.ts';
import { waitFor } from '../net/helpers.ts';
import { RespClient, startDatabase } from './helpers.ts';

const str = (s: string) => ({ type: 'string' as const, data: Buffer.from(s) });
const noop = { appendfsync: 'always' as const, log: () => {}, onDurable: () => {}, onFailure: () => {} };

test('a full SCAN returns every key that exists throughout, while others come and go', () => {
  const ks = new Keyspace();
  for (let i = 0; i < 100; i++) ks.put(`stay${i}`, str('v'), 0);
  for (let i = 0; i < 2000; i++) ks.put(`churn${i}`, str('v'), 0);
  const seen = new Set<string>();
  let cursor = 0;
  let round = 0;
  do {
    cursor = ks.scan(cursor, 7, (k) => seen.add(k));
    // Mid-iteration: delete a batch of churn keys and add new ones.
    for (let i = 0; i < 30; i++) ks.delete(`churn${round * 30 + i}`);
    ks.put(`late${round}`, str('v'), 0);
    round++;
  } while (cursor !== 0);
  for (let i = 0; i < 100; i++) assert.ok(seen.has(`stay${i}`), `stay${i} missing`);
});

test('an expired key is gone on access and is not brought back by recovery', async () => {
  const device = new MemoryBlockDevice(1024 * 1024);
  const db = await Database.open(device, noop);
  let now = 1_000_000;
  db.ks.now = () => now;
  db.mutate({ op: Op.Set, args: [Buffer.from('short'), Buffer.from('v'), num(now + 100)] });
  db.mutate({ op: Op.Set, args: [Buffer.from('long'), Buffer.from('v'), num(0)] });
  assert.ok(db.ks.get('short'));
  now += 100;
  assert.equal(db.ks.get('short'), undefined);
  await db.close();
  const reopened = await Database.open(device, noop); // real clock: far past the expiry
  assert.equal(reopened.ks.get('short'), undefined);
  assert.ok(reopened.ks.get('long'));
  await reopened.close();
});

test('the active expirer removes expired keys without them being touched', () => {
  const ks = new Keyspace();
  let now = 0;
  ks.now = () => now;
  for (let i = 0; i < 50; i++) ks.put(`k${i}`, str('v'), 10);
  ks.put('forever', str('v'), 0);
  now = 11;
  let removed = 0;
  for (let i = 0; i < 5; i++) removed += ks.expireSome(20);
  assert.equal(removed, 50);
  assert.equal(ks.size, 1);
});

test('the active expirer sleeps while no key has a TTL, wakes for the first one and sleeps again once it is gone', async (t) => {
  const { fn, port } = await startDatabase(t);
  const c = await RespClient.connect(port);
  t.after(() => c.close());
  assert.deepEqual(await c.call('SET', 'plain', 'v'), { status: 'OK' });
  assert.equal(fn.stats().activeExpireRunning, 0);
  assert.deepEqual(await c.call('SET', 'brief', 'v', 'PX', '30'), { status: 'OK' });
  assert.equal(fn.stats().activeExpireRunning, 1);
  // Nobody touches the key: the expirer removes it, then stops.
  await waitFor(() => fn.stats().keys === 1 && fn.stats().activeExpireRunning === 0, 'the expirer to remove the key and stop');
  assert.equal(await c.call('GET', 'brief'), null);
  assert.equal(await c.call('GET', 'plain'), 'v');
});

test('a key whose TTL is removed (PERSIST, SET without KEEPTTL) stops the expirer', async (t) => {
  const { fn, port } = await startDatabase(t);
  const c = await RespClient.connect(port);
  t.after(() => c.close());
  await c.call('SET', 'a', 'v', 'EX', '100');
  await c.call('SET', 'b', 'v', 'EX', '100');
  assert.equal(fn.stats().activeExpireRunning, 1);
  assert.equal(await c.call('PERSIST', 'a'), 1);
  await c.call('SET', 'b', 'w');
  await waitFor(() => fn.stats().activeExpireRunning === 0, 'the expirer to stop');
  assert.equal(await c.call('TTL', 'a'), -1);
  assert.equal(await c.call('GET', 'b'), 'w');
});

test('glob patterns follow Redis rules for *, ?, classes, ranges and escapes', () => {
  assert.equal(globMatch('h?llo', 'hello'), true);
  assert.equal(globMatch('h*llo', 'heeeello'), true);
  assert.equal(globMatch('h[ae]llo', 'hallo'), true);
  assert.equal(globMatch('h[^e]llo', 'hello'), false);
  assert.equal(globMatch('h[a-b]llo', 'hbllo'), true);
  assert.equal(globMatch('h\\*llo', 'h*llo'), true);
  assert.equal(globMatch('h\\*llo', 'hello'), false);
  assert.equal(globMatch('*', ''), true);
  assert.equal(globMatch('SAVE', 'save', true), true);
});

test('scores are formatted as Redis 7.0 formats doubles (%.17g)', () => {
  assert.equal(formatDouble(1.1), '1.1000000000000001');
  assert.equal(formatDouble(2), '2');
  assert.equal(formatDouble(-0.5), '-0.5');
  assert.equal(formatDouble(1e-7), '9.9999999999999995e-08');
  assert.equal(formatDouble(123456789012345678), '1.2345678901234568e+17');
  assert.equal(formatDouble(1e20), '1e+20');
  assert.equal(formatDouble(-Infinity), '-inf');
});

test('a SET of the same length overwrites the stored string in its own Buffer, and any other SET stores a copy', () => {
  const ks = new Keyspace();
  const chunk = Buffer.from('xxaaaabbbbccccc');
  const first = ks.putStringCopy('k', chunk.subarray(2, 6), 0).data as Buffer;
  assert.equal(first.toString(), 'aaaa');
  const same = ks.putStringCopy('k', chunk.subarray(6, 10), 0);
  assert.equal(same.data, first, 'same length: the same Buffer, written over');
  assert.equal(first.toString(), 'bbbb');
  const longer = ks.putStringCopy('k', chunk.subarray(10, 15), 0).data as Buffer;
  assert.notEqual(longer, first);
  assert.equal(longer.toString(), 'ccccc');
  chunk.fill(0x2e);
  assert.equal((ks.get('k')!.data as Buffer).toString(), 'ccccc', 'no view of the request survives');
});

test('a string with a TTL, a SET with one, and strings over IN_PLACE_MAX are replaced, not overwritten in place', () => {
  const ks = new Keyspace();
  const a = ks.putStringCopy('t', Buffer.from('aaaa'), Date.now() + 60_000).data;
  const b = ks.putStringCopy('t', Buffer.from('bbbb'), 0);
  assert.notEqual(b.data, a);
  assert.equal(b.expireAt, 0);
  const c = ks.putStringCopy('t', Buffer.from('cccc'), Date.now() + 60_000);
  assert.notEqual(c.data, b.data);
  assert.equal((b.data as Buffer).toString(), 'bbbb');
  const big = Buffer.alloc(IN_PLACE_MAX + 1, 1);
  const d = ks.putStringCopy('big', big, 0).data;
  const e = ks.putStringCopy('big', Buffer.alloc(IN_PLACE_MAX + 1, 2), 0).data as Buffer;
  assert.notEqual(e, d, 'a large value may be in a reply sent by reference');
  assert.equal((d as Buffer)[0], 1);
  assert.equal(e[0], 2);
});

test('an INCR that keeps the length keeps the TTL, and a GET before it in the same EXEC answers the old value', async (t) => {
  const { port } = await startDatabase(t);
  const c = await RespClient.connect(port);
  t.after(() => c.close());
  assert.deepEqual(await c.call('SET', 'n', '10', 'EX', '100'), { status: 'OK' });
  assert.equal(await c.call('INCR', 'n'), 11);
  assert.equal(await c.call('INCRBY', 'n', '88'), 99);
  assert.equal(await c.call('INCR', 'n'), 100);
  assert.equal(await c.call('GET', 'n'), '100');
  const ttl = (await c.call('TTL', 'n')) as number;
  assert.ok(ttl > 90 && ttl <= 100, `TTL kept: ${ttl}`);
  assert.deepEqual(await c.call('MULTI'), { status: 'OK' });
  await c.call('GET', 'n');
  await c.call('INCR', 'n');
  await c.call('GET', 'n');
  assert.deepEqual(await c.call('EXEC'), ['100', 101, '101']);
});
