import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { FileBlockDevice } from '../../src/block/file-device.ts';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { NbdServer } from '../../src/nbd/server.ts';
import { VirtualVolume } from '../../src/storage/virtual-volume.ts';
import type { BlockDevice } from '../../src/block/types.ts';
import { ioError, StorvisorError } from '../../src/util/errors.ts';
import { tempDir } from '../helpers/tmp.ts';

/** VirtualVolume directly: a provider's NBD export as a controller volume, surviving the provider's restart. */
const MiB = 1 << 20;
const code = (c: string) => (e: unknown) => e instanceof StorvisorError && e.code === c;

async function provider(device: BlockDevice, port = 0): Promise<{ server: NbdServer; port: number }> {
  const server = new NbdServer({ exports: [{ name: 'dd', device }], defaultExport: 'dd' });
  const a = await server.listen('127.0.0.1', port);
  return { server, port: a.port };
}

async function mounted(t: { after: (fn: () => unknown) => void }, device: BlockDevice) {
  const p = await provider(device);
  t.after(() => p.server.close());
  const vv = await VirtualVolume.connect('virt', { host: '127.0.0.1', port: p.port, exportName: 'dd' });
  t.after(() => vv.close());
  return { vv, ...p };
}

test('reads and writes pass through to the provider, and size and flags are the provider\'s', async (t) => {
  const device = new MemoryBlockDevice(2 * MiB);
  const { vv } = await mounted(t, device);
  assert.equal(vv.size, 2 * MiB);
  assert.equal(vv.readOnly, false);
  assert.equal(vv.writeThrough, false, 'an NBD client cannot know the provider caches nothing');
  await vv.pwrite(Buffer.alloc(4096, 0x3c), 8192, { fua: true });
  assert.ok(device.bytes.subarray(8192, 12288).every((b) => b === 0x3c));
  const back = Buffer.alloc(4096);
  await vv.pread(back, 8192);
  assert.ok(back.every((b) => b === 0x3c));
  await vv.zero(8192, 4096);
  assert.ok(device.bytes.subarray(8192, 12288).every((b) => b === 0));
  await vv.flush();
});

test('the capabilities are what the provider offers: no TRIM or WRITE_ZEROES over a plain file device', async (t) => {
  const file = await FileBlockDevice.open(join(tempDir(t), 'p.img'), MiB);
  t.after(() => file.close());
  const { vv } = await mounted(t, file);
  assert.equal(vv.capabilities.trim, false);
  assert.equal(vv.capabilities.zeroes, false);
  const mem = await mounted(t, new MemoryBlockDevice(MiB));
  assert.equal(mem.vv.capabilities.trim, true);
  assert.equal(mem.vv.capabilities.zeroes, true);
});

test('a request out of range is refused with ERANGE before anything is sent', async (t) => {
  const { vv, server } = await mounted(t, new MemoryBlockDevice(MiB));
  const before = server.stats();
  await assert.rejects(vv.pread(Buffer.alloc(512), MiB - 511), code('SV_ERR_OUT_OF_RANGE'));
  await assert.rejects(vv.zero(MiB, 1), code('SV_ERR_OUT_OF_RANGE'));
  assert.deepEqual(server.stats(), before);
});

test('when the provider restarts on the same port, the next request reconnects once and succeeds', async (t) => {
  const device = new MemoryBlockDevice(MiB);
  device.bytes.fill(0x11, 0, 4096);
  const first = await provider(device);
  const vv = await VirtualVolume.connect('virt', { host: '127.0.0.1', port: first.port, exportName: 'dd' });
  t.after(() => vv.close());
  await first.server.close();
  const second = await provider(device, first.port);
  t.after(() => second.server.close());
  const back = Buffer.alloc(4096);
  await vv.pread(back, 0);
  assert.ok(back.every((b) => b === 0x11));
  assert.equal(vv.counters.reconnects, 1);
});

test('a provider error other than a lost connection is passed on as is, without reconnecting', async (t) => {
  const inner = new MemoryBlockDevice(MiB);
  const failing: BlockDevice = {
    size: inner.size, blockSize: 4096, readOnly: false, writeThrough: true,
    pread: () => Promise.reject(ioError('disk on fire')),
    pwrite: (b, o) => inner.pwrite(b, o), flush: () => inner.flush(),
    trim: (o, l) => inner.trim(o, l), zero: (o, l) => inner.zero(o, l),
  };
  const { vv } = await mounted(t, failing);
  await assert.rejects(vv.pread(Buffer.alloc(512), 0), (e: unknown) => e instanceof StorvisorError && e.errno === 'EIO');
  assert.equal(vv.counters.reconnects, 0);
});

test('after close every request is refused with ESHUTDOWN, and closing twice is fine', async (t) => {
  const { vv } = await mounted(t, new MemoryBlockDevice(MiB));
  await vv.close();
  await vv.close();
  await assert.rejects(vv.pread(Buffer.alloc(512), 0), code('SV_ERR_SHUT_DOWN'));
  await assert.rejects(vv.flush(), code('SV_ERR_SHUT_DOWN'));
});

test('closing after the provider is gone does not throw: the provider keeps its own data', async (t) => {
  const p = await provider(new MemoryBlockDevice(MiB));
  const vv = await VirtualVolume.connect('virt', { host: '127.0.0.1', port: p.port, exportName: 'dd' });
  await p.server.close();
  await vv.close();
  assert.equal(vv.counters.closeErrors, 0);
});
