import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { WriteFlags } from '../../src/block/types.ts';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { Database } from '../../src/functions/database/database.ts';
import { dispatch } from '../../src/functions/database/commands/table.ts';
import { commandContext } from './helpers.ts';

const b = (s: string) => Buffer.from(s);
const quiet = { appendfsync: 'always' as const, log: () => {}, onDurable: () => {}, onFailure: () => {} };

/** A database on `device` with a command context and a string-argument runner. */
async function openDb(device: MemoryBlockDevice, options: Parameters<typeof Database.open>[1] = quiet) {
  const db = await Database.open(device, options);
  const ctx = commandContext(db);
  return { db, ctx, run: (...args: string[]) => dispatch(ctx, args.map(b)) };
}

/**
 * A memory device whose writes and flushes take a few event loop turns (so a
 * compaction spans many turns of traffic), and that can keep a copy of its
 * bytes after each write or flush: the volume as a kill -9 then would leave it.
 */
class CrashPointDevice extends MemoryBlockDevice {
  /** Copies taken, each with the last sequence number acknowledged when it was taken. */
  readonly points: { bytes: Uint8Array; acked: number }[] = [];
  capture: (() => number) | null = null;

  override async pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags): Promise<void> {
    for (let i = 0; i < 2; i++) await new Promise((r) => setImmediate(r));
    await super.pwrite(buf, offset, flags);
    this.take();
  }

  override async flush(): Promise<void> {
    await new Promise((r) => setImmediate(r));
    await super.flush();
    this.take();
  }

  private take(): void {
    // A write-back device could lose what was written since the last flush: this one is
    // write-through (every write is durable once it resolves), the strictest order test.
    if (this.capture !== null) this.points.push({ bytes: this.bytes.slice(), acked: this.capture() });
  }

  copyOf(bytes: Uint8Array): MemoryBlockDevice {
    const d = new MemoryBlockDevice(this.size, { blockSize: this.blockSize });
    d.bytes.set(bytes);
    return d;
  }
}

test('records written beside a compaction are re-encoded in slices after the walk, the flip encoding only the last of them', async () => {
  const device = new CrashPointDevice(16 << 20);
  const { db, ctx, run } = await openDb(device);
  for (let i = 0; i < 12_000; i++) run('SET', `k${i}`, `v${i}-${'x'.repeat(100)}`);
  await db.writer.sync();
  const compaction = db.writer.compactNow();
  // Writes go on while the walk runs, and stop once it has read every key: how fast
  // a slice encodes is the machine's, so a catch-up that also raced ongoing writes
  // could fairly leave the carry to the flip on a slow or busy one.
  let i = 0;
  while (db.writer.counters.compactions === 0 && (db.writer.lastSnapshot?.keys ?? 0) < 12_000) {
    for (let j = 0; j < 20; j++, i++) run('SET', `k${(i * 7) % 12_000}`, `during-${i}`);
    await new Promise((r) => setImmediate(r));
  }
  await compaction;
  await db.writer.sync();
  const st = db.writer.lastCompaction!;
  assert.ok(st.carriedRecords > 0, 'nothing was carried');
  assert.ok(st.catchUpSlices >= 1, 'the carry was not encoded in slices');
  assert.ok(st.flipRecords < st.carriedRecords, `the flip encoded ${st.flipRecords} of ${st.carriedRecords} carried records`);
  const expected = new Map<string, string>();
  for (let k = 0; k < 12_000; k++) expected.set(`k${k}`, String(dispatch(ctx, [b('GET'), b(`k${k}`)])));
  const { db: reopened, ctx: rctx } = await openDb(device.copyOf(device.bytes));
  assert.equal(reopened.replaySkipped, 0);
  for (const [k, v] of expected) assert.equal(String(dispatch(rctx, [b('GET'), b(k)])), v, k);
  await Promise.all([db.close(), reopened.close()]);
});

