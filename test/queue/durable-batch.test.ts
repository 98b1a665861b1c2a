/**
 * A guest's write larger than size_max travels as several chunks. Made durable
 * as a whole: each chunk without a sync of its own, then one flush after every
 * chunk has completed, and the write acknowledged only after that flush (#10).
 * Two ways there: a write-back queue (the driver sends FUA as its chunks and a
 * FLUSH), and a write-through queue whose backend can skip its per-write sync
 * (the device shares one flush among the writes taken in one poll).
 */
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtioBlkDevice, writebackFor } from '../../src/queue/blk-device.ts';
import { VirtioBlkDriver } from '../../src/queue/blk-driver.ts';
import { RegionViews, createRegion, regionLayout } from '../../src/queue/layout.ts';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import type { BlockDevice, WriteFlags } from '../../src/block/types.ts';
import { StorvisorError, ioError } from '../../src/util/errors.ts';
import { runDeviceLoop } from './helpers/device-loop.ts';
import { closeOpenPairs, pattern, track } from './helpers/pair.ts';

afterEach(closeOpenPairs);

const CHUNK = 16 * 1024;
const WAIT_MS = 5000;

/**
 * A backend that records what it is asked and when each thing completes;
 * writes complete on a later turn (out of order with each other), a flush can
 * be held until the test lets it go, and a write or the flush can be made to fail.
 */
class RecordingDevice implements BlockDevice {
  readonly blockSize = 4096;
  readonly readOnly = false;
  readonly events: string[] = [];
  readonly memory: MemoryBlockDevice;
  failWriteAt = -1;
  failFlush = false;
  holdFlush = false;
  private releaseFlush: (() => void) | null = null;
  private flushArrived: (() => void) | null = null;

  constructor(
    readonly size: number,
    readonly writeThrough: boolean,
    /** As Volume.deferredSync: `unsynced` writes skip the per-write sync. */
    readonly deferredSync: boolean,
  ) {
    this.memory = new MemoryBlockDevice(size);
  }

  async pread(buf: Uint8Array, offset: number): Promise<void> {
    return this.memory.pread(buf, offset);
  }

  async pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags): Promise<void> {
    this.events.push(`write ${offset} ${buf.byteLength}${flags?.unsynced ? ' unsynced' : ''}`);
    // Later chunks finish first: completion order must not matter.
    for (let i = 0; i < 1 + ((this.size - offset) >> 14) % 3; i++) await new Promise<void>((r) => setImmediate(r));
    if (offset === this.failWriteAt) {
      this.events.push(`failed ${offset}`);
      throw ioError(`write at ${offset} failed`);
    }
    await this.memory.pwrite(buf, offset);
    this.events.push(`wrote ${offset}`);
  }

  async flush(): Promise<void> {
    this.events.push('flush');
    this.flushArrived?.();
    if (this.holdFlush) await new Promise<void>((r) => (this.releaseFlush = r));
    if (this.failFlush) {
      this.events.push('flush failed');
      throw ioError('flush failed');
    }
    this.events.push('flushed');
  }

  /** Resolves when a flush has been asked for (bounded by WAIT_MS). */
  flushAsked(): Promise<void> {
    if (this.events.includes('flush')) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no flush within the deadline')), WAIT_MS);
      this.flushArrived = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  letFlushGo(): void {
    this.holdFlush = false;
    this.releaseFlush?.();
  }

  async trim(): Promise<void> {}
  async zero(offset: number, length: number): Promise<void> {
    return this.memory.zero(offset, length);
  }
}

function setup(backend: RecordingDevice, writeback: boolean) {
  const region = createRegion({ mode: 'poll', queueSize: 32, dataBytes: 256 * 1024, capacityBytes: backend.size, sizeMax: CHUNK, writeback });
  const device = new VirtioBlkDevice({ region, backend, name: 'batch' });
  const driver = new VirtioBlkDriver({ region });
  const loop = runDeviceLoop(device, { mode: 'poll' });
  return track({ region, device, driver, async close() { driver.close(); await loop.stop(); } });
}

/** The write's promise, and whether it has settled yet. */
function watch(p: Promise<void>, events: string[]) {
  const state = { settled: false, done: p.then(() => { state.settled = true; events.push('acknowledged'); }, (err: unknown) => { state.settled = true; events.push('rejected'); throw err; }) };
  return state;
}

const index = (events: string[], e: string) => events.indexOf(e);

function assertFlushAfterEveryChunk(events: string[], offsets: number[]) {
  const flush = index(events, 'flush');
  assert.ok(flush >= 0, `a flush: ${events.join(', ')}`);
  for (const at of offsets) {
    const wrote = Math.max(index(events, `wrote ${at}`), index(events, `failed ${at}`));
    assert.ok(wrote >= 0 && wrote < flush, `chunk ${at} completed before the flush: ${events.join(', ')}`);
  }
  assert.equal(events.filter((e) => e === 'flush').length, 1, `one flush: ${events.join(', ')}`);
}

