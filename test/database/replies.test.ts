/**
 * The reply path's slabs (resp/writer.ts): replies are encoded into pooled
 * 64 KiB slabs, and a slab goes back to the pool only once the socket's write
 * callback says every piece cut from it is written. These tests check the
 * pool is used (steady GETs allocate no slab) and that bytes handed to the
 * socket are never written again while they wait there.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { once } from 'node:events';
import { ReplyWriter, SLAB_BYTES, freeSlabCount, slabStats, type Slab } from '../../src/functions/database/resp/writer.ts';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { waitFor } from '../net/helpers.ts';
import { RespClient, encodeCommand, startDatabase } from './helpers.ts';

/** A writer with the lists its takes fill, after writing `first` and taking it. */
function writerAfter(first: string): { w: ReplyWriter; out: Buffer[]; owners: (Slab | null)[] } {
  const w = new ReplyWriter();
  const out: Buffer[] = [];
  const owners: (Slab | null)[] = [];
  w.write(Buffer.from(first));
  w.take(out, owners);
  return { w, out, owners };
}

const value = (i: number, size = 4096) => Buffer.alloc(size, `v${i}:${'x'.repeat(i % 7)}|`);

test('a slab goes back to the pool only once every piece cut from it is written and its writer moved on', () => {
  const { w, out, owners } = writerAfter('first');
  const slab = owners[0]!;
  assert.equal(out[0]!.toString('latin1'), '$5\r\nfirst\r\n');
  const before = freeSlabCount();
  // The writer still encodes into the slab after the cut: it stays out of the pool.
  w.write(Buffer.from('second'));
  w.take(out, owners);
  assert.equal(owners[1], slab);
  slab.done(); // the first piece is written; the second is not
  assert.equal(freeSlabCount(), before);
  // Fill the slab so the writer moves to another one: still held by the unwritten piece.
  for (let i = 0; i < SLAB_BYTES / 8192; i++) w.write(Buffer.alloc(8192));
  w.take(out, owners);
  const fill = owners.slice(2);
  const next = fill[fill.length - 1]!;
  assert.notEqual(next, slab);
  // The writer's new slab, written and idle: back to the pool.
  next.done();
  assert.equal(freeSlabCount(), before + 1);
  // The old slab's pieces of the fill are written, 'second' is not: the old slab stays out.
  for (const o of fill) if (o === slab) o.done();
  assert.equal(freeSlabCount(), before + 1);
  assert.equal(out[1]!.toString('latin1'), '$6\r\nsecond\r\n');
  slab.done();
  assert.equal(freeSlabCount(), before + 2);
});

test('a writer left idle gives its slab back once its last piece is written, and holds none', () => {
  const { w, out, owners } = writerAfter('only');
  const before = freeSlabCount();
  owners[0]!.done();
  assert.equal(freeSlabCount(), before + 1);
  // The next reply takes a slab from the pool again.
  const allocated = slabStats.allocated;
  w.write(Buffer.from('next'));
  w.take(out, owners);
  assert.equal(slabStats.allocated, allocated);
  assert.equal(freeSlabCount(), before);
  owners[1]!.release();
});

test('pipelined 4 KiB GETs are answered byte for byte from reused slabs, allocating none once warm', async (t) => {
  const { port } = await startDatabase(t, { appendfsync: 'everysec' });
  const c = await RespClient.connect(port);
  t.after(() => c.close());
  const keys = 32;
  for (let i = 0; i < keys; i++) await c.call('SET', `k${i}`, value(i));
  const gets = Array.from({ length: 512 }, (_, i) => ['GET', `k${i % keys}`]);
  await c.pipeline(gets); // warm the pool
  const allocated = slabStats.allocated;
  const reused = slabStats.reused;
  const replies = await c.pipeline(gets);
  for (let i = 0; i < replies.length; i++) assert.equal(replies[i], value(i % keys).toString('latin1'), `reply ${i}`);
  // 512 replies of 4 KiB fill ~32 slabs: all from the pool.
  assert.ok(slabStats.reused - reused >= 30, `reused ${slabStats.reused - reused}`);
  assert.equal(slabStats.allocated - allocated, 0);
});

test('replies queued for a client that does not read stay intact while other clients churn the slab pool', async (t) => {
  const { fn, port } = await startDatabase(t, { appendfsync: 'everysec', device: new MemoryBlockDevice(64 << 20) });
  const setter = await RespClient.connect(port);
  t.after(() => setter.close());
  const keys = 64;
  for (let i = 0; i < keys; i++) await setter.call('SET', `k${i}`, value(i));
  // A client that pipelines 1,500 GETs (6 MiB of replies) and does not read them yet.
  const n = 1500;
  const slow = connect(port, '127.0.0.1');
  t.after(() => slow.destroy());
  await once(slow, 'connect');
  slow.pause();
  slow.write(Buffer.concat(Array.from({ length: n }, (_, i) => encodeCommand(['GET', `k${i % keys}`]))));
  await waitFor(() => (fn.stats().queuedBytes ?? 0) > 1 << 20, 'replies queued for the client that does not read');
  // Meanwhile another client's GETs take slabs from the pool and release them, over and over.
  const other = await RespClient.connect(port);
  t.after(() => other.close());
  for (let r = 0; r < 4; r++) {
    const replies = await other.pipeline(Array.from({ length: 256 }, (_, i) => ['GET', `k${(i * 7) % keys}`]));
    for (let i = 0; i < replies.length; i++) assert.equal(replies[i], value((i * 7) % keys).toString('latin1'));
  }
  // Now read everything the first client was sent: every reply is the value it asked for.
  const expected = Buffer.concat(Array.from({ length: n }, (_, i) => Buffer.concat([Buffer.from('$4096\r\n'), value(i % keys), Buffer.from('\r\n')])));
  const got: Buffer[] = [];
  let bytes = 0;
  slow.on('data', (d: Buffer) => {
    got.push(d);
    bytes += d.length;
  });
  slow.resume();
  await waitFor(() => bytes >= expected.length, 'every reply of the client that did not read', 20_000);
  assert.ok(Buffer.concat(got).equals(expected), 'the replies queued while other clients ran are byte-exact');
});
