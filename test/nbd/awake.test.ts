import { test } from 'node:test';
import assert from 'node:assert/strict';

/**
 * The NBD server's stay-awake (src/nbd/awake.ts) is asked to spin only after
 * a reply that leaves nothing else in flight on its connection: at QD1 after
 * every reply, at depth only once the last one goes. The budget is read when
 * the module loads, so it is set before the imports (each test file runs in
 * its own process).
 */
process.env.STORVISOR_NBD_AWAKE_US = '150';
const { loopAwake } = await import('../../src/nbd/awake.ts');
const { MemoryBlockDevice } = await import('../../src/block/memory-device.ts');
const { NbdServer } = await import('../../src/nbd/server.ts');
const { NbdClient } = await import('../../src/nbd/client.ts');

/** A memory device whose reads wait at a gate until `open()`. */
class GatedDevice extends MemoryBlockDevice {
  waiting = 0;
  private gate: Promise<void> | null = null;
  private release: () => void = () => {};
  shut(): void {
    this.gate = new Promise((r) => (this.release = r));
  }
  open(): void {
    this.gate = null;
    this.release();
  }
  override async pread(buf: Uint8Array, offset: number): Promise<void> {
    if (this.gate) {
      this.waiting++;
      await this.gate;
    }
    return super.pread(buf, offset);
  }
}

test('the NBD server asks to stay awake after every reply at QD1, and only after the last of a batch at depth', async (t) => {
  assert.ok(loopAwake, 'STORVISOR_NBD_AWAKE_US=150 makes a stay-awake');
  const device = new GatedDevice(1 << 20);
  const server = new NbdServer({ exports: [{ name: 'vol', description: 'awake', device }], defaultExport: 'vol', log: () => {} });
  const { port } = await server.listen('127.0.0.1', 0);
  const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: 'vol' });
  t.after(async () => {
    await client.close();
    await server.close();
  });
  let asked = 0;
  const replied = loopAwake.replied.bind(loopAwake);
  loopAwake.replied = () => {
    asked++;
    replied();
  };
  t.after(() => {
    loopAwake.replied = replied;
  });

  for (let i = 0; i < 10; i++) await client.pread(Buffer.alloc(4096), i * 4096);
  assert.equal(asked, 10, 'QD1: every reply leaves nothing in flight');

  asked = 0;
  device.shut();
  const reads = Array.from({ length: 32 }, (_, i) => client.pread(Buffer.alloc(4096), i * 4096));
  const deadline = Date.now() + 10_000;
  while (device.waiting < 32) {
    assert.ok(Date.now() < deadline, `only ${device.waiting} of 32 reads reached the device`);
    await new Promise((r) => setImmediate(r));
  }
  device.open();
  await Promise.all(reads);
  assert.equal(asked, 1, '32 in flight: only the last reply asks');
});