test('a multi-chunk FUA write on a write-back queue is acknowledged only after one flush that follows every chunk', async () => {
  const backend = new RecordingDevice(256 * 1024, true, true);
  backend.holdFlush = true;
  const { driver } = setup(backend, writebackFor(backend));
  assert.equal(driver.writeThrough, false);
  const data = pattern(4 * CHUNK, 7);
  const w = watch(driver.pwrite(data, 0, { fua: true }), backend.events);
  await backend.flushAsked();
  assertFlushAfterEveryChunk(backend.events, [0, CHUNK, 2 * CHUNK, 3 * CHUNK]);
  // Every chunk went without a sync of its own.
  assert.deepEqual(backend.events.filter((e) => e.startsWith('write ')).sort(), [0, CHUNK, 2 * CHUNK, 3 * CHUNK].map((at) => `write ${at} ${CHUNK} unsynced`).sort());
  await new Promise<void>((r) => setImmediate(r));
  assert.equal(w.settled, false, 'not acknowledged while the flush is in progress');
  backend.letFlushGo();
  await w.done;
  assert.ok(index(backend.events, 'acknowledged') > index(backend.events, 'flushed'));
  assert.deepEqual(backend.memory.bytes.subarray(0, data.byteLength), data);
});

test('the chunks of a FUA write on a write-back queue are posted with its flush, so the guest is woken once', async () => {
  const backend = new RecordingDevice(256 * 1024, true, true);
  backend.holdFlush = true;
  const { driver, region } = setup(backend, true);
  const views = new RegionViews(region, regionLayout(region));
  const before = Atomics.load(views.u16, views.usedIdx);
  const w = watch(driver.pwrite(pattern(2 * CHUNK, 14), 0, { fua: true }), backend.events);
  await backend.flushAsked();
  await new Promise<void>((r) => setImmediate(r));
  // Both chunks have completed, and nothing is visible to the guest yet.
  assert.ok(backend.events.includes('wrote 0') && backend.events.includes(`wrote ${CHUNK}`));
  assert.equal(Atomics.load(views.u16, views.usedIdx), before);
  backend.letFlushGo();
  await w.done;
  assert.equal(Atomics.load(views.u16, views.usedIdx), (before + 3) & 0xffff);
});

test('a failed chunk fails the whole FUA write on a write-back queue', async () => {
  const backend = new RecordingDevice(256 * 1024, true, true);
  backend.failWriteAt = 2 * CHUNK;
  const { driver } = setup(backend, true);
  const w = watch(driver.pwrite(pattern(4 * CHUNK, 8), 0, { fua: true }), backend.events);
  await assert.rejects(w.done, (err: unknown) => err instanceof StorvisorError && err.errno === 'EIO');
  // Rejected only once nothing of it is still in flight.
  for (const at of [0, CHUNK, 3 * CHUNK]) assert.ok(index(backend.events, `wrote ${at}`) < index(backend.events, 'rejected'));
  assert.ok(index(backend.events, 'flushed') < index(backend.events, 'rejected'));
});

test('on a write-through queue the chunks of one write go unsynced and are acknowledged after one shared flush', async () => {
  const backend = new RecordingDevice(256 * 1024, true, true);
  backend.holdFlush = true;
  const { driver, device } = setup(backend, false);
  assert.equal(driver.writeThrough, true);
  const data = pattern(3 * CHUNK + 4096, 9);
  const w = watch(driver.pwrite(data, 4096), backend.events);
  await backend.flushAsked();
  // [4096, 53248): chunks end on multiples of size_max.
  assertFlushAfterEveryChunk(backend.events, [4096, CHUNK, 2 * CHUNK, 3 * CHUNK]);
  assert.ok(backend.events.filter((e) => e.startsWith('write ')).every((e) => e.endsWith(' unsynced')), backend.events.join(', '));
  await new Promise<void>((r) => setImmediate(r));
  assert.equal(w.settled, false, 'not acknowledged while the flush is in progress');
  backend.letFlushGo();
  await w.done;
  assert.ok(index(backend.events, 'acknowledged') > index(backend.events, 'flushed'));
  assert.deepEqual(backend.memory.bytes.subarray(4096, 4096 + data.byteLength), data);
  assert.equal(device.stats().groupSyncs, 1);
  assert.equal(device.stats().groupedWrites, 4);
});

test('a failed flush fails every write that shared it on a write-through queue', async () => {
  const backend = new RecordingDevice(256 * 1024, true, true);
  backend.failFlush = true;
  const { driver } = setup(backend, false);
  await assert.rejects(driver.pwrite(pattern(4 * CHUNK, 10), 0), (err: unknown) => err instanceof StorvisorError && err.errno === 'EIO');
  assert.ok(backend.events.includes('flush failed'));
});