test('a crash at any write or flush of a compaction beside writes in always mode loses no acknowledged write', async () => {
  const device = new CrashPointDevice(8 << 20);
  let durable = 0;
  const options = {
    appendfsync: 'always' as const,
    log: () => {},
    onDurable: (seq: number) => {
      durable = seq;
    },
    onFailure: () => {},
  };
  const { db, run } = await openDb(device, options);
  for (let i = 0; i < 4000; i++) run('SET', `pre${i}`, `p${i}-${'y'.repeat(60)}`);
  await db.writer.sync();
  /** Each write beside the compaction: its key and its sequence number (acknowledged once durable reaches it). */
  const writes: { key: string; seq: number }[] = [];
  device.capture = () => durable;
  const compaction = db.writer.compactNow();
  let i = 0;
  while (db.writer.counters.compactions === 0) {
    for (let j = 0; j < 8; j++, i++) {
      run('SET', `w${i}`, `v${i}`);
      writes.push({ key: `w${i}`, seq: db.lastSeq });
    }
    await new Promise((r) => setImmediate(r));
  }
  await compaction;
  await db.writer.sync();
  device.capture = null;
  assert.ok(db.writer.lastCompaction!.carriedRecords > 0, 'nothing was carried');
  assert.ok(device.points.length > 10, `only ${device.points.length} crash points`);
  // Every point, or at most 24 spread over them all (each is a reopen of the volume), and the last.
  const step = Math.max(1, Math.floor(device.points.length / 24));
  const picked = new Set<number>([device.points.length - 1]);
  for (let p = 0; p < device.points.length; p += step) picked.add(p);
  for (const p of picked) {
    const { bytes, acked } = device.points[p]!;
    const crashed = await Database.open(device.copyOf(bytes), { ...options, onDurable: () => {} });
    const cctx = commandContext(crashed);
    for (const k of [0, 1999, 3999]) assert.equal(String(dispatch(cctx, [b('GET'), b(`pre${k}`)])), `p${k}-${'y'.repeat(60)}`, `crash point ${p}: pre${k}`);
    for (const w of writes) {
      if (w.seq > acked) break;
      assert.equal(String(dispatch(cctx, [b('GET'), b(w.key)])), `v${w.key.slice(1)}`, `crash point ${p} of ${device.points.length}: ${w.key} (seq ${w.seq}, acknowledged ${acked}) lost`);
    }
    assert.equal(crashed.ks.size >= 4000, true);
    await crashed.close();
  }
  await db.close();
});

test('big collections the walk reads live are copied only when a mutation comes, and the snapshot holds them as they were at the cut', async () => {
  const device = new MemoryBlockDevice(64 << 20);
  const { db, run } = await openDb(device);
  const N = 40_000;
  for (let i = 0; i < N; i += 1000) {
    const idx = Array.from({ length: 1000 }, (_, j) => i + j);
    run('RPUSH', 'list', ...idx.map((j) => `e${j}`));
    run('HSET', 'hash', ...idx.flatMap((j) => [`f${j}`, `v${j}`]));
    run('SADD', 'set', ...idx.map((j) => `m${j}`));
    run('ZADD', 'zset', ...idx.flatMap((j) => [String(j), `z${j}`]));
  }
  await db.writer.sync();
  let done = false;
  const compaction = db.writer.compactNow().finally(() => (done = true));
  for (let t = 0; !done; t++) {
    run('LPOP', 'list');
    run('RPUSH', 'list', `late${t}`);
    run('HDEL', 'hash', `f${t}`);
    run('HSET', 'hash', `f${N - 1 - t}`, `changed${t}`);
    run('SREM', 'set', `m${t}`);
    run('SADD', 'set', `late${t}`);
    run('ZREM', 'zset', `z${t}`);
    run('ZINCRBY', 'zset', '0.5', `z${N - 1 - t}`);
    await new Promise((r) => setImmediate(r));
  }
  await compaction;
  await db.writer.sync();
  const st = db.writer.lastSnapshot!;
  assert.ok(st.frozenMidWalk >= 1, 'no collection was mutated while the walk read it');
  const dump = (d: Database) => {
    const c = commandContext(d);
    const q = (...args: string[]) => (dispatch(c, args.map(b)) as Buffer[]).map(String);
    return {
      list: q('LRANGE', 'list', '0', '-1'),
      hash: q('HGETALL', 'hash'),
      set: q('SMEMBERS', 'set').sort(),
      zset: q('ZRANGE', 'zset', '0', '-1', 'WITHSCORES'),
    };
  };
  const expected = dump(db);
  const { db: reopened } = await openDb(device);
  assert.equal(reopened.replaySkipped, 0);
  const got = dump(reopened);
  assert.deepEqual(got.list, expected.list);
  assert.deepEqual(new Map(pairs(got.hash)), new Map(pairs(expected.hash)));
  assert.deepEqual(got.set, expected.set);
  assert.deepEqual(got.zset, expected.zset);
  await Promise.all([db.close(), reopened.close()]);
});

function pairs(xs: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < xs.length; i += 2) out.push([xs[i]!, xs[i + 1]!]);
  return out;
}
