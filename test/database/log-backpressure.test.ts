/**
 * The log's memory under a client that pipelines large SETs faster than the
 * device writes them (everysec acknowledges before the write): the client is
 * back-pressured (its socket is not read) instead of the queue growing, no
 * write is lost, and every command gets its reply.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import type { WriteFlags } from '../../src/block/types.ts';
import { Database } from '../../src/functions/database/database.ts';
import { CARRY_MAX_BYTES, QUEUE_MAX_BYTES } from '../../src/functions/database/log/writer.ts';
import { RespServer } from '../../src/functions/database/server.ts';
import { open, waitFor, within } from '../net/helpers.ts';
import { encodeCommand } from './helpers.ts';

const MiB = 1 << 20;

/**
 * A memory device whose writes wait for `gate` (a stalled disk) and then take
 * `delayMs` each while it is above 0 (a slow one); `onWrite` runs as each ends.
 */
class SlowDevice extends MemoryBlockDevice {
  onWrite: (() => void) | null = null;
  gate: Promise<void> | null = null;
  constructor(
    size: number,
    public delayMs: number,
  ) {
    super(size);
  }

  override async pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags): Promise<void> {
    if (this.gate !== null) await this.gate;
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    this.onWrite?.();
    await super.pwrite(buf, offset, flags);
  }
}

async function openDatabase(device: MemoryBlockDevice, onDurable: (seq: number) => void = () => {}): Promise<Database> {
  return Database.open(device, { appendfsync: 'everysec', log: () => {}, onDurable, onFailure: () => {} });
}

test('a client pipelining 48 MiB of SETs to a slow device in everysec is held to the log queue bound, loses nothing and gets every reply', async (t) => {
  const device = new SlowDevice(256 * MiB, 20);
  let server: RespServer | null = null;
  const db = await Database.open(device, {
    appendfsync: 'everysec',
    log: () => {},
    onDurable: (seq) => server?.durable(seq),
    onFailure: (err) => server?.durable(db.writer.durableSeq, err),
    onRoom: () => server?.roomFreed(),
  });
  server = new RespServer(db, { db, appendfsync: 'everysec', log: () => {} });
  const srv = server;
  const { port } = await srv.listen('127.0.0.1', 0);
  let stopped = false;
  t.after(async () => {
    if (!stopped) await srv.close();
  });
  // What the log holds for records not yet written, at its peak: just before each write ends.
  let peak = 0;
  let writes = 0;
  device.onWrite = () => {
    writes++;
    peak = Math.max(peak, db.writer.pendingBytes);
  };

  const valueBytes = 256 * 1024;
  const count = 192; // 48 MiB: three times the queue bound
  const keys = 48;
  const value = (i: number) => Buffer.alloc(valueBytes, 0x41 + (i % 26));
  const client = await open(port);
  let received = 0;
  let text = '';
  const replies = new Promise<void>((resolve) => {
    client.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      const n = text.split('+OK\r\n');
      received += n.length - 1;
      text = n[n.length - 1]!;
      if (received >= count) resolve();
    });
  });
  let open_: () => void = () => {};
  device.gate = new Promise<void>((resolve) => (open_ = resolve));
  for (let i = 0; i < count; i++) client.write(encodeCommand(['SET', `k${i % keys}`, value(i)]));
  // The disk stalls: the queue fills to its bound, then the client is held (its socket not read).
  await waitFor(() => srv.blockedCount === 1, 'the client to be held back', 30_000);
  const queued = db.writer.queueBytes;
  assert.ok(queued >= QUEUE_MAX_BYTES && queued <= QUEUE_MAX_BYTES + valueBytes + 64, `queued ${queued} bytes when the client was held`);
  assert.ok(received < count);
  device.gate = null;
  open_();
  await within(replies, 60_000, `${count} replies`);
  assert.equal(received, count);
  assert.equal(text, '', 'nothing but +OK came back');
  // 48 MiB in batches of at most the bound (plus a record) is at least three writes.
  assert.ok(writes >= 3, `the log wrote in several batches (${writes})`);
  // The batch in flight and the queue behind it, each at most one record past the bound (and,
  // when the 48 MiB started a compaction, the carry its flip writes: bounded on its own).
  const recordBound = valueBytes + 64;
  assert.ok(peak <= 2 * (QUEUE_MAX_BYTES + recordBound) + CARRY_MAX_BYTES, `pending log bytes peaked at ${peak}`);
  // The bound was reached (the client was held back), not merely never approached.
  assert.ok(peak >= QUEUE_MAX_BYTES, `pending log bytes peaked at ${peak}`);
  t.diagnostic(`pending log bytes peaked at ${peak} over ${writes} writes`);

  client.destroy();
  // The compaction the 48 MiB started need not crawl at the slow device's pace.
  device.delayMs = 0;
  await srv.close();
  await db.close();
  stopped = true;
  // Every acknowledged SET is on the volume: the last value of each key comes back.
  const again = await openDatabase(device);
  t.after(() => again.close());
  assert.equal(again.ks.size, keys);
  for (let k = 0; k < keys; k++) {
    const last = count - keys + k;
    const e = again.ks.get(`k${k}`);
    assert.ok(e !== undefined && e.type === 'string');
    assert.ok((e.data as Buffer).equals(value(last)), `k${k} holds the value of SET ${last}`);
  }
});
