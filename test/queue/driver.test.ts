/**
 * Driver and device together in one thread (the device loop runs on the same
 * event loop): data integrity, splitting, FIFO waiting, ordering, batching,
 * error mapping and shutdown.
 */
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { VirtioBlkDevice } from '../../src/queue/blk-device.ts';
import { VirtioBlkDriver } from '../../src/queue/blk-driver.ts';
import { runDeviceLoop } from './helpers/device-loop.ts';
import { VirtqDevice } from '../../src/queue/virtq-device.ts';
import { Ctl, VIRTIO_BLK_S_UNSUPP, createRegion, regionLayout, type QueueModeName } from '../../src/queue/layout.ts';
import { StorvisorError } from '../../src/util/errors.ts';
import { closeOpenPairs, makePair, pattern, track } from './helpers/pair.ts';
import { DeferredBlockDevice } from './helpers/deferred-device.ts';
import { SpyBlockDevice, settle } from './helpers/guest-ring.ts';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';

const isErrno = (errno: string) => (err: unknown) => err instanceof StorvisorError && err.errno === errno;

/** A device on a DeferredBlockDevice, with its loop, and a driver. */
function deferredPair(mode: QueueModeName, capacity = 64 * 1024) {
  const region = createRegion({ mode, queueSize: 16, dataBytes: 128 * 1024, capacityBytes: capacity });
  const backend = new DeferredBlockDevice(capacity);
  const device = new VirtioBlkDevice({ region, backend, name: 'deferred' });
  const driver = new VirtioBlkDriver({ region });
  const loop = runDeviceLoop(device, { mode });
  return track({ region, backend, device, driver, async close() { driver.close(); await loop.stop(); } });
}

afterEach(closeOpenPairs);

for (const mode of ['poll', 'notify', 'adaptive'] as const) {
  test(`random unaligned reads, writes, zeroes and trims match a reference copy (${mode})`, async () => {
    const size = 64 * 1024;
    await fc.assert(fc.asyncProperty(
      fc.array(fc.record({
        op: fc.constantFrom('read', 'write', 'zero', 'trim'),
        offset: fc.nat({ max: size - 1 }),
        length: fc.nat({ max: 20_000 }),
        seed: fc.nat(),
      }), { minLength: 1, maxLength: 12 }),
      async (ops) => {
        const p = makePair({ mode, capacityBytes: size, sizeMax: 8192 });
        const ref = new Uint8Array(size);
        try {
          for (const { op, offset, seed, length: wanted } of ops) {
            const length = Math.min(wanted, size - offset);
            if (op === 'write') {
              const data = pattern(length, seed);
              await p.driver.pwrite(data, offset);
              ref.set(data, offset);
            } else if (op === 'read') {
              const buf = new Uint8Array(length);
              await p.driver.pread(buf, offset);
              assert.deepEqual(buf, ref.subarray(offset, offset + length));
            } else if (op === 'zero') {
              await p.driver.zero(offset, length);
              ref.fill(0, offset, offset + length);
            } else {
              // Trim discards only whole sectors inside the range (MemoryBlockDevice zeroes them).
              await p.driver.trim(offset, length);
              const from = Math.ceil(offset / 512) * 512;
              const to = Math.floor((offset + length) / 512) * 512;
              if (to > from) ref.fill(0, from, to);
            }
          }
          assert.deepEqual(p.backend.bytes, ref);
        } finally {
          await p.close();
        }
      }), { numRuns: mode === 'poll' ? 40 : 15 });
  });
}

test('concurrent writes and reads in flight together all land correctly', async () => {
  const p = makePair({ mode: 'poll', queueSize: 8, capacityBytes: 256 * 1024 });
  const writes = Array.from({ length: 32 }, (_, i) => p.driver.pwrite(pattern(4096, i + 1), i * 8192 + 100));
  await Promise.all(writes);
  const reads = Array.from({ length: 32 }, async (_, i) => {
    const buf = new Uint8Array(4096);
    await p.driver.pread(buf, i * 8192 + 100);
    assert.deepEqual(buf, pattern(4096, i + 1));
  });
  await Promise.all(reads);
  assert.ok(p.device.stats().maxInFlight > 1);
  await p.close();
});

