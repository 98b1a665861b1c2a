import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { NbdClient } from '../../src/nbd/client.ts';
import { MAX_POOLED_PAYLOAD, ReplyPool } from '../../src/nbd/reply-pool.ts';
import { MiB, startServer } from './helpers.ts';

test('a reply buffer given back after its write is the one the next read of its size class gets', () => {
  const pool = new ReplyPool(8 * MiB);
  const a = pool.take(4096)!;
  assert.ok(a.raw.length >= 4096 + 28); // room for a structured header and its offset
  a.release();
  const b = pool.take(3000)!;
  assert.equal(b, a);
  const c = pool.take(MiB)!;
  assert.notEqual(c, a);
  assert.ok(c.raw.length >= MiB + 28);
  assert.deepEqual(pool.counters, { taken: 3, created: 2, unpooled: 0 });
});

test('the free reply buffers a pool keeps stay under its bound, and oversized replies are not pooled', () => {
  const pool = new ReplyPool(3 * MiB);
  const held = [pool.take(MiB)!, pool.take(MiB)!, pool.take(MiB)!, pool.take(MiB)!];
  for (const r of held) r.release();
  assert.ok(pool.retainedBytes <= 3 * MiB, `${pool.retainedBytes} bytes kept`);
  assert.ok(pool.retainedBytes >= MiB);
  assert.equal(pool.take(MAX_POOLED_PAYLOAD + 1), null);
  assert.equal(pool.counters.unpooled, 1);
});

test('1 MiB reads over NBD, many in flight, return the right bytes while their reply buffers are reused', async (t) => {
  const device = new MemoryBlockDevice(16 * MiB);
  randomFillSync(device.bytes);
  const { port } = await startServer(t, device);
  const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: 'vol' });
  t.after(() => client.close());
  const bufs = Array.from({ length: 8 }, () => Buffer.alloc(MiB));
  for (let round = 0; round < 6; round++) {
    // Eight 1 MiB reads at once at different offsets: a buffer reused too early would show another read's bytes.
    await Promise.all(bufs.map((b, i) => client.pread(b, ((round * 8 + i) % 16) * MiB)));
    bufs.forEach((b, i) => {
      const at = ((round * 8 + i) % 16) * MiB;
      assert.ok(b.equals(device.bytes.subarray(at, at + MiB)), `round ${round} read ${i}`);
    });
  }
});
