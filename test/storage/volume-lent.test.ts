import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { BlockCache } from '../../src/storage/block-cache.ts';
import { FileBackend } from '../../src/storage/backend.ts';
import { Volume } from '../../src/storage/volume.ts';
import { hasLentRead, type Lease, type LentReadTarget } from '../../src/nbd/lent-read.ts';
import type { IoTarget } from '../../src/block/types.ts';
import { tempDir } from '../helpers/tmp.ts';

/**
 * A volume lends its READs of up to one block to the NBD export (no promise
 * per read): the data arrives after readLent returns, failures reach
 * lentFailed, and the lend buffers are bounded.
 */
const MiB = 1024 * 1024;

function volume(t: Parameters<typeof tempDir>[0], failReads = false): Volume {
  const path = join(tempDir(t), 'v.img');
  const fd = openSync(path, 'w');
  ftruncateSync(fd, 4 * MiB);
  closeSync(fd);
  const file = FileBackend.open(path, { direct: false });
  const backend = failReads
    ? Object.assign(Object.create(file) as FileBackend, {
        readTo(_buf: Uint8Array, _at: number, _length: number, _position: number, target: IoTarget, tag: number) {
          setImmediate(() => target.ioDone(tag, -5)); // EIO
        },
      })
    : file;
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
