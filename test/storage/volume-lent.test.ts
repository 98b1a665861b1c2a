import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { BlockCache } from '../../src/storage/block-cache.ts';
import { FileBackend } from '../../src/storage/backend.ts';
import { Volume } from '../../src/storage/volume.ts';
import { hasLentRead, type Lease, type LentReadTarget } from '../../src/nbd/lent-read.ts';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import type { IoTarget } from '../../src/block/types.ts';
import { tempDir, rng, randomBytes } from '../helpers/tmp.ts';

/**
 * A volume lends its READs of up to one block to the NBD export (no promise
 * per read): the data arrives after readLent returns, failures reach
 * lentFailed, and the lend buffers are bounded. Its writeFrom takes a whole
 * aligned block without a promise, in order with every other write.
 */
const MiB = 1024 * 1024;

function volume(t: Parameters<typeof tempDir>[0], failReads = false, failWrites = false): Volume {
  const path = join(tempDir(t), 'v.img');
  const fd = openSync(path, 'w');
  ftruncateSync(fd, 4 * MiB);
  closeSync(fd);
  const file = FileBackend.open(path, { direct: false });
  const fail = (_buf: Uint8Array, _at: number, _length: number, _position: number, target: IoTarget, tag: number) => {
    setImmediate(() => target.ioDone(tag, -5)); // EIO
  };
  const backend = failReads || failWrites ? Object.assign(Object.create(file) as FileBackend, failReads ? { readTo: fail } : { writeFrom: fail }) : file;
  const v = new Volume({ id: 1, name: 'v', size: 4 * MiB }, backend, new BlockCache(1 * MiB));
  t.after(() => v.close().catch(() => {}));
  return v;
}

/** A LentReadTarget that records what it was given, and whether readLent had returned by then. */
function recorder() {
  const got: { data?: Buffer; lease?: Lease; err?: Error; early: boolean } = { early: false };
  let returned = false;
  let settle!: () => void;
  const done = new Promise<void>((r) => (settle = r));
  const target: LentReadTarget = {
    lentDone(data, lease) {
      got.data = Buffer.from(data);
      got.lease = lease;
      got.early = !returned;
      settle();
    },
    lentFailed(err) {
      got.err = err;
      got.early = !returned;
      settle();
    },
  };
  return { got, target, done, returned: () => (returned = true) };
}

test('a volume is a lender of reads to the NBD export', (t) => {
  assert.ok(hasLentRead(volume(t)));
});

test('a lent block read hands over the data after readLent returns, from the disk and then from the cache', async (t) => {
  const v = volume(t);
  const data = Buffer.alloc(4096, 0x5a);
  await v.pwrite(data, 8192);
  v['cache'].invalidateRange(1, 0, 1024); // the first read misses
  for (const source of ['disk', 'cache']) {
    const r = recorder();
    assert.equal(v.readLent(8192, 4096, r.target), true);
    r.returned();
    await r.done;
    assert.equal(r.got.early, false, `${source}: handed over inside readLent`);
    assert.ok(r.got.data!.equals(data), `${source}: wrong data`);
    r.got.lease!.release();
  }
});

test('a lent read shorter than a block carries exactly its bytes', async (t) => {
  const v = volume(t);
  const data = Buffer.from(Array.from({ length: 4096 }, (_, i) => i & 0xff));
  await v.pwrite(data, 0);
  const r = recorder();
  assert.equal(v.readLent(100, 512, r.target), true);
  r.returned();
  await r.done;
  assert.ok(r.got.data!.equals(data.subarray(100, 612)));
  r.got.lease!.release();
});

test('readLent declines reads longer than a block, out of range, or on a closed volume', async (t) => {
  const v = volume(t);
  const r = recorder();
  assert.equal(v.readLent(0, 8192, r.target), false);
  assert.equal(v.readLent(4 * MiB - 1024, 4096, r.target), false);
  await v.close();
  assert.equal(v.readLent(0, 4096, r.target), false);
});

test('a lent read that fails at the backend reaches lentFailed with EIO', async (t) => {
  const v = volume(t, true);
  const r = recorder();
  assert.equal(v.readLent(0, 4096, r.target), true);
  r.returned();
  await r.done;
  assert.equal(r.got.data, undefined);
  assert.equal((r.got.err as Error & { errno?: string }).errno, 'EIO');
});

