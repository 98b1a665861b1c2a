import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, writeFileSync, closeSync, constants, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { native } from '../../src/native/addon.ts';
import { LibuvEngine, SPIN_MAX_BYTES, UringEngine, errnoName, type IoEngine, type IoTarget } from '../../src/storage/engine.ts';
import { FileBackend } from '../../src/storage/backend.ts';
import { allocPageAligned } from '../../src/storage/aligned.ts';
import { BlockCache } from '../../src/storage/block-cache.ts';
import { Volume } from '../../src/storage/volume.ts';
import { tempDir, rng, randomBytes } from '../helpers/tmp.ts';

/**
 * The backend engines, io_uring and the libuv fallback, through the same tests.
 * The addon is built by `npm install` on every machine .ci/run prepares, so the
 * io_uring engine is required here, not skipped.
 */
const engines: Array<[string, (entries?: number, slots?: number) => IoEngine]> = [
  ['io_uring', (entries = 64, slots = 256) => {
    assert.ok(native, 'the native addon must be built (npm install)');
    return new UringEngine(native, entries, slots);
  }],
  // The same suite with lone requests held for (the data path's engine).
  ['io_uring+hold', (entries = 64, slots = 256) => {
    assert.ok(native, 'the native addon must be built (npm install)');
    return new UringEngine(native, entries, slots, { holdUs: 200 });
  }],
  // Cooperative task running (COOP_TASKRUN, STORVISOR_URING_COOP=1): completions post at the next system call.
  ['io_uring+hold+coop', (entries = 64, slots = 256) => {
    assert.ok(native, 'the native addon must be built (npm install)');
    return new UringEngine(native, entries, slots, { holdUs: 200, cooperative: true });
  }],
  ['libuv', () => new LibuvEngine()],
];

/** Collects completions; resolves once `n` have arrived. */
class Collector implements IoTarget {
  readonly results = new Map<number, number>();
  private waiter: (() => void) | null = null;
  constructor(private readonly n: number) {}
  ioDone(tag: number, result: number): void {
    assert.ok(!this.results.has(tag), `tag ${tag} completed twice`);
    this.results.set(tag, result);
    if (this.results.size === this.n) this.waiter?.();
  }
  done(): Promise<void> {
    if (this.results.size === this.n) return Promise.resolve();
    return new Promise((resolve) => (this.waiter = resolve));
  }
}

function dataFile(t: Parameters<typeof tempDir>[0], bytes: Buffer): string {
  const dir = tempDir(t);
  const path = join(dir, 'data.img');
  writeFileSync(path, bytes);
  return path;
}

