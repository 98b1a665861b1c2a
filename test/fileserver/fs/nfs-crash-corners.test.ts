import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryBlockDevice } from '../../../src/block/memory-device.ts';
import fileserver, { parseFileServerOptions } from '../../../src/functions/fileserver/index.ts';
import { fsck } from '../../../src/functions/fileserver/fs/index.ts';
import { NfsClient } from '../nfs/helpers/nfs-client.ts';

const EXCLUSIVE = 2;
const NFS3ERR_EXIST = 17;

async function serve(t: { after(fn: () => unknown): void }, device: MemoryBlockDevice) {
  const running = await fileserver.start({
    device,
    listen: { host: '127.0.0.1', port: 0 },
    options: parseFileServerOptions({}),
    instance: 'test',
    log: () => {},
  });
  const c = await NfsClient.connect(running.address.port);
  let stopped = false;
  t.after(async () => {
    await c.close();
    if (!stopped) await running.stop();
  });
  return { c, stop: async () => ((stopped = true), await c.close(), await running.stop()) };
}

test('an EXCLUSIVE create retried after a crash finds its own file; another verifier gets EXIST', async (t) => {
  const device = new MemoryBlockDevice(32 << 20);
  const first = await serve(t, device);
  const root = await first.c.root();
  const verifier = Buffer.from('0123abcd', 'latin1');
  const made = await first.c.create(root, 'x', EXCLUSIVE, verifier);
  assert.equal(made.status, 0);
  // Crash right after the reply: the volume as it is now, nothing flushed or closed.
  const crashed = new MemoryBlockDevice(device.size);
  crashed.bytes.set(device.bytes);
  await first.stop();
  assert.deepEqual((await fsck(crashed)).problems, []);

  const second = await serve(t, crashed);
  const root2 = await second.c.root();
  const retried = await second.c.create(root2, 'x', EXCLUSIVE, verifier);
  assert.equal(retried.status, 0, 'the retransmitted CREATE succeeds');
  assert.deepEqual(retried.fh, made.fh, 'with the same file');
  const other = await second.c.create(root2, 'x', EXCLUSIVE, Buffer.from('zzzzzzzz', 'latin1'));
  assert.equal(other.status, NFS3ERR_EXIST);
});

test('a DATA_SYNC WRITE is answered DATA_SYNC and its data survives a crash right after the reply', async (t) => {
  const device = new MemoryBlockDevice(32 << 20);
  const first = await serve(t, device);
  const root = await first.c.root();
  const f = (await first.c.create(root, 'd', 1, { mode: 0o644 })).fh!;
  const data = Buffer.alloc(8192, 0x5a);
  const grow = await first.c.write(f, 0, data, 1);
  assert.equal(grow.status, 0);
  assert.equal(grow.committed, 1, 'DATA_SYNC asked, DATA_SYNC done');
  const over = await first.c.write(f, 4096, Buffer.alloc(4096, 0x33), 1); // in place: no commit of its own
  assert.equal(over.committed, 1);
  const crashed = new MemoryBlockDevice(device.size);
  crashed.bytes.set(device.bytes);
  await first.stop();
  const second = await serve(t, crashed);
  const g = (await second.c.lookup(await second.c.root(), 'd')).fh!;
  const r = await second.c.read(g, 0, 8192);
  assert.deepEqual(r.data, Buffer.concat([Buffer.alloc(4096, 0x5a), Buffer.alloc(4096, 0x33)]));
});