test('the driver keeps working across the 16-bit wrap of avail.idx and used.idx', async () => {
  // Start both rings just short of the wrap (as if 65,000 requests had already run):
  // both sides take their shadow indexes from the ring when they attach.
  const region = createRegion({ mode: 'poll', queueSize: 4, dataBytes: 64 * 1024, capacityBytes: 64 * 1024 });
  const layout = regionLayout(region);
  const u16 = new Uint16Array(region);
  Atomics.store(u16, (layout.availOffset >> 1) + 1, 65_000);
  Atomics.store(u16, (layout.usedOffset >> 1) + 1, 65_000);
  const backend = new MemoryBlockDevice(64 * 1024);
  const device = new VirtioBlkDevice({ region, backend, name: 'wrap' });
  const driver = new VirtioBlkDriver({ region });
  const loop = runDeviceLoop(device, { mode: 'poll' });
  track({ async close() { driver.close(); await loop.stop(); } });
  const total = 2000; // crosses 65535 -> 0 once, with the ring position cycling through every slot
  for (let i = 0; i < total; i += 16) {
    await Promise.all(Array.from({ length: 16 }, (_, j) => j % 2
      ? driver.flush()
      : driver.pwrite(new Uint8Array(512).fill((i + j) & 0xff), ((i + j) % 128) * 512)));
  }
  const check = new Uint8Array(512);
  await driver.pread(check, ((total - 16) % 128) * 512);
  assert.ok(check.every((b) => b === ((total - 16) & 0xff)));
  assert.equal(driver.stats().completed, total + 1);
  assert.equal(Atomics.load(u16, (layout.usedOffset >> 1) + 1), (65_000 + total + 1) & 0xffff);
});

test('a driver refuses a queue too small for a three-descriptor request', () => {
  const region = createRegion({ queueSize: 2, dataBytes: 64 * 1024, capacityBytes: 4096 });
  assert.throws(() => new VirtioBlkDriver({ region }), { message: 'queue size 2 too small for the virtio-blk driver (minimum 4)' });
});

test('an out-of-range request is rejected with ERANGE before anything is queued', async () => {
  const p = makePair({ mode: 'poll', capacityBytes: 64 * 1024 });
  await assert.rejects(p.driver.pread(new Uint8Array(10), 64 * 1024 - 5), isErrno('ERANGE'));
  await assert.rejects(p.driver.pwrite(new Uint8Array(1), -1), isErrno('ERANGE'));
  await assert.rejects(p.driver.zero(0, 64 * 1024 + 1), isErrno('ERANGE'));
  assert.equal(p.driver.stats().submitted, 0);
  await p.close();
});

test('a request larger than size_max is split into chunks of at most size_max that end on its multiples', async () => {
  const region = createRegion({ mode: 'poll', queueSize: 16, dataBytes: 128 * 1024, capacityBytes: 256 * 1024, sizeMax: 16 * 1024 });
  const spy = new SpyBlockDevice(new MemoryBlockDevice(256 * 1024));
  const device = new VirtioBlkDevice({ region, backend: spy, name: 'split' });
  const driver = new VirtioBlkDriver({ region });
  const loop = runDeviceLoop(device, { mode: 'poll' });
  track({ async close() { driver.close(); await loop.stop(); } });
  const data = pattern(100 * 1024, 5);
  await driver.pwrite(data, 4096);
  // [4096, 106496): up to 16 KiB, five whole 16 KiB chunks, then the 8 KiB rest.
  assert.deepEqual(spy.calls.map((c) => Number(c.split(' ')[2])), [12288, 16384, 16384, 16384, 16384, 16384, 8192]);
  assert.deepEqual((spy.inner as MemoryBlockDevice).bytes.subarray(4096, 4096 + data.byteLength), data);
  driver.close();
  await loop.stop();
});