for (const [kind, make] of engines) {
  test(`${kind}: reads and writes land at the right offsets`, async (t) => {
    const engine = make();
    t.after(() => engine.close());
    const content = randomBytes(rng(1), 64 * 1024);
    const fd = openSync(dataFile(t, content), 'r+');
    t.after(() => closeSync(fd));
    const buf = Buffer.alloc(8192);
    const c = new Collector(2);
    engine.read(fd, buf, 0, 4096, 4096, c, 1);
    engine.read(fd, buf, 4096, 4096, 40960, c, 2);
    await c.done();
    assert.deepEqual([...c.results.values()], [4096, 4096]);
    assert.ok(buf.subarray(0, 4096).equals(content.subarray(4096, 8192)));
    assert.ok(buf.subarray(4096).equals(content.subarray(40960, 45056)));
    const w = new Collector(2);
    engine.write(fd, Buffer.alloc(512, 0xab), 0, 512, 1024, true, w, 7);
    engine.datasync(fd, w, 8);
    await w.done();
    assert.equal(w.results.get(7), 512);
    assert.equal(w.results.get(8), 0);
  });

  test(`${kind}: a read at the end of the file comes back short, and the backend fills zeroes`, async (t) => {
    const engine = make();
    t.after(() => engine.close());
    const path = dataFile(t, Buffer.alloc(6000, 0x11));
    const fd = openSync(path, 'r');
    t.after(() => closeSync(fd));
    const c = new Collector(1);
    engine.read(fd, Buffer.alloc(8192), 0, 8192, 0, c, 1);
    await c.done();
    assert.equal(c.results.get(1), 6000);
    const backend = FileBackend.open(path, { direct: false, readOnly: true, engine });
    t.after(() => backend.close());
    const buf = Buffer.alloc(8192, 0xff);
    await backend.read(buf, 0, 8192, 0);
    assert.ok(buf.subarray(0, 6000).every((b) => b === 0x11));
    assert.ok(buf.subarray(6000).every((b) => b === 0));
  });

  test(`${kind}: errors come back as negative errnos`, async (t) => {
    const engine = make();
    t.after(() => engine.close());
    const full = openSync('/dev/full', 'w');
    t.after(() => closeSync(full));
    const dir = tempDir(t);
    const dirFd = openSync(dir, 'r');
    t.after(() => closeSync(dirFd));
    const c = new Collector(2);
    engine.write(full, Buffer.alloc(4096), 0, 4096, 0, false, c, 1);
    engine.read(dirFd, Buffer.alloc(4096), 0, 4096, 0, c, 2);
    await c.done();
    assert.equal(errnoName(c.results.get(1)!), 'ENOSPC');
    assert.equal(errnoName(c.results.get(2)!), 'EISDIR');
  });

  test(`${kind}: O_DIRECT needs aligned memory, and page-aligned memory works`, async (t) => {
    const engine = make();
    t.after(() => engine.close());
    const dir = tempDir(t);
    const path = join(dir, 'd.img');
    writeFileSync(path, randomBytes(rng(2), 16384));
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_DIRECT);
    } catch {
      t.diagnostic('this filesystem has no O_DIRECT; alignment is not checked here');
      return;
    }
    t.after(() => closeSync(fd));
    const aligned = allocPageAligned(8192 + 4096);
    const c = new Collector(2);
    engine.read(fd, aligned.buf, 0, 4096, 4096, c, 1);
    engine.read(fd, aligned.buf, 4096 + 8, 4096, 0, c, 2); // 8 bytes off: refused by the kernel
    await c.done();
    assert.equal(c.results.get(1), 4096);
    assert.equal(errnoName(c.results.get(2)!), 'EINVAL');
  });

  test(`${kind}: thousands of requests in flight, more than the ring and the slots hold, all complete once`, async (t) => {
    const engine = make(8, 64);
    t.after(() => engine.close());
    const content = randomBytes(rng(3), 1024 * 512);
    const fd = openSync(dataFile(t, content), 'r');
    t.after(() => closeSync(fd));
    const N = 3000;
    const buf = Buffer.alloc(N * 512);
    const c = new Collector(N);
    const next = rng(4);
    const at: number[] = [];
    for (let i = 0; i < N; i++) {
      at.push(Math.floor(next() * 1024) * 512);
      engine.read(fd, buf, i * 512, 512, at[i]!, c, i);
    }
    await c.done();
    for (let i = 0; i < N; i++) {
      assert.equal(c.results.get(i), 512);
      assert.ok(buf.subarray(i * 512, i * 512 + 512).equals(content.subarray(at[i]!, at[i]! + 512)), `request ${i}`);
    }
    assert.equal(engine.inFlight, 0);
  });

  test(`${kind}: a volume closed with reads in flight lets them finish first`, async (t) => {
    const engine = make();
    const dir = tempDir(t);
    mkdirSync(join(dir, 'v'));
    const path = join(dir, 'v', 'vol.img');
    const content = randomBytes(rng(5), 1 << 20);
    writeFileSync(path, content);
    const backend = FileBackend.open(path, { engine });
    const volume = new Volume({ id: 1, name: 'v', size: content.length }, backend, new BlockCache(64 * 4096));
    const bufs = Array.from({ length: 64 }, () => Buffer.alloc(4096));
    const reads = bufs.map((b, i) => volume.pread(b, i * 8192));
    const closing = volume.close();
    await Promise.all(reads);
    await closing;
    engine.close();
    bufs.forEach((b, i) => assert.ok(b.equals(content.subarray(i * 8192, i * 8192 + 4096)), `read ${i}`));
    await assert.rejects(volume.pread(Buffer.alloc(4096), 0), { errno: 'ESHUTDOWN' });
  });
}

