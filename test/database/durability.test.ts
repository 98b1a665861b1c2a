import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import type { BlockDevice, WriteFlags } from '../../src/block/types.ts';
import { Database } from '../../src/functions/database/database.ts';
import { RespServer } from '../../src/functions/database/server.ts';
import { RespClient, startDatabase, type Value } from './helpers.ts';

/**
 * A device whose durable writes can be held: each FUA pwrite waits until the
 * test releases it, so a test can look at the server while a flush is in flight.
 */
class GatedDevice implements BlockDevice {
  readonly inner = new MemoryBlockDevice(4 * 1024 * 1024);
  readonly size = this.inner.size;
  readonly blockSize = this.inner.blockSize;
  readonly readOnly = false;
  readonly writeThrough = false;
  gated = false;
  durableWrites = 0;
  private held: (() => void)[] = [];
  private arrivals: (() => void)[] = [];

  pread(buf: Uint8Array, offset: number) {
    return this.inner.pread(buf, offset);
  }
  async pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags) {
    await this.inner.pwrite(buf, offset);
    if (flags?.fua) {
      this.durableWrites++;
      if (this.gated) {
        for (const a of this.arrivals.splice(0)) a();
        await new Promise<void>((resolve) => this.held.push(resolve));
      }
    }
  }
  flush() {
    return Promise.resolve();
  }
  trim(offset: number, length: number) {
    return this.inner.trim(offset, length);
  }
  zero(offset: number, length: number) {
    return this.inner.zero(offset, length);
  }
  /** Resolves when a durable write is being held. */
  nextHeldWrite(): Promise<void> {
    return new Promise((resolve) => this.arrivals.push(resolve));
  }
  release(): void {
    for (const r of this.held.splice(0)) r();
  }
}

test('in always mode a write is not answered until its record is durable', async (t) => {
  const device = new GatedDevice();
  const { port } = await startDatabase(t, { device });
  const c = await RespClient.connect(port);
  t.after(() => c.close());
  device.gated = true;
  const held = device.nextHeldWrite();
  let answered: Value | undefined;
  const reply = c.call('SET', 'k', 'v').then((r) => (answered = r));
  await held;
  // A PING pipelined behind the write must not overtake it either.
  const ping = c.call('PING');
  // A round trip on another connection gives the server every chance to answer early.
  const other = await RespClient.connect(port);
  t.after(() => other.close());
  assert.deepEqual(await other.call('GET', 'k'), 'v');
  assert.equal(answered, undefined);
  device.gated = false;
  device.release();
  assert.deepEqual(await reply, { status: 'OK' });
  assert.deepEqual(await ping, { status: 'PONG' });
});

test('writes from many clients that arrive during a flush share the next one (group commit)', async (t) => {
  const device = new GatedDevice();
  const { port, fn } = await startDatabase(t, { device });
  const clients = await Promise.all(Array.from({ length: 20 }, () => RespClient.connect(port)));
  t.after(() => clients.forEach((c) => c.close()));
  device.gated = true;
  const before = device.durableWrites;
  const held = device.nextHeldWrite();
  const first = clients[0].call('SET', 'first', '1');
  await held;
  const commandsBefore = fn.stats().commands;
  const rest = clients.slice(1).map((c, i) => c.call('INCR', `counter${i % 3}`));
  // Wait until the server has executed all 19 (they queue behind the held flush).
  while (fn.stats().commands < commandsBefore + 19) await new Promise((r) => setImmediate(r));
  device.gated = false;
  device.release();
  assert.deepEqual(await first, { status: 'OK' });
  const replies = (await Promise.all(rest)) as number[];
  assert.deepEqual(replies.sort((a, b) => a - b), [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 7]);
  assert.equal(device.durableWrites - before, 2, 'one flush for the first write, one shared by the other 19');
});

test('a client that disconnects while its write waits for the flush disturbs nobody', async (t) => {
  const device = new GatedDevice();
  const { port } = await startDatabase(t, { device });
  const quitter = await RespClient.connect(port);
  const other = await RespClient.connect(port);
  t.after(() => other.close());
  device.gated = true;
  const held = device.nextHeldWrite();
  void quitter.call('SET', 'orphan', 'x').catch(() => {});
  await held;
  quitter.close();
  await quitter.closed;
  device.gated = false;
  device.release();
  assert.deepEqual(await other.call('GET', 'orphan'), 'x');
});

