import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { RespClient, startDatabase } from './helpers.ts';

/** A byte-for-byte copy of a device, as a crash would leave it (MemoryBlockDevice is write-through). */
function crashCopy(device: MemoryBlockDevice): MemoryBlockDevice {
  const copy = new MemoryBlockDevice(device.size);
  copy.bytes.set(device.bytes);
  return copy;
}

test('recovery stops cleanly at a torn last record and keeps every record before it', async (t) => {
  const { port, device, fn } = await startDatabase(t);
  const c = await RespClient.connect(port);
  t.after(() => c.close());
  for (let i = 0; i < 10; i++) assert.deepEqual(await c.call('SET', `k${i}`, `v${i}`), { status: 'OK' });
  const used = fn.stats().logUsedBytes;
  const image = crashCopy(device as MemoryBlockDevice);
  image.bytes[8192 + used - 2] ^= 0x55; // inside the last record (region 0 starts at block 2)
  const { port: port2 } = await startDatabase(t, { device: image });
  const c2 = await RespClient.connect(port2);
  t.after(() => c2.close());
  assert.deepEqual(await c2.call('MGET', 'k0', 'k8', 'k9'), ['v0', 'v8', null]);
  // Appending after the torn point works and survives another restart.
  assert.deepEqual(await c2.call('SET', 'after', 'tear'), { status: 'OK' });
  const { port: port3 } = await startDatabase(t, { device: crashCopy(image) });
  const c3 = await RespClient.connect(port3);
  t.after(() => c3.close());
  assert.deepEqual(await c3.call('MGET', 'k8', 'k9', 'after'), ['v8', null, 'tear']);
});

test('compaction reclaims space: overwriting one key far beyond the volume size keeps working', async (t) => {
  const device = new MemoryBlockDevice(256 * 1024);
  const { port, fn } = await startDatabase(t, { device });
  const c = await RespClient.connect(port);
  t.after(() => c.close());
  const value = 'x'.repeat(200);
  const batch = Array.from({ length: 100 }, (_, i) => ['SET', 'hot', `${i}:${value}`]);
  for (let round = 0; round < 20; round++) {
    const replies = await c.pipeline(batch);
    assert.ok(replies.every((r) => JSON.stringify(r) === '{"status":"OK"}'), JSON.stringify(replies.find((r) => JSON.stringify(r) !== '{"status":"OK"}')));
  }
  const stats = fn.stats();
  assert.ok(stats.logCompactions > 0, `compactions: ${stats.logCompactions}`);
  assert.ok(stats.logUsedBytes < stats.logRegionBytes / 2, `used ${stats.logUsedBytes} of ${stats.logRegionBytes}`);
  const { port: port2 } = await startDatabase(t, { device: crashCopy(device) });
  const c2 = await RespClient.connect(port2);
  t.after(() => c2.close());
  assert.deepEqual(await c2.call('GET', 'hot'), `99:${value}`);
  assert.deepEqual(await c2.call('DBSIZE'), 1);
});

test('records left in a region by an older generation are never replayed', async (t) => {
  const device = new MemoryBlockDevice(256 * 1024);
  const { port } = await startDatabase(t, { device });
  const c = await RespClient.connect(port);
  t.after(() => c.close());
  // Fill region 0 with many keys, delete them, then compact twice so region 0 is reused with a short snapshot.
  await c.pipeline(Array.from({ length: 200 }, (_, i) => ['SET', `old${i}`, 'v'.repeat(100)]));
  await c.pipeline(Array.from({ length: 200 }, (_, i) => ['DEL', `old${i}`]));
  await c.call('SET', 'keep', 'me');
  // Overwrites trigger compactions: each one moves to the other region.
  for (let i = 0; i < 10; i++) await c.pipeline(Array.from({ length: 100 }, () => ['SET', 'churn', 'c'.repeat(300)]));
  const { port: port2 } = await startDatabase(t, { device: crashCopy(device) });
  const c2 = await RespClient.connect(port2);
  t.after(() => c2.close());
  assert.deepEqual(((await c2.call('KEYS', '*')) as string[]).sort(), ['churn', 'keep']);
});