/** An engine that fails chosen writes and reads, to see errors travel up with their errno. */
class FaultEngine implements IoEngine {
  readonly kind = 'libuv' as const;
  failWrites = 0;
  failReads = 0;
  onBusy: (() => void) | null = null;
  constructor(private readonly inner: IoEngine) {}
  get inFlight() { return this.inner.inFlight; }
  read(fd: number, buf: Uint8Array, at: number, length: number, position: number, target: IoTarget, tag: number): void {
    if (this.failReads) return void queueMicrotask(() => target.ioDone(tag, this.failReads));
    this.inner.read(fd, buf, at, length, position, target, tag);
  }
  write(fd: number, buf: Uint8Array, at: number, length: number, position: number, dsync: boolean, target: IoTarget, tag: number): void {
    if (this.failWrites) return void queueMicrotask(() => target.ioDone(tag, this.failWrites));
    this.inner.write(fd, buf, at, length, position, dsync, target, tag);
  }
  datasync(fd: number, target: IoTarget, tag: number): void { this.inner.datasync(fd, target, tag); }
  poll() { return this.inner.poll(); }
  setSpinning(on: boolean) { return this.inner.setSpinning(on); }
  stats() { return this.inner.stats(); }
  close() { this.inner.close(); }
}

test('EIO and ENOSPC from the engine reach the volume caller with their errno and no host path', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'vol.img');
  writeFileSync(path, Buffer.alloc(1 << 20));
  const engine = new FaultEngine(new LibuvEngine());
  const backend = FileBackend.open(path, { engine });
  const volume = new Volume({ id: 2, name: 'f', size: 1 << 20 }, backend, new BlockCache(16 * 4096));
  t.after(() => volume.close());
  engine.failWrites = -28; // ENOSPC
  await assert.rejects(volume.pwrite(Buffer.alloc(4096, 1), 0), (err: Error & { errno?: string }) => {
    assert.equal(err.errno, 'ENOSPC');
    assert.ok(!err.message.includes(dir), `no host path in "${err.message}"`);
    return true;
  });
  engine.failWrites = 0;
  engine.failReads = -5; // EIO
  await assert.rejects(volume.pread(Buffer.alloc(4096), 8192), { errno: 'EIO' });
  engine.failReads = 0;
  // Nothing stale was cached by the failures: the data reads back as written.
  await volume.pwrite(Buffer.alloc(4096, 9), 8192);
  const back = Buffer.alloc(4096);
  await volume.pread(back, 8192);
  assert.ok(back.every((b) => b === 9));
});

test('a volume whose final sync fails reports it from close, after closing', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'vol.img');
  writeFileSync(path, Buffer.alloc(1 << 16));
  class FailSync extends FaultEngine {
    override datasync(_fd: number, target: IoTarget, tag: number): void {
      queueMicrotask(() => target.ioDone(tag, -5));
    }
  }
  const backend = FileBackend.open(path, { engine: new FailSync(new LibuvEngine()) });
  const volume = new Volume({ id: 3, name: 's', size: 1 << 16 }, backend, new BlockCache(16 * 4096));
  await assert.rejects(volume.close(), { errno: 'EIO' });
  assert.equal(volume.stats().errors, 1);
  await assert.rejects(volume.pread(Buffer.alloc(4096), 0), { errno: 'ESHUTDOWN' });
});

/** A holding engine (a generous bound, so a slow moment of the machine does not turn a hold into a timeout). */
function holdingEngine(t: Parameters<typeof tempDir>[0]): UringEngine {
  assert.ok(native, 'the native addon must be built (npm install)');
  const engine = new UringEngine(native, 64, 256, { holdUs: 5000 });
  t.after(() => engine.close());
  return engine;
}

/** A lone read, so that the test proper finds its code paths warm. */
async function warmUp(engine: UringEngine, fd: number): Promise<void> {
  const c = new Once();
  engine.read(fd, allocPageAligned(4096).buf, 0, 4096, 0, c, 0);
  await c.done;
}

/** Completes one request; records whether that happened inside the call that issued it. */
class Once implements IoTarget {
  result = NaN;
  inside = false;
  issuing = false;
  private resolve: (() => void) | null = null;
  readonly done = new Promise<void>((r) => (this.resolve = r));
  ioDone(_tag: number, result: number): void {
    this.result = result;
    this.inside = this.issuing;
    this.resolve!();
  }
}

