import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, rm, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileBlockDevice } from '../../src/block/file-device.ts';
import dedup, { type RunningDedup } from '../../src/functions/dedup/index.ts';
import type { DedupVolume } from '../../src/functions/dedup/volume.ts';
import { requireTools } from '../helpers/tools.ts';

const run = promisify(execFile);
const MiB = 1 << 20;


async function serve(t: { after: (fn: () => Promise<void>) => void }, logicalSize: number, backingSize: number) {
  const dir = await mkdtemp(join(tmpdir(), 'sv-dedup-nbd-'));
  const device = await FileBlockDevice.open(join(dir, 'backing.img'), backingSize);
  const running = (await dedup.start({
    device,
    listen: { host: '127.0.0.1', port: 0 },
    options: dedup.parseOptions!({ logicalSize, compression: 'lz4', dedup: true }),
    instance: 'test',
    log: () => {},
  })) as RunningDedup;
  t.after(async () => {
    await running.stop();
    await device.close();
    await rm(dir, { recursive: true, force: true });
  });
  const uri = `nbd://127.0.0.1:${running.address.port}/dedup`;
  return { dir, running, uri, volume: running.device as DedupVolume };
}

const fio = async (uri: string, args: string[]) => {
  const { stdout } = await run('fio', ['--ioengine=nbd', `--uri=${uri}`, '--bs=4k', '--size=16m', '--iodepth=8', '--randseed=7', '--output-format=json', ...args]);
  return JSON.parse(stdout.slice(stdout.indexOf('{'))).jobs[0]; // fio prints connection lines first
};

test('fio verifies crc32c through NBD on the dedup+compress volume', async (t) => {
  requireTools('fio');
  const { uri, volume } = await serve(t, 64 * MiB, 64 * MiB);
  const job = await fio(uri, [
    '--name=dedup-verify',
    '--rw=randwrite',
    '--verify=crc32c',
    '--do_verify=1',
    '--verify_fatal=1',
    '--dedupe_percentage=50',
    '--buffer_compress_percentage=70',
  ]);
  assert.equal(job.error, 0);
  assert.equal(job.write.io_bytes, 16 * MiB);
  assert.ok(job.read.io_bytes >= 16 * MiB, 'fio read everything back to verify it');
  assert.deepEqual(await volume.check(), { ok: true, problems: [] });
});

test('fio data with dedupe_percentage=50 is stored about half as many times', async (t) => {
  requireTools('fio');
  const { uri, volume } = await serve(t, 64 * MiB, 64 * MiB);
  // No verify here: fio's verify headers would make every block unique.
  const job = await fio(uri, ['--name=dedup-ratio', '--rw=write', '--dedupe_percentage=50', '--buffer_compress_percentage=0']);
  assert.equal(job.error, 0);
  await volume.flush();
  const s = volume.stats();
  assert.equal(s.mappedBlocks, 4096);
  assert.ok(s.dedupRatio! > 1.8 && s.dedupRatio! < 2.2, `dedup ratio ${s.dedupRatio}`);
  assert.deepEqual(await volume.check(), { ok: true, problems: [] });
});

test('nbdcopy of a real ext4 disk image in and out is byte-identical', async (t) => {
  requireTools('nbdcopy', 'mke2fs');
  const { dir, uri, volume } = await serve(t, 48 * MiB, 48 * MiB);
  const image = join(dir, 'disk.img');
  const back = join(dir, 'out.img');
  const content = new URL('../../node_modules/typescript/lib', import.meta.url).pathname;
  await run('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', content, image, '40M']);
  await run('nbdcopy', [image, uri]);
  await run('nbdcopy', [uri, back]);
  const [a, b] = await Promise.all([readFile(image), readFile(back)]);
  assert.equal(b.length, 48 * MiB);
  assert.ok(a.equals(b.subarray(0, a.length)), 'the copied-out image equals the original');
  assert.ok(b.subarray(a.length).every((x) => x === 0));
  const s = volume.stats();
  assert.ok(s.physicalBytesUsed! < s.logicalBytesUsed!, `stored ${s.physicalBytesUsed} bytes for ${s.logicalBytesUsed} logical`);
  assert.deepEqual(await volume.check(), { ok: true, problems: [] });
});