test('a failed chunk fails the whole write on a write-through queue', async () => {
  const backend = new RecordingDevice(256 * 1024, true, true);
  backend.failWriteAt = CHUNK;
  const { driver } = setup(backend, false);
  const w = watch(driver.pwrite(pattern(4 * CHUNK, 11), 0), backend.events);
  await assert.rejects(w.done, (err: unknown) => err instanceof StorvisorError && err.errno === 'EIO');
  assert.ok(index(backend.events, 'flushed') < index(backend.events, 'rejected'));
});

test('a lone write on a write-through queue keeps its own sync and needs no flush', async () => {
  const backend = new RecordingDevice(256 * 1024, true, true);
  const { driver } = setup(backend, false);
  await driver.pwrite(pattern(CHUNK, 12), 0);
  assert.deepEqual(backend.events, [`write 0 ${CHUNK}`, 'wrote 0']);
});

test('a write-through backend that cannot skip its sync keeps every write synced and unflushed', async () => {
  const backend = new RecordingDevice(256 * 1024, true, false);
  const { driver } = setup(backend, writebackFor(backend));
  assert.equal(driver.writeThrough, true);
  await driver.pwrite(pattern(4 * CHUNK, 13), 0);
  assert.equal(backend.events.filter((e) => e.endsWith('unsynced') || e === 'flush').length, 0, backend.events.join(', '));
});

test('a guest queue is write-back over a volume that can defer its sync or that caches writes', () => {
  assert.equal(writebackFor(new RecordingDevice(4096, true, true)), true);
  assert.equal(writebackFor(new RecordingDevice(4096, false, false)), true);
  assert.equal(writebackFor(new RecordingDevice(4096, true, false)), false);
});

test('a one-chunk FUA write on a write-back queue is its write and a FLUSH in one publish, acknowledged only once both completed', async () => {
  const backend = new RecordingDevice(256 * 1024, true, true);
  backend.holdFlush = true;
  const { driver, region } = setup(backend, true);
  const views = new RegionViews(region, regionLayout(region));
  const availBefore = Atomics.load(views.u16, views.availIdx);
  const usedBefore = Atomics.load(views.u16, views.usedIdx);
  const data = pattern(4096, 15);
  const w = watch(driver.pwrite(data, 8192, { fua: true }), backend.events);
  // Both requests were published together, before any of them completed.
  assert.equal(Atomics.load(views.u16, views.availIdx), (availBefore + 2) & 0xffff);
  await backend.flushAsked();
  await new Promise<void>((r) => setImmediate(r));
  // A small lone write before a FLUSH goes with the backend's own sync; the queue's first FLUSH still syncs.
  assert.deepEqual(backend.events.filter((e) => e.startsWith('write ')), ['write 8192 4096']);
  assert.ok(index(backend.events, 'wrote 8192') >= 0);
  assert.equal(w.settled, false, 'not acknowledged while the flush is in progress');
  assert.equal(Atomics.load(views.u16, views.usedIdx), usedBefore, 'the write is posted with its flush');
  backend.letFlushGo();
  await w.done;
  assert.equal(Atomics.load(views.u16, views.usedIdx), (usedBefore + 2) & 0xffff);
  assert.deepEqual(backend.memory.bytes.subarray(8192, 8192 + data.byteLength), data);
});

test('a one-chunk FUA write fails when its write fails, though its flush succeeds', async () => {
  const backend = new RecordingDevice(256 * 1024, true, true);
  backend.failWriteAt = 4096;
  const { driver } = setup(backend, true);
  const w = watch(driver.pwrite(pattern(4096, 16), 4096, { fua: true }), backend.events);
  await assert.rejects(w.done, (err: unknown) => err instanceof StorvisorError && err.errno === 'EIO');
  // Rejected only once its flush had completed too: nothing of it is still in flight.
  assert.ok(index(backend.events, 'flushed') >= 0 && index(backend.events, 'flushed') < index(backend.events, 'rejected'));
  // The driver goes on: the next one succeeds.
  await driver.pwrite(pattern(4096, 17), 0, { fua: true });
});

test('a flush in the backend sync is counted as syncing, and is then the only request in flight, for the poller', async () => {
  const backend = new RecordingDevice(256 * 1024, true, true);
  backend.holdFlush = true;
  const { driver, device } = setup(backend, true);
  const w = watch(driver.pwrite(pattern(2 * CHUNK, 18), 0, { fua: true }), backend.events);
  await backend.flushAsked();
  assert.equal(device.syncing, 1);
  assert.equal(device.inFlight, 1, 'the chunks it covers completed and are held for it');
  backend.letFlushGo();
  await w.done;
  assert.equal(device.syncing, 0);
  assert.equal(device.inFlight, 0);
});