test('readLent declines once every lend buffer is out, and lends again when one comes back', async (t) => {
  const v = volume(t);
  const leases: Lease[] = [];
  let declined = -1;
  for (let i = 0; i < 1000; i++) {
    const r = recorder();
    if (!v.readLent(0, 4096, r.target)) {
      declined = i;
      break;
    }
    r.returned();
    await r.done;
    leases.push(r.got.lease!);
  }
  assert.equal(declined, 256, 'the bound on lend buffers per volume');
  leases.pop()!.release();
  const r = recorder();
  assert.equal(v.readLent(0, 4096, r.target), true);
  r.returned();
  await r.done;
  r.got.lease!.release();
  for (const l of leases) l.release();
});

/** writeFrom as a promise: resolves once the target hears back (null), rejects with its error. */
function writeFrom(v: Volume, src: Uint8Array, offset: number): Promise<void> {
  return new Promise((resolve, reject) => {
    assert.equal(v.writeFrom(src, offset, { writeDone: (err) => (err ? reject(err) : resolve()) }), true);
  });
}

test('an aligned block written by writeFrom reads back from the cache and from the disk', async (t) => {
  const v = volume(t);
  const data = randomBytes(rng(1), 4096);
  await writeFrom(v, data, 3 * 4096);
  const got = Buffer.alloc(4096);
  await v.pread(got, 3 * 4096);
  assert.ok(got.equals(data), 'from the cache');
  v['cache'].invalidateRange(1, 0, 1024);
  await v.pread(got, 3 * 4096);
  assert.ok(got.equals(data), 'from the disk');
  assert.equal(v.counters.writes, 1);
});

test('writes to one block made in one turn through writeFrom and pwrite apply in the order they were made', async (t) => {
  const v = volume(t);
  const a = Buffer.alloc(4096, 1);
  const b = Buffer.alloc(4096, 2);
  const c = Buffer.alloc(100, 3);
  await Promise.all([writeFrom(v, a, 0), writeFrom(v, b, 0), v.pwrite(c, 50)]);
  const want = Buffer.from(b);
  c.copy(want, 50);
  const got = Buffer.alloc(4096);
  v['cache'].invalidateRange(1, 0, 1024);
  await v.pread(got, 0);
  assert.ok(got.equals(want));
});

test('a writeFrom that fails at the backend reaches writeDone with EIO, and the block is not served from the cache', async (t) => {
  const v = volume(t, false, true);
  await v.pread(Buffer.alloc(4096), 0); // cached now
  await assert.rejects(writeFrom(v, Buffer.alloc(4096, 9), 0), (err: Error & { errno?: string }) => err.errno === 'EIO');
  assert.equal(v['cache'].lookup(1 * 2 ** 36 + 0), -1);
  assert.equal(v.counters.errors, 1);
});

test('random writes through writeFrom and pwrite with reads in between match a reference device', async (t) => {
  const v = volume(t);
  const size = 4 * MiB;
  const ref = new MemoryBlockDevice(size);
  const next = rng(7);
  for (let round = 0; round < 30; round++) {
    const ops: Promise<void>[] = [];
    const used: Array<[number, number]> = [];
    for (let i = 0; i < 16; i++) {
      const block = next() < 0.7;
      const len = block ? 4096 : 1 + Math.floor(next() * 9000);
      const off = block ? 4096 * Math.floor(next() * (size / 4096)) : Math.floor(next() * (size - len));
      if (used.some(([x, y]) => off < y && x < off + len)) continue;
      used.push([off, off + len]);
      const data = randomBytes(next, len);
      ops.push(block ? writeFrom(v, data, off) : v.pwrite(data, off));
      await ref.pwrite(data, off);
    }
    await Promise.all(ops);
    for (const [x, y] of used) {
      const got = Buffer.alloc(y - x);
      const want = Buffer.alloc(y - x);
      await Promise.all([v.pread(got, x), ref.pread(want, x)]);
      assert.ok(got.equals(want), `round ${round}: [${x}, ${y}) differs`);
    }
  }
});