test('io_uring: a lone request is held for in its submitter\'s turn, and still completes after read() returns', { timeout: 30_000 }, async (t) => {
  const engine = holdingEngine(t);
  const content = randomBytes(rng(11), 64 * 1024);
  const fd = openSync(dataFile(t, content), 'r');
  t.after(() => closeSync(fd));
  const buf = Buffer.alloc(4096);
  // More than one skip window (a hold that gives way to the test runner's own I/O makes the next
  // CONTENDED_SKIP go without): at least 80 reads, and on until a hold caught one (at most 1,000),
  // since a busy runner (npm test runs two files at once) made three holds in 80 give way.
  let n = 0;
  for (let i = 0; i < 1000 && (i < 80 || engine.stats().reapedHeld === 0); i++, n++) {
    // A turn of the loop first, as a server's next request comes in one: page-cache reads complete
    // at submission, so without it all 80 run in one macrotask, and a wake-up that reached the loop
    // before the test (tsx's loader thread) would stay pending and make every hold give way.
    await new Promise((r) => setImmediate(r));
    const c = new Once();
    c.issuing = true;
    engine.read(fd, buf, 0, 4096, (i % 16) * 4096, c, i);
    c.issuing = false;
    await c.done;
    assert.equal(c.result, 4096);
    assert.equal(c.inside, false, 'ioDone ran inside read()');
    assert.ok(buf.equals(content.subarray((i % 16) * 4096, (i % 16) * 4096 + 4096)), `read ${i}`);
  }
  const s = engine.stats();
  // Other I/O of the test runner's own may make a hold give way (and the next few go without).
  assert.ok(s.reapedHeld! + s.holdTimeouts! + s.holdsYielded! <= n, JSON.stringify(s));
  assert.ok(s.reapedHeld! >= 1, `no hold caught its request: ${JSON.stringify(s)}`);
  assert.equal(engine.inFlight, 0);
});

test('io_uring: requests issued together are not held for, and all complete', { timeout: 30_000 }, async (t) => {
  const engine = holdingEngine(t);
  const content = randomBytes(rng(12), 64 * 1024);
  const fd = openSync(dataFile(t, content), 'r');
  t.after(() => closeSync(fd));
  await warmUp(engine, fd);
  const before = engine.stats();
  const buf = Buffer.alloc(8192);
  const a = new Once();
  const b = new Once();
  engine.read(fd, buf, 0, 4096, 8192, a, 1);
  engine.read(fd, buf, 4096, 4096, 16384, b, 2);
  await Promise.all([a.done, b.done]);
  assert.deepEqual([a.result, b.result], [4096, 4096]);
  assert.ok(buf.equals(Buffer.concat([content.subarray(8192, 12288), content.subarray(16384, 20480)])));
  const s = engine.stats();
  const holds = (x: typeof s) => x.reapedHeld! + x.holdTimeouts! + x.holdsYielded!;
  assert.equal(holds(s), holds(before), JSON.stringify(s));
});

test('io_uring: a hold gives way when other I/O waits on the event loop, and the request still completes', { timeout: 30_000 }, async (t) => {
  const engine = holdingEngine(t);
  const content = randomBytes(rng(13), 64 * 1024);
  // O_DIRECT: the read takes the disk's time (a page-cache read completes inside the submission).
  const fd = openSync(dataFile(t, content), constants.O_RDONLY | constants.O_DIRECT);
  t.after(() => closeSync(fd));
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = connect((server.address() as { port: number }).port, '127.0.0.1');
  const [peer] = await accepted;
  t.after(() => {
    client.destroy();
    peer.destroy();
  });
  // One byte first, so the peer's socket is in the loop's epoll set before the test proper.
  client.write('a');
  await once(peer, 'data');
  await warmUp(engine, fd);
  const buf = allocPageAligned(4096).buf;
  // A few rounds: the first ones may find the code paths cold (a hold that never began is no verdict).
  let round: Once | null = null;
  client.on('data', () => {
    if (round === null) return;
    const c = round;
    round = null;
    // Bytes for `client` were just written (loopback delivers them at once) and the loop has not read them:
    // a hold now would make that client wait behind the disk.
    peer.write('c');
    engine.read(fd, buf, 0, 4096, 4096, c, 1);
  });
  for (let i = 0; i < 10 && engine.stats().holdsYielded === 0; i++) {
    const c = (round = new Once());
    peer.write('b');
    await c.done;
    assert.equal(c.result, 4096);
    assert.ok(buf.equals(content.subarray(4096, 8192)));
  }
  assert.ok(engine.stats().holdsYielded! >= 1, JSON.stringify(engine.stats()));
});

