import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import nbdExport from '../../src/functions/nbd-export.ts';
import { NbdClient } from '../../src/nbd/client.ts';
import { MiB } from './helpers.ts';

class CountingDevice extends MemoryBlockDevice {
  flushes = 0;
  override async flush(): Promise<void> {
    this.flushes++;
  }
}

test('nbd-export serves ctx.device under the configured name and as the default', async (t) => {
  const device = new CountingDevice(2 * MiB);
  const fn = await nbdExport.start({
    device,
    listen: { host: '127.0.0.1', port: 0 },
    options: nbdExport.parseOptions!({ exportName: 'disk' }),
    instance: 'test',
    log: () => {},
  });
  t.after(() => fn.stop());
  assert.equal(fn.address.host, '127.0.0.1');
  assert.ok(fn.address.port > 0);
  for (const exportName of ['disk', '']) {
    const client = await NbdClient.connect({ ...fn.address, exportName });
    assert.equal(client.size, 2 * MiB);
    await client.pwrite(Buffer.from(exportName || 'default'), 0);
    await client.close();
  }
  assert.equal(Buffer.from(device.bytes.subarray(0, 7)).toString(), 'default');
  assert.equal(fn.stats().writes, 2);
  await fn.stop();
  assert.equal(device.flushes, 1, 'stop() makes the data durable');
});

test("nbd-export's export name defaults to 'export'", async (t) => {
  const fn = await nbdExport.start({
    device: new MemoryBlockDevice(MiB),
    listen: { host: '127.0.0.1', port: 0 },
    options: nbdExport.parseOptions!({}),
    instance: 'test',
    log: () => {},
  });
  t.after(() => fn.stop());
  const client = await NbdClient.connect({ ...fn.address, exportName: 'export' });
  assert.equal(client.size, MiB);
  await client.close();
});

test('nbd-export rejects bad options naming the field', () => {
  assert.throws(() => nbdExport.parseOptions!({ exportName: 42 }), /exportName must be a non-empty string/);
  assert.throws(() => nbdExport.parseOptions!({ exportName: '' }), /exportName must be a non-empty string/);
  assert.throws(() => nbdExport.parseOptions!({ exprtName: 'x' }), /option exprtName is unknown/);
});