test('requests that find no buffer space wait in FIFO order and are never dropped', async () => {
  // 64 KiB data area: 1 KiB of control slots, then room for three 16 KiB buffers.
  const region = createRegion({ mode: 'poll', queueSize: 16, dataBytes: 64 * 1024, capacityBytes: 1024 * 1024, sizeMax: 16 * 1024 });
  const spy = new SpyBlockDevice(new MemoryBlockDevice(1024 * 1024));
  const device = new VirtioBlkDevice({ region, backend: spy, name: 'fifo' });
  const driver = new VirtioBlkDriver({ region });
  const loop = runDeviceLoop(device, { mode: 'poll' });
  track({ async close() { driver.close(); await loop.stop(); } });
  await Promise.all(Array.from({ length: 20 }, (_, i) => driver.pwrite(pattern(16 * 1024, i + 1), i * 16 * 1024)));
  assert.deepEqual(spy.calls, Array.from({ length: 20 }, (_, i) => `pwrite ${i * 16 * 1024} 16384`));
  assert.ok(device.stats().maxInFlight <= 3);
  for (let i = 0; i < 20; i++) {
    assert.deepEqual((spy.inner as MemoryBlockDevice).bytes.subarray(i * 16384, (i + 1) * 16384), pattern(16 * 1024, i + 1));
  }
  driver.close();
  await loop.stop();
});

test('completions in any order resolve the right requests with the right data', async () => {
  const p = deferredPair('poll');
  for (let i = 0; i < 4; i++) p.backend.memory.bytes.fill(i + 1, i * 4096, (i + 1) * 4096);
  const bufs = Array.from({ length: 4 }, () => new Uint8Array(4096));
  const settled: number[] = [];
  const reads = bufs.map((b, i) => p.driver.pread(b, i * 4096).then(() => settled.push(i)));
  await p.backend.waitHeld(4);
  assert.equal(p.device.inFlight, 4);
  for (const i of [2, 0, 3, 1]) {
    p.backend.held[i]!.release();
    await settle();
    await settle();
  }
  await Promise.all(reads);
  assert.deepEqual(settled, [2, 0, 3, 1]);
  bufs.forEach((b, i) => assert.ok(b.every((x) => x === i + 1)));
  await p.close();
});

test('completions landing in the same tick are published with one used-idx store and one call', async () => {
  const p = deferredPair('notify');
  const writes = [0, 1, 2].map((i) => p.driver.pwrite(new Uint8Array(4096).fill(i), i * 4096));
  await p.backend.waitHeld(3);
  const calls = Atomics.load(new Int32Array(p.region), Ctl.call);
  for (const h of p.backend.held) h.release(); // all three resolve in the same tick
  await Promise.all(writes);
  assert.equal(Atomics.load(new Int32Array(p.region), Ctl.call) - calls, 1);
  await p.close();
});

test('a flush waits for the writes dispatched before it', async () => {
  const p = deferredPair('poll');
  const write = p.driver.pwrite(new Uint8Array(4096).fill(1), 0);
  await p.backend.waitHeld(1);
  const flush = p.driver.flush();
  // Give the device every chance to run the flush early.
  for (let i = 0; i < 20; i++) await settle();
  assert.deepEqual(p.backend.held.map((h) => h.op), ['pwrite 0']);
  p.backend.held[0]!.release();
  await p.backend.waitHeld(2);
  assert.deepEqual(p.backend.held.map((h) => h.op), ['pwrite 0', 'flush']);
  p.backend.held[1]!.release();
  await Promise.all([write, flush]);
  assert.deepEqual(p.backend.log, ['done pwrite 0', 'done flush']);
  await p.close();
});

test('a backend error rejects the request with an EIO StorvisorError', async () => {
  const p = deferredPair('adaptive');
  const read = p.driver.pread(new Uint8Array(512), 0);
  await p.backend.waitHeld(1);
  p.backend.held[0]!.fail(new Error('medium error'));
  await assert.rejects(read, isErrno('EIO'));
  await p.close();
});