test('io_uring: a transfer longer than SPIN_MAX_BYTES is neither spun for nor held for, and completes through the eventfd', { timeout: 30_000 }, async (t) => {
  const engine = holdingEngine(t);
  const content = randomBytes(rng(13), 4 * SPIN_MAX_BYTES);
  const fd = openSync(dataFile(t, content), 'r');
  t.after(() => closeSync(fd));
  await warmUp(engine, fd);
  const before = engine.stats();
  const buf = Buffer.alloc(2 * SPIN_MAX_BYTES);
  const long = new Once();
  const small = new Once();
  engine.read(fd, buf, 0, SPIN_MAX_BYTES + 4096, 0, long, 1);
  engine.read(fd, buf, SPIN_MAX_BYTES + 4096, 4096, 8192, small, 2);
  // Two in flight, one of them long: nothing a poller should spin for.
  assert.equal(engine.inFlight, 0);
  assert.equal(engine.stats().inFlight, 2);
  await Promise.all([long.done, small.done]);
  assert.deepEqual([long.result, small.result], [SPIN_MAX_BYTES + 4096, 4096]);
  assert.ok(buf.subarray(0, SPIN_MAX_BYTES + 4096).equals(content.subarray(0, SPIN_MAX_BYTES + 4096)));
  // A lone long transfer: no hold (its submitter's turn ends at once).
  const lone = new Once();
  lone.issuing = true;
  engine.read(fd, buf, 0, 2 * SPIN_MAX_BYTES, SPIN_MAX_BYTES, lone, 3);
  lone.issuing = false;
  assert.equal(engine.inFlight, 0);
  await lone.done;
  assert.equal(lone.result, 2 * SPIN_MAX_BYTES);
  const s = engine.stats();
  const holds = (x: typeof s) => x.reapedHeld! + x.holdTimeouts! + x.holdsYielded!;
  assert.equal(holds(s), holds(before), JSON.stringify(s));
  assert.equal(s.reapedWoken - before.reapedWoken, 3, JSON.stringify(s));
  assert.equal(s.inFlight, 0);
});

test('io_uring: a lone request goes to the kernel at once while a poller spins, and the poller\'s reap completes it', { timeout: 30_000 }, async (t) => {
  const engine = holdingEngine(t);
  const content = randomBytes(rng(14), 64 * 1024);
  const fd = openSync(dataFile(t, content), 'r');
  t.after(() => closeSync(fd));
  await warmUp(engine, fd);
  engine.setSpinning(true);
  const before = engine.stats();
  const buf = allocPageAligned(8192).buf;
  const lone = new Once();
  engine.read(fd, buf, 0, 4096, 12288, lone, 1);
  // Handed over inside read(): no microtask has run yet.
  assert.equal(engine.stats().submits - before.submits, 1);
  // A second request in the same turn waits for the turn's one batched submit.
  const second = new Once();
  engine.read(fd, buf, 4096, 4096, 20480, second, 2);
  assert.equal(engine.stats().submits - before.submits, 1);
  const deadline = Date.now() + 10_000;
  while (engine.stats().inFlight > 0) {
    assert.ok(Date.now() < deadline, `not reaped: ${JSON.stringify(engine.stats())}`);
    await new Promise((r) => setImmediate(r)); // a poller's pass: one reap per event-loop turn
    engine.poll();
  }
  assert.deepEqual([lone.result, second.result], [4096, 4096]);
  assert.ok(buf.equals(Buffer.concat([content.subarray(12288, 16384), content.subarray(20480, 24576)])));
  const s = engine.stats();
  assert.equal(s.submits - before.submits, 2);
  assert.equal(s.reapedPolling - before.reapedPolling, 2, JSON.stringify(s));
  assert.equal(s.reapedHeld, before.reapedHeld, 'a spinning poller reaps: no hold');
  engine.setSpinning(false);
});
