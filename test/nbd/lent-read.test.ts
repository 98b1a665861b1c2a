import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { NbdClient } from '../../src/nbd/client.ts';
import { MAX_LENT_BYTES } from '../../src/nbd/connection.ts';
import type { Lease, LentReadDevice, LentReadTarget } from '../../src/nbd/lent-read.ts';
import { NBD_CMD_READ, NBD_SIMPLE_REPLY_MAGIC } from '../../src/nbd/protocol.ts';
import { StorvisorError, ioError } from '../../src/util/errors.ts';
import { closeOpenPairs, makePair } from '../queue/helpers/pair.ts';
import { MiB, RawPeer, request, startServer } from './helpers.ts';

afterEach(closeOpenPairs);

/** Resolve once `cond()` holds, checking after every event-loop turn; reject after `ms`. */
async function until(cond: () => boolean, ms = 10_000, what = 'condition'): Promise<void> {
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

/** A memory device that lends views of its own bytes and counts the leases out; `fail` makes every lent read fail. */
class LendingDevice extends MemoryBlockDevice implements LentReadDevice {
  readonly lending: LentReadDevice = this;
  out = 0;
  done = 0;
  fail = false;
  writeFrom(): boolean {
    return false; // writes take the ordinary path here
  }

  readLent(offset: number, length: number, target: LentReadTarget): boolean {
    setImmediate(() => {
      if (this.fail) return target.lentFailed(ioError('injected read failure'));
      this.out++;
      this.done++;
      let given = false;
      const lease: Lease = {
        release: () => {
          assert.equal(given, false, 'a lease released twice');
          given = true;
          this.out--;
        },
      };
      target.lentDone(Buffer.from(this.bytes.buffer, this.bytes.byteOffset + offset, length), lease);
    });
    return true;
  }
}

test('reads over NBD from a guest queue driver are served from lent region memory, all of it given back', async (t) => {
  const pair = makePair({ queueSize: 64, dataBytes: 1 * MiB, capacityBytes: 4 * MiB });
  randomFillSync(pair.backend.bytes);
  const { port } = await startServer(t, pair.driver);
  const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: 'vol' });
  t.after(() => client.close());
  const reads = Array.from({ length: 400 }, (_, i) => ({ at: ((i * 7919) % 1024) * 4096, buf: Buffer.alloc(4096) }));
  await Promise.all(reads.map((r) => client.pread(r.buf, r.at)));
  for (const r of reads) assert.ok(r.buf.equals(pair.backend.bytes.subarray(r.at, r.at + 4096)), `read at ${r.at} differs`);
  // All 400 at once: those past the driver's bound on lent memory (a quarter of its pool) take the copying path.
  assert.ok(pair.driver.stats().lentReads > 0, 'no read was lent');
  await until(() => pair.driver.stats().lentBytes === 0, 10_000, 'every lease to come back');
});

test('a client that does not read its replies holds at most MAX_LENT_BYTES of lent memory; the rest is copied and given back', async (t) => {
  const device = new LendingDevice(16 * MiB);
  randomFillSync(device.bytes);
  const { port } = await startServer(t, device);
  const { peer } = await RawPeer.transmission(port);
  t.after(() => peer.destroy());
  peer.socket.pause();
  const n = 1000; // 4 MiB of replies: more than the socket buffers and the lent bound together
  for (let i = 0; i < n; i++) peer.write(request(NBD_CMD_READ, { cookie: i + 1, offset: i * 4096, length: 4096 }));
  await until(() => device.done === n, 20_000, 'every read to complete');
  assert.ok(device.out <= MAX_LENT_BYTES / 4096, `${device.out} leases held`);
  peer.socket.resume();
  for (let i = 0; i < n; i++) {
    const header = await peer.read(16);
    assert.equal(header.readUInt32BE(0), NBD_SIMPLE_REPLY_MAGIC);
    assert.equal(header.readUInt32BE(4), 0);
    const cookie = Number(header.readBigUInt64BE(8));
    const data = await peer.read(4096);
    const at = (cookie - 1) * 4096;
    assert.ok(data.equals(device.bytes.subarray(at, at + 4096)), `reply ${cookie} carries other bytes`);
  }
  await until(() => device.out === 0, 10_000, 'every lease to come back');
});

test('a lent read that fails is answered with the error and the connection keeps serving', async (t) => {
  const device = new LendingDevice(MiB);
  const { port } = await startServer(t, device);
  const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: 'vol' });
  t.after(() => client.close());
  device.fail = true;
  await assert.rejects(client.pread(Buffer.alloc(4096), 0), (e: unknown) => e instanceof StorvisorError && e.errno === 'EIO');
  device.fail = false;
  await client.pread(Buffer.alloc(4096), 4096);
  assert.equal(device.out, 0);
});

test('a connection closed with lent reads in flight gives every lease back', async (t) => {
  const device = new LendingDevice(16 * MiB);
  const { port } = await startServer(t, device);
  const { peer } = await RawPeer.transmission(port);
  peer.socket.pause();
  for (let i = 0; i < 200; i++) peer.write(request(NBD_CMD_READ, { cookie: i + 1, offset: i * 4096, length: 4096 }));
  await until(() => device.done > 0, 10_000, 'a read to complete');
  peer.destroy();
  await until(() => device.done === 200 || device.out === 0, 10_000, 'the reads to settle');
  await until(() => device.out === 0, 10_000, 'every lease to come back');
});

test('writes over NBD to a guest queue driver, FUA or not, land in the backend and read back', async (t) => {
  const pair = makePair({ queueSize: 64, dataBytes: 1 * MiB, capacityBytes: 4 * MiB });
  const { port } = await startServer(t, pair.driver);
  const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: 'vol' });
  t.after(() => client.close());
  const writes = Array.from({ length: 200 }, (_, i) => ({ at: ((i * 7919) % 1024) * 4096, data: randomFillSync(Buffer.alloc(4096)) }));
  // Distinct offsets only: concurrent writes to one block have no defined order.
  const seen = new Set<number>();
  const distinct = writes.filter((w) => !seen.has(w.at) && seen.add(w.at));
  await Promise.all(distinct.map((w, i) => client.pwrite(w.data, w.at, { fua: i % 2 === 0 })));
  for (const w of distinct) assert.ok(Buffer.from(pair.backend.bytes.subarray(w.at, w.at + 4096)).equals(w.data), `write at ${w.at} missing`);
  const back = Buffer.alloc(4096);
  await client.pread(back, distinct[0]!.at);
  assert.ok(back.equals(distinct[0]!.data));
});

test('a wrapper made with Object.create over a queue driver is not taken for a lender, so its own pwrite and pread run', async (t) => {
  const pair = makePair({ queueSize: 64, dataBytes: 1 * MiB, capacityBytes: 4 * MiB });
  let writes = 0;
  let reads = 0;
  const inner = pair.driver;
  const wrapper = Object.create(inner, {
    pwrite: { value: async (b: Uint8Array, o: number) => { writes++; await inner.pwrite(b, o); } },
    pread: { value: async (b: Uint8Array, o: number) => { reads++; await inner.pread(b, o); } },
  });
  const { port } = await startServer(t, wrapper);
  const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: 'vol' });
  t.after(() => client.close());
  await client.pwrite(Buffer.alloc(4096, 1), 0);
  await client.pread(Buffer.alloc(4096), 0);
  assert.equal(writes, 1);
  assert.equal(reads, 1);
  assert.equal(inner.stats().lentReads, 0);
});