test('an UNSUPP status rejects the request with ENOTSUP', async (t) => {
  const region = createRegion({ mode: 'notify', queueSize: 8, dataBytes: 64 * 1024, capacityBytes: 64 * 1024 });
  const driver = new VirtioBlkDriver({ region });
  t.after(() => driver.close());
  const flush = driver.flush();
  await settle(); // the driver publishes its batch in a microtask
  // Play a device by hand that does not support FLUSH.
  const queue = new VirtqDevice(region, regionLayout(region), () => {});
  const popped = queue.pop();
  assert.equal(popped.kind, 'element');
  if (popped.kind !== 'element') return;
  const status = popped.element.in.at(-1)!;
  status[status.byteLength - 1] = VIRTIO_BLK_S_UNSUPP;
  queue.push(popped.element.head, 1);
  queue.flush();
  await assert.rejects(flush, isErrno('ENOTSUP'));
});

test('close() rejects pending and waiting requests with ESHUTDOWN, and later calls too', async () => {
  const p = deferredPair('notify');
  const pending = Array.from({ length: 12 }, (_, i) => p.driver.pread(new Uint8Array(4096), i * 4096));
  await p.backend.waitHeld(5); // 16 descriptors / 3 = 5 in flight, the rest wait
  p.driver.close();
  for (const r of pending) await assert.rejects(r, isErrno('ESHUTDOWN'));
  await assert.rejects(p.driver.flush(), isErrno('ESHUTDOWN'));
  for (const h of p.backend.held) h.release(); // the device still completes; nothing breaks
  await p.device.drain();
  assert.equal(p.device.inFlight, 0);
  await p.close();
});

test('a broken queue rejects the driver\'s in-flight requests with EIO', async () => {
  const p = deferredPair('poll');
  const read = p.driver.pread(new Uint8Array(512), 0);
  await p.backend.waitHeld(1);
  // Corrupt the ring behind the driver's back: avail.idx jumps by more than the queue.
  const layout = regionLayout(p.region);
  Atomics.store(new Uint16Array(p.region), (layout.availOffset >> 1) + 1, 40);
  await assert.rejects(read, isErrno('EIO'));
  assert.equal(p.device.broken, true);
  await assert.rejects(p.driver.pread(new Uint8Array(512), 0), isErrno('EIO'));
  await p.close();
});

test('drain() stops taking requests and resolves when in-flight work completes', async () => {
  const p = deferredPair('poll');
  const write = p.driver.pwrite(new Uint8Array(512).fill(4), 0);
  await p.backend.waitHeld(1);
  let drained = false;
  const drain = p.device.drain().then(() => { drained = true; });
  await settle();
  assert.equal(drained, false);
  p.backend.held[0]!.release();
  await drain;
  await write;
  assert.equal(p.backend.memory.bytes[0], 4);
  assert.equal(p.device.poll(), 0);
  await p.close();
});

test('in notify mode the driver kicks for every submission batch and never sets NO_INTERRUPT', async () => {
  const p = makePair({ mode: 'notify' });
  for (let i = 0; i < 5; i++) await p.driver.pread(new Uint8Array(512), 0);
  const layout = regionLayout(p.region);
  assert.equal(new Uint16Array(p.region)[layout.availOffset >> 1], 0);
  assert.equal(p.driver.stats().kicks, 5);
  assert.ok(p.driver.stats().interruptsWaited >= 1);
  await p.close();
});

test('in poll mode the driver sets NO_INTERRUPT and does not kick a spinning device', async () => {
  const p = makePair({ mode: 'poll' });
  for (let i = 0; i < 5; i++) await p.driver.pread(new Uint8Array(512), 0);
  const layout = regionLayout(p.region);
  assert.equal(new Uint16Array(p.region)[layout.availOffset >> 1], 1);
  assert.equal(p.driver.stats().kicks, 0);
  assert.equal(p.driver.stats().interruptsWaited, 0);
  await p.close();
});

