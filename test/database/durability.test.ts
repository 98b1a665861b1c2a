import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import type { BlockDevice, WriteFlags } from '../../src/block/types.ts';
import { RespClient, startDatabase, type Value } from './helpers.ts';

/**
 * A device whose durable writes can be held: each FUA pwrite waits until the
 * test releases it, so a test can look at the server while a flush is in flight.
 */
class GatedDevice implements BlockDevice {
  readonly inner = new MemoryBlockDevice(4 * 1024 * 1024);
  readonly size = this.inner.size;
  readonly blockSize = this.inner.blockSize;
  readonly readOnly = false;
  readonly writeThrough = false;
  gated = false;
  durableWrites = 0;
  private held: (() => void)[] = [];
  private arrivals: (() => void)[] = [];

  pread(buf: Uint8Array, offset: number) {
    return this.inner.pread(buf, offset);
  }
  async pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags) {
    await this.inner.pwrite(buf, offset);
    if (flags?.fua) {
      this.durableWrites++;
      if (this.gated) {
        for (const a of this.arrivals.splice(0)) a();
        await new Promise<void>((resolve) => this.held.push(resolve));
      }
    }
  }
  flush() {
    return Promise.resolve();
  }
  trim(offset: number, length: number) {
    return this.inner.trim(offset, length);
  }
  zero(offset: number, length: number) {
    return this.inner.zero(offset, length);
  }
  /** Resolves when a durable write is being held. */
  nextHeldWrite(): Promise<void> {
    return new Promise((resolve) => this.arrivals.push(resolve));
  }
  release(): void {
    for (const r of this.held.splice(0)) r();
  }
}

test('in always mode a write is not answered until its record is durable', async (t) => {
  const device = new GatedDevice();
  const { port } = await startDatabase(t, { device });
  const c = await RespClient.connect(port);
  t.after(() => c.close());
  device.gated = true;
  const held = device.nextHeldWrite();
  let answered: Value | undefined;
  const reply = c.call('SET', 'k', 'v').then((r) => (answered = r));
  await held;
  // A PING pipelined behind the write must not overtake it either.
  const ping = c.call('PING');
  // A round trip on another connection gives the server every chance to answer early.
  const other = await RespClient.connect(port);
  t.after(() => other.close());
  assert.deepEqual(await other.call('GET', 'k'), 'v');
  assert.equal(answered, undefined);
  device.gated = false;
  device.release();
  assert.deepEqual(await reply, { status: 'OK' });
  assert.deepEqual(await ping, { status: 'PONG' });
});

test('writes from many clients that arrive during a flush share the next one (group commit)', async (t) => {
  const device = new GatedDevice();
  const { port, fn } = await startDatabase(t, { device });
  const clients = await Promise.all(Array.from({ length: 20 }, () => RespClient.connect(port)));
  t.after(() => clients.forEach((c) => c.close()));
  device.gated = true;
  const before = device.durableWrites;
  const held = device.nextHeldWrite();
  const first = clients[0].call('SET', 'first', '1');
  await held;
  const commandsBefore = fn.stats().commands;
  const rest = clients.slice(1).map((c, i) => c.call('INCR', `counter${i % 3}`));
  // Wait until the server has executed all 19 (they queue behind the held flush).
  while (fn.stats().commands < commandsBefore + 19) await new Promise((r) => setImmediate(r));
  device.gated = false;
  device.release();
  assert.deepEqual(await first, { status: 'OK' });
  const replies = (await Promise.all(rest)) as number[];
  assert.deepEqual(replies.sort((a, b) => a - b), [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 7]);
  assert.equal(device.durableWrites - before, 2, 'one flush for the first write, one shared by the other 19');
});

test('a client that disconnects while its write waits for the flush disturbs nobody', async (t) => {
  const device = new GatedDevice();
  const { port } = await startDatabase(t, { device });
  const quitter = await RespClient.connect(port);
  const other = await RespClient.connect(port);
  t.after(() => other.close());
  device.gated = true;
  const held = device.nextHeldWrite();
  void quitter.call('SET', 'orphan', 'x').catch(() => {});
  await held;
  quitter.close();
  await quitter.closed;
  device.gated = false;
  device.release();
  assert.deepEqual(await other.call('GET', 'orphan'), 'x');
});