/** The database and its RESP server on `device`, with the log's gather bound `gatherMs` (always mode). */
async function startWithGather(t: TestContext, device: BlockDevice, gatherMs: number): Promise<{ db: Database; port: number }> {
  let server: RespServer | null = null;
  const db = await Database.open(device, {
    appendfsync: 'always',
    gatherMs,
    log: () => {},
    onDurable: (seq) => server?.durable(seq),
    onFailure: (err) => server?.durable(db.writer.durableSeq, err),
  });
  server = new RespServer(db, { db, appendfsync: 'always', log: () => {} });
  const srv = server;
  const { port } = await srv.listen('127.0.0.1', 0);
  t.after(async () => {
    await srv.close();
    await db.close();
  });
  return { db, port };
}

/**
 * A first writer's SET held in the device while `n` other clients each queue a SET
 * behind it, then released: `then` is what the first writer does once answered.
 */
async function heldBehindFirst(
  t: TestContext,
  gatherMs: number,
  n: number,
  then: ((first: RespClient) => Promise<Value>) | null,
): Promise<{ db: Database; base: Database['writer']['counters']; firstWriter: Promise<Value>; rest: Promise<Value>[] }> {
  const device = new GatedDevice();
  const { db, port } = await startWithGather(t, device, gatherMs);
  const first = await RespClient.connect(port);
  const queued = await Promise.all(Array.from({ length: n }, () => RespClient.connect(port)));
  t.after(() => [first, ...queued].forEach((c) => c.close()));
  device.gated = true;
  const held = device.nextHeldWrite();
  const answered = first.call('SET', 'first', '1');
  const firstWriter = then === null ? answered : answered.then(() => then(first));
  await held;
  const base = { ...db.writer.counters };
  const rest = queued.map((c, i) => c.call('SET', `queued${i}`, 'v'));
  while (db.lastSeq < n + 1) await new Promise((r) => setImmediate(r));
  device.gated = false;
  device.release();
  return { db, base, firstWriter, rest };
}

test('writers released by a durable batch join the writes queued during it in one batch (group commit across cohorts)', async (t) => {
  // A bound far past the test: the gather ends because the released writer came back, never by time.
  // The first writer comes back with its next write as soon as its first is answered.
  const { db, base, firstWriter, rest } = await heldBehindFirst(t, 60_000, 10, (first) => first.call('SET', 'first', '2'));
  assert.deepEqual(await Promise.all(rest), Array(10).fill({ status: 'OK' }));
  assert.deepEqual(await firstWriter, { status: 'OK' });
  const w = db.writer.counters;
  // The held batch (1 record), then the 10 queued during it together with the first writer's second: 2 writes, not 3.
  assert.equal(w.batches - base.batches, 2);
  assert.equal(w.records - base.records, 12);
  assert.equal(db.writer.gatherCounters.timeouts, 0);
});

test('writes queued behind a batch whose writers do not come back go out once the gather bound passes', async (t) => {
  const { db, base, firstWriter, rest } = await heldBehindFirst(t, 20, 5, null);
  assert.deepEqual(await firstWriter, { status: 'OK' });
  // The first writer sends nothing more: the queued writes wait for the bound, then are written and answered.
  assert.deepEqual(await Promise.all(rest), Array(5).fill({ status: 'OK' }));
  assert.equal(db.writer.gatherCounters.timeouts, 1);
  assert.equal(db.writer.counters.records - base.records, 6);
});

test('on a device faster than its writers come back, the gather turns itself off and nothing waits for it', async (t) => {
  // A memory device: a write takes microseconds, a client's next SET a socket round trip.
  const { db, port } = await startWithGather(t, new MemoryBlockDevice(16 * 1024 * 1024), 50);
  const clients = await Promise.all(Array.from({ length: 8 }, () => RespClient.connect(port)));
  t.after(() => clients.forEach((c) => c.close()));
  await Promise.all(
    clients.map(async (c, ci) => {
      for (let i = 0; i < 40; i++) assert.deepEqual(await c.call('SET', `k${ci}:${i}`, 'v'), { status: 'OK' });
    }),
  );
  const g = db.writer.gatherCounters;
  const batches = db.writer.counters.batches;
  assert.ok(g.slow + g.timeouts >= 1, 'no gather was found not to pay');
  // Off for 8 batches after the first that did not pay, then 16...: a small share of the batches gathered.
  assert.ok(g.gathers <= batches / 4, `${g.gathers} gathers in ${batches} batches`);
});
