import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, ftruncateSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BlockCache } from '../../src/storage/block-cache.ts';
import { FileBackend } from '../../src/storage/backend.ts';
import { LibuvEngine, type IoEngine, type IoTarget } from '../../src/storage/engine.ts';
import { Volume } from '../../src/storage/volume.ts';
import { NbdClient } from '../../src/nbd/client.ts';
import { requireTools } from '../helpers/tools.ts';
import { run, startServer, tempDir } from './helpers.ts';
import { pattern } from '../helpers/load.ts';

/**
 * The NBD export over a file volume is write-back, as a guest's queue is: a
 * plain WRITE lands in the page cache (no sync), FLUSH is one fdatasync begun
 * after the writes it covers, and a FUA WRITE is durable (an O_DSYNC write)
 * before its reply. An engine that records every operation, with whether its
 * descriptor is O_DSYNC (from /proc/self/fdinfo), shows the order.
 */
requireTools('nbdinfo');
const MiB = 1024 * 1024;
const O_DSYNC = 0o10000;

type Event = string;

/** The engine every FileBackend here runs on, logging submissions and completions into `log`. */
class RecordingEngine implements IoEngine {
  readonly kind = 'libuv' as const;
  onBusy: (() => void) | null = null;
  private readonly inner = new LibuvEngine();
  private readonly dsyncFds = new Map<number, boolean>();

  constructor(private readonly log: Event[]) {}

  get inFlight(): number {
    return this.inner.inFlight;
  }
  private dsync(fd: number): boolean {
    let on = this.dsyncFds.get(fd);
    if (on === undefined) {
      const flags = /flags:\s*([0-7]+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!;
      on = (parseInt(flags, 8) & O_DSYNC) !== 0;
      this.dsyncFds.set(fd, on);
    }
    return on;
  }
  private logged(what: string, target: IoTarget): IoTarget {
    return { ioDone: (tag, result) => {
      this.log.push(`${what} done`);
      target.ioDone(tag, result);
    } };
  }
  read(fd: number, buf: Uint8Array, at: number, length: number, position: number, target: IoTarget, tag: number): void {
    this.inner.read(fd, buf, at, length, position, target, tag);
  }
  write(fd: number, buf: Uint8Array, at: number, length: number, position: number, dsync: boolean, target: IoTarget, tag: number): void {
    const what = dsync || this.dsync(fd) ? 'dsync write' : 'write';
    this.log.push(what);
    this.inner.write(fd, buf, at, length, position, dsync, this.logged(what, target), tag);
  }
  datasync(fd: number, target: IoTarget, tag: number): void {
    this.log.push('fdatasync');
    this.inner.datasync(fd, this.logged('fdatasync', target), tag);
  }
  poll(): number {
    return this.inner.poll();
  }
  setSpinning(): number {
    return 0; // libuv: completions arrive as callbacks
  }
  stats() {
    return this.inner.stats();
  }
  close(): void {
    this.inner.close();
  }
}

async function exported(t: Parameters<typeof tempDir>[0]) {
  const path = join(tempDir(t), 'v.img');
  const fd = openSync(path, 'w');
  ftruncateSync(fd, 8 * MiB);
  closeSync(fd);
  const log: Event[] = [];
  const backend = FileBackend.open(path, { engine: new RecordingEngine(log) });
  const volume = new Volume({ id: 1, name: 'v', size: 8 * MiB }, backend, new BlockCache(1 * MiB));
  t.after(() => volume.close().catch(() => {}));
  const { port } = await startServer(t, volume);
  const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: 'vol' });
  t.after(() => client.close().catch(() => {}));
  return { client, log, volume, path, port };
}

test('nbdinfo sees a file volume offer FLUSH, FUA and multi-conn', async (t) => {
  const { port } = await exported(t);
  const r = await run('nbdinfo', ['--json', `nbd://127.0.0.1:${port}/vol`]);
  assert.equal(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout).exports[0];
  assert.equal(info.can_flush, true);
  assert.equal(info.can_fua, true);
  // A FLUSH is the image file's fdatasync, whichever connection wrote.
  assert.equal(info.can_multi_conn, true);
});

test('a plain NBD WRITE on a file volume is a write without a sync, on the fast path and on pwrite\'s', async (t) => {
  const { client, log } = await exported(t);
  await client.pwrite(pattern(3), 3 * 4096); // one whole block: the promise-free path
  await client.pwrite(pattern(5).subarray(0, 3000), 5 * 4096 + 100); // unaligned: read-modify-write through pwrite
  await client.pwrite(Buffer.concat([pattern(7), pattern(8)]), 7 * 4096); // two blocks: pwrite
  assert.deepEqual(log, ['write', 'write done', 'write', 'write done', 'write', 'write done']);
});

test('an NBD FLUSH is one fdatasync, begun after the writes before it completed and finished before its reply', async (t) => {
  const { client, log, volume } = await exported(t);
  await Promise.all([client.pwrite(pattern(1), 4096), client.pwrite(pattern(2), 2 * 4096)]);
  const before = volume.stats().backend_syncs!;
  await client.flush();
  log.push('flush reply');
  assert.equal(volume.stats().backend_syncs! - before, 1);
  assert.deepEqual(log.slice(-3), ['fdatasync', 'fdatasync done', 'flush reply']);
  assert.deepEqual(log.slice(0, -3).sort(), ['write', 'write', 'write done', 'write done']);
});

test('a FUA NBD WRITE is an O_DSYNC write that completes before its reply, with no fdatasync', async (t) => {
  const { client, log, path } = await exported(t);
  await client.pwrite(pattern(4), 4 * 4096, { fua: true });
  log.push('fua reply');
  await client.pwrite(Buffer.concat([pattern(9), pattern(10)]), 9 * 4096, { fua: true });
  log.push('fua reply');
  assert.deepEqual(log, ['dsync write', 'dsync write done', 'fua reply', 'dsync write', 'dsync write done', 'fua reply']);
  const image = readFileSync(path);
  assert.ok(image.subarray(4 * 4096, 5 * 4096).equals(pattern(4)));
  assert.ok(image.subarray(9 * 4096, 11 * 4096).equals(Buffer.concat([pattern(9), pattern(10)])));
});

test('concurrent FLUSHes share fdatasyncs: one runs, the ones that arrive meanwhile join the next', async (t) => {
  const { client, volume } = await exported(t);
  await client.pwrite(pattern(1), 4096);
  const before = volume.stats().backend_syncs!;
  await Promise.all(Array.from({ length: 16 }, () => client.flush()));
  const syncs = volume.stats().backend_syncs! - before;
  assert.ok(syncs >= 1 && syncs <= 2, `16 concurrent flushes cost ${syncs} fdatasyncs`);
});
