import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileBlockDevice } from '../../src/block/file-device.ts';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { MiB, run, startServer, tempDir } from './helpers.ts';
import { requireTools } from '../helpers/tools.ts';

test('nbdinfo reports the size, name and flags of a writable write-through export', async (t) => {
  requireTools('nbdinfo');
  const { port } = await startServer(t, new MemoryBlockDevice(16 * MiB));
  const r = await run('nbdinfo', ['--json', `nbd://127.0.0.1:${port}/vol`]);
  assert.equal(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout);
  assert.equal(info.protocol, 'newstyle-fixed');
  assert.equal(info.structured, true);
  const e = info.exports[0];
  assert.equal(e['export-name'], 'vol');
  assert.equal(e.description, 'test volume');
  assert.equal(e['export-size'], 16 * MiB);
  assert.equal(e.is_read_only, false);
  assert.equal(e.can_flush, true);
  assert.equal(e.can_fua, true);
  assert.equal(e.can_trim, true);
  assert.equal(e.can_zero, true);
  assert.equal(e.can_multi_conn, true);
  assert.equal(e.block_size_minimum, 1);
  assert.equal(e.block_size_preferred, 4096);
  assert.equal(e.block_size_maximum, 32 * MiB);
});

test('nbdinfo sees no TRIM or WRITE_ZEROES on a device that would only write zeroes for them', async (t) => {
  requireTools('nbdinfo');
  const device = await FileBlockDevice.open(join(tempDir(t), 'plain.img'), MiB);
  t.after(() => device.close());
  const { port } = await startServer(t, device);
  const r = await run('nbdinfo', ['--json', `nbd://127.0.0.1:${port}/vol`]);
  assert.equal(r.code, 0, r.stderr);
  const e = JSON.parse(r.stdout).exports[0];
  assert.equal(e.is_read_only, false);
  assert.equal(e.can_flush, true);
  assert.equal(e.can_fua, true);
  assert.equal(e.can_trim, false);
  assert.equal(e.can_zero, false);
  assert.equal(e.can_multi_conn, false, 'a page-cache device is not write-through');
});

test('nbdinfo sees a read-only export as read-only with no write features', async (t) => {
  requireTools('nbdinfo');
  const { port } = await startServer(t, new MemoryBlockDevice(MiB, { readOnly: true }));
  const r = await run('nbdinfo', ['--json', `nbd://127.0.0.1:${port}/`]); // empty name → default export
  assert.equal(r.code, 0, r.stderr);
  const e = JSON.parse(r.stdout).exports[0];
  assert.equal(e['export-size'], MiB);
  assert.equal(e.is_read_only, true);
  assert.equal(e.can_trim, false);
  assert.equal(e.can_zero, false);
  assert.equal(e.can_fua, false);
});