test('an adaptive driver sleeps on the call doorbell at once while other threads want the core, and spins while none do', async () => {
  for (const on of [true, false]) {
    const capacity = 64 * 1024;
    const region = createRegion({ mode: 'adaptive', queueSize: 16, dataBytes: 128 * 1024, capacityBytes: capacity });
    const backend = new DeferredBlockDevice(capacity);
    const device = new VirtioBlkDevice({ region, backend, name: 'deferred' });
    const driver = new VirtioBlkDriver({ region, contention: { contended: () => on, close() {} } });
    const loop = runDeviceLoop(device, { mode: 'adaptive' });
    const p = track({ region, backend, device, driver, async close() { driver.close(); await loop.stop(); } });
    const read = driver.pread(new Uint8Array(4096), 0);
    // The first pass runs inside pread(): it has either slept or spun by now.
    const s = driver.stats();
    if (on) {
      assert.deepEqual([s.spins, s.interruptsWaited, s.contendedSleeps], [0, 1, 1]);
    } else {
      assert.equal(s.contendedSleeps, 0);
      assert.ok(s.spins >= 1);
    }
    await backend.waitHeld(1);
    backend.held[0]!.release();
    await read;
    await p.close();
  }
});

/** A lent-read receiver that records what it got. */
function lentTarget() {
  const got: { data: Buffer | null; lease: { release(): void } | null; err: Error | null } = { data: null, lease: null, err: null };
  let settled: () => void = () => {};
  const done = new Promise<void>((r) => (settled = r));
  return {
    got,
    done,
    target: {
      lentDone(data: Buffer, lease: { release(): void }) {
        got.data = data;
        got.lease = lease;
        settled();
      },
      lentFailed(err: Error) {
        got.err = err;
        settled();
      },
    },
  };
}

test('a lent read hands out the region bytes and holds its buffer until the lease is released', async () => {
  const pair = makePair({ mode: 'poll', dataBytes: 64 * 1024 });
  pair.backend.bytes.set(pattern(8192, 7), 8192);
  const t = lentTarget();
  assert.equal(pair.driver.readLent(8192, 8192, t.target), true);
  await t.done;
  assert.deepEqual(new Uint8Array(t.got.data!), pattern(8192, 7));
  assert.equal(pair.driver.stats().lentBytes, 8192);
  t.got.lease!.release();
  t.got.lease!.release(); // a second release must not free the buffer again
  assert.equal(pair.driver.stats().lentBytes, 0);
  // The buffer is free again: the whole pool serves ordinary reads.
  await pair.driver.pread(new Uint8Array(16384), 0);
});

test('a lent read declines what it cannot lend (unaligned, past the end, over its bound) and the caller falls back', () => {
  const pair = makePair({ mode: 'poll', dataBytes: 64 * 1024 });
  const t = lentTarget();
  assert.equal(pair.driver.readLent(100, 4096, t.target), false);
  assert.equal(pair.driver.readLent(pair.driver.size, 4096, t.target), false);
  assert.equal(pair.driver.readLent(0, 1 << 20, t.target), false);
  assert.equal(pair.driver.stats().lentBytes, 0);
});

test('a lent read in flight when the driver closes fails with ESHUTDOWN', async () => {
  const backend = new DeferredBlockDevice(1 << 20);
  const region = createRegion({ mode: 'poll', queueSize: 16, dataBytes: 64 * 1024, capacityBytes: 1 << 20 });
  const device = new VirtioBlkDevice({ region, backend, name: 't' });
  const driver = new VirtioBlkDriver({ region });
  const loop = runDeviceLoop(device, { mode: 'poll' });
  const t = lentTarget();
  assert.equal(driver.readLent(0, 4096, t.target), true);
  await backend.waitHeld(1);
  driver.close();
  await t.done;
  assert.ok(t.got.err instanceof StorvisorError && t.got.err.errno === 'ESHUTDOWN', String(t.got.err));
  for (const h of backend.held.splice(0)) h.release();
  await loop.stop();
});