test('a full volume answers writes with an ERR reply, keeps serving reads and deletes, and stays consistent', async (t) => {
  const device = new MemoryBlockDevice(256 * 1024);
  const { port, fn } = await startDatabase(t, { device });
  const c = await RespClient.connect(port);
  t.after(() => c.close());
  const value = 'v'.repeat(1000);
  let stored = 0;
  let refusal: unknown = null;
  for (let i = 0; i < 1000 && refusal === null; i++) {
    const r = await c.call('SET', `key${i}`, value);
    if (JSON.stringify(r) === '{"status":"OK"}') stored++;
    else refusal = r;
  }
  assert.deepEqual(refusal, {
    err: 'ERR volume full: command not allowed when the data set would not fit on the volume (OOM)',
  });
  assert.ok(stored > 50 && stored < 130, `stored ${stored}`);
  assert.equal(fn.stats().logFailed, 0);
  assert.deepEqual(await c.call('GET', 'key0'), value);
  // Deleting frees room: after the deletes, writes are accepted again.
  assert.deepEqual(await c.call('DEL', ...Array.from({ length: 40 }, (_, i) => `key${i}`)), 40);
  assert.deepEqual(await c.call('SET', 'again', 'ok'), { status: 'OK' });
  const { port: port2 } = await startDatabase(t, { device: crashCopy(device) });
  const c2 = await RespClient.connect(port2);
  t.after(() => c2.close());
  assert.deepEqual(await c2.call('DBSIZE'), stored - 40 + 1);
  assert.deepEqual(await c2.call('GET', `key${stored - 1}`), value);
});

test('writes that outrun compaction wait for the room it frees instead of being refused', async (t) => {
  const device = new MemoryBlockDevice(512 * 1024);
  const { port } = await startDatabase(t, { device });
  const c = await RespClient.connect(port);
  t.after(() => c.close());
  // A tiny data set (one key) but 8x the volume in log appends, all pipelined at once.
  const value = 'w'.repeat(2000);
  const replies = await c.pipeline(Array.from({ length: 2000 }, (_, i) => ['SET', 'churn', `${i}:${value}`]));
  assert.deepEqual(replies.filter((r) => JSON.stringify(r) !== '{"status":"OK"}'), []);
  assert.deepEqual(await c.call('GET', 'churn'), `1999:${value}`);
  const { port: port2 } = await startDatabase(t, { device: crashCopy(device) });
  const c2 = await RespClient.connect(port2);
  t.after(() => c2.close());
  assert.deepEqual(await c2.call('GET', 'churn'), `1999:${value}`);
});

test('everysec mode replies before the flush and is durable after stop', async (t) => {
  const device = new MemoryBlockDevice(1024 * 1024);
  const { port, fn } = await startDatabase(t, { device, appendfsync: 'everysec' });
  const c = await RespClient.connect(port);
  assert.deepEqual(await c.call('RPUSH', 'q', 'a', 'b'), 2);
  c.close();
  await fn.stop();
  const { port: port2 } = await startDatabase(t, { device });
  const c2 = await RespClient.connect(port2);
  t.after(() => c2.close());
  assert.deepEqual(await c2.call('LRANGE', 'q', '0', '-1'), ['a', 'b']);
});

test('a snapshot bigger than one write chunk survives compaction and reopen intact', async () => {
  const { Database } = await import('../../src/functions/database/database.ts');
  const { Op, num } = await import('../../src/functions/database/store/mutations.ts');
  const noop = { appendfsync: 'always' as const, log: () => {}, onDurable: () => {}, onFailure: () => {} };
  const device = new MemoryBlockDevice(8 * 1024 * 1024);
  const db = await Database.open(device, noop);
  // Odd sizes so records straddle the chunk boundaries at odd offsets.
  for (let i = 0; i < 300; i++) {
    db.mutate({ op: Op.Set, args: [Buffer.from(`k${i}`), Buffer.alloc(5000 + i, i & 0xff), num(0)] });
  }
  db.mutate({ op: Op.RPush, args: [Buffer.from('list'), ...Array.from({ length: 3000 }, (_, i) => Buffer.from(`e${i}`))] });
  await db.writer.compactNow();
  assert.equal(db.writer.counters.compactions, 1);
  await db.close();
  const again = await Database.open(device, noop);
  assert.equal(again.ks.size, 301);
  for (let i = 0; i < 300; i += 37) {
    const e = again.ks.get(`k${i}`);
    assert.ok(e?.type === 'string' && e.data.equals(Buffer.alloc(5000 + i, i & 0xff)), `k${i}`);
  }
  const list = again.ks.get('list');
  assert.equal(list?.type === 'list' ? list.data.length : 0, 3000);
  await again.close();
});