test('nbdinfo --list shows every export through NBD_OPT_LIST', async (t) => {
  requireTools('nbdinfo');
  const { port } = await startServer(t, new MemoryBlockDevice(MiB), {
    exports: [
      { name: 'a', description: 'first', device: new MemoryBlockDevice(MiB) },
      { name: 'b', device: new MemoryBlockDevice(2 * MiB) },
    ],
    defaultExport: 'a',
  });
  const r = await run('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${port}/`]);
  assert.equal(r.code, 0, r.stderr);
  const exports = JSON.parse(r.stdout).exports as { 'export-name': string; 'export-size': number }[];
  assert.deepEqual(
    exports.map((e) => [e['export-name'], e['export-size']]),
    [['a', MiB], ['b', 2 * MiB]],
  );
});

test('qemu-img info reads the virtual size', async (t) => {
  requireTools('qemu-img');
  const { port } = await startServer(t, new MemoryBlockDevice(16 * MiB));
  const r = await run('qemu-img', ['info', '--output=json', `nbd://127.0.0.1:${port}/vol`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout)['virtual-size'], 16 * MiB);
});

test('nbdcopy copies a random image in and back out byte for byte', async (t) => {
  requireTools('nbdcopy');
  const { port, device } = await startServer(t, new MemoryBlockDevice(16 * MiB));
  const dir = tempDir(t);
  const image = randomBytes(16 * MiB);
  writeFileSync(join(dir, 'in.img'), image);
  const uri = `nbd://127.0.0.1:${port}/vol`;
  const copyIn = await run('nbdcopy', [join(dir, 'in.img'), uri]);
  assert.equal(copyIn.code, 0, copyIn.stderr);
  assert.ok(Buffer.from((device as MemoryBlockDevice).bytes).equals(image), 'device holds the image');
  const copyOut = await run('nbdcopy', [uri, join(dir, 'out.img')]);
  assert.equal(copyOut.code, 0, copyOut.stderr);
  assert.ok(readFileSync(join(dir, 'out.img')).equals(image), 'copied out unchanged');
});

test('nbdcopy round-trips through an export on a FileBlockDevice', async (t) => {
  requireTools('nbdcopy');
  const dir = tempDir(t);
  const device = await FileBlockDevice.open(join(dir, 'backing.img'), 8 * MiB);
  t.after(() => device.close());
  const { port } = await startServer(t, device);
  const image = randomBytes(8 * MiB);
  writeFileSync(join(dir, 'in.img'), image);
  const uri = `nbd://127.0.0.1:${port}/vol`;
  assert.equal((await run('nbdcopy', ['--flush', join(dir, 'in.img'), uri])).code, 0);
  assert.equal((await run('nbdcopy', [uri, join(dir, 'out.img')])).code, 0);
  assert.ok(readFileSync(join(dir, 'out.img')).equals(image));
  assert.ok(readFileSync(join(dir, 'backing.img')).equals(image), 'backing file holds the image');
});

interface FioJob {
  error: number;
  read: { io_bytes: number; total_ios: number };
  write: { io_bytes: number; total_ios: number };
}

async function fio(port: number, rw: string, verify: boolean): Promise<{ code: number | null; job: FioJob; stderr: string }> {
  const args = [
    '--name=nbd',
    '--ioengine=nbd',
    `--uri=nbd://127.0.0.1:${port}/vol`,
    `--rw=${rw}`,
    '--bs=4k',
    '--size=16M',
    '--iodepth=16',
    '--output-format=json',
    ...(verify ? ['--verify=crc32c', '--verify_fatal=1'] : []),
  ];
  const r = await run('fio', args);
  // The nbd engine prints "fio: connected to NBD server" before the JSON.
  const json = JSON.parse(r.stdout.slice(r.stdout.indexOf('{')));
  return { code: r.code, job: json.jobs[0], stderr: r.stderr };
}

test('fio randrw with crc32c verification completes with no errors', async (t) => {
  requireTools('fio');
  const { port, server } = await startServer(t, new MemoryBlockDevice(16 * MiB));
  const { code, job, stderr } = await fio(port, 'randrw', true);
  assert.equal(code, 0, stderr);
  assert.equal(job.error, 0);
  assert.ok(job.write.total_ios > 0 && job.read.total_ios > 0, 'both directions did I/O');
  assert.equal(server.stats().errors, 0);
});

test('fio random writes alone complete with no errors', async (t) => {
  requireTools('fio');
  const { port } = await startServer(t, new MemoryBlockDevice(16 * MiB));
  const { code, job, stderr } = await fio(port, 'randwrite', false);
  assert.equal(code, 0, stderr);
  assert.equal(job.error, 0);
  assert.equal(job.write.io_bytes, 16 * MiB);
  assert.equal(job.read.total_ios, 0);
});

test('fio random reads of a read-only export complete with no errors', async (t) => {
  requireTools('fio');
  const { port } = await startServer(t, new MemoryBlockDevice(16 * MiB, { readOnly: true }));
  const { code, job, stderr } = await fio(port, 'randread', false);
  assert.equal(code, 0, stderr);
  assert.equal(job.error, 0);
  assert.equal(job.read.io_bytes, 16 * MiB);
});
