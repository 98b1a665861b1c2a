import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { FileBlockDevice } from '../../src/block/file-device.ts';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { capabilitiesOf } from '../../src/block/device.ts';
import type { BlockDevice } from '../../src/block/types.ts';
import { StorvisorError } from '../../src/util/errors.ts';
import { tempDir } from '../helpers/tmp.ts';

const code = (c: string) => (e: unknown) => e instanceof StorvisorError && e.code === c;
const SIZE = 64 * 1024;

async function devices(t: { after: (fn: () => unknown) => void }): Promise<Array<[string, BlockDevice & { close(): unknown }]>> {
  const file = await FileBlockDevice.open(join(tempDir(t), 'dev.img'), SIZE);
  t.after(() => file.close());
  return [
    ['memory', new MemoryBlockDevice(SIZE)],
    ['file', file],
  ];
}

test('every device refuses a request that ends past its size with ERANGE, and one exactly at the end is fine', async (t) => {
  for (const [name, d] of await devices(t)) {
    await d.pread(new Uint8Array(512), SIZE - 512);
    await assert.rejects(d.pread(new Uint8Array(512), SIZE - 511), code('SV_ERR_OUT_OF_RANGE'), name);
    await assert.rejects(d.pwrite(new Uint8Array(1), SIZE), code('SV_ERR_OUT_OF_RANGE'), name);
    await assert.rejects(d.zero(0, SIZE + 1), code('SV_ERR_OUT_OF_RANGE'), name);
    await assert.rejects(d.trim(SIZE, 1), code('SV_ERR_OUT_OF_RANGE'), name);
  }
});

test('every device checks the length too, not only the offset (negative, fractional, unsafe)', async (t) => {
  for (const [name, d] of await devices(t)) {
    await assert.rejects(d.zero(0, -1), code('SV_ERR_OUT_OF_RANGE'), name);
    await assert.rejects(d.trim(0, 0.5), code('SV_ERR_OUT_OF_RANGE'), name);
    await assert.rejects(d.zero(0, 2 ** 60), code('SV_ERR_OUT_OF_RANGE'), name);
    await assert.rejects(d.pread(new Uint8Array(1), -1), code('SV_ERR_OUT_OF_RANGE'), name);
    await assert.rejects(d.pread(new Uint8Array(1), 1.5), code('SV_ERR_OUT_OF_RANGE'), name);
  }
});

test('a read-only device refuses every write kind with EROFS and touches nothing', async () => {
  const d = new MemoryBlockDevice(SIZE, { readOnly: true });
  d.bytes.fill(7);
  await assert.rejects(d.pwrite(new Uint8Array(8), 0), code('SV_ERR_READ_ONLY'));
  await assert.rejects(d.zero(0, 8), code('SV_ERR_READ_ONLY'));
  await assert.rejects(d.trim(0, 8), code('SV_ERR_READ_ONLY'));
  assert.ok(d.bytes.every((b) => b === 7));
  await d.pread(new Uint8Array(8), 0);
});

test('a closed device refuses every request with ESHUTDOWN', async (t) => {
  for (const [name, d] of await devices(t)) {
    await d.close();
    await assert.rejects(d.pread(new Uint8Array(8), 0), code('SV_ERR_SHUT_DOWN'), name);
    await assert.rejects(d.pwrite(new Uint8Array(8), 0), code('SV_ERR_SHUT_DOWN'), name);
    await assert.rejects(d.flush(), code('SV_ERR_SHUT_DOWN'), name);
    await assert.rejects(d.zero(0, 8), code('SV_ERR_SHUT_DOWN'), name);
  }
});

test('the closed check comes before the range check: a closed device never reports ERANGE', async () => {
  const d = new MemoryBlockDevice(SIZE);
  d.close();
  await assert.rejects(d.pread(new Uint8Array(8), SIZE), code('SV_ERR_SHUT_DOWN'));
});

test('a file device offers neither TRIM nor WRITE_ZEROES as its own, memory offers both', async (t) => {
  const [[, memory], [, file]] = await devices(t);
  assert.deepEqual(capabilitiesOf(memory!), { trim: true, zeroes: true, flush: true, fua: true, fastRead: false });
  assert.deepEqual(capabilitiesOf(file!), { trim: false, zeroes: false, flush: true, fua: true, fastRead: false });
});

test('a device that declares no capabilities is taken to do everything the interface has', () => {
  const m = new MemoryBlockDevice(SIZE);
  const plain: BlockDevice = {
    size: SIZE, blockSize: 4096, readOnly: false, writeThrough: true,
    pread: (b, o) => m.pread(b, o), pwrite: (b, o) => m.pwrite(b, o), flush: () => m.flush(),
    trim: (o, l) => m.trim(o, l), zero: (o, l) => m.zero(o, l),
  };
  assert.deepEqual(capabilitiesOf(plain), { trim: true, zeroes: true, flush: true, fua: true, fastRead: false });
});
