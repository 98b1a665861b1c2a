import assert from 'node:assert/strict';
import { test } from 'node:test';
import fileserver, { parseFileServerOptions } from '../../../src/functions/fileserver/index.ts';
import { fsck } from '../../../src/functions/fileserver/fs/index.ts';
import { BLOCK_SIZE, decodeSuperblock } from '../../../src/functions/fileserver/fs/superblock.ts';
import { NfsClient } from '../nfs/helpers/nfs-client.ts';
import { FaultDevice } from './fault-device.ts';

const NFS3ERR_IO = 5;
const NFS3ERR_NOSPC = 28;

test('an NFS client gets NFS3ERR_IO and NFS3ERR_NOSPC for writes the device fails, and the filesystem stays clean', async (t) => {
  const device = new FaultDevice(32 << 20);
  const running = await fileserver.start({
    device,
    listen: { host: '127.0.0.1', port: 0 },
    options: parseFileServerOptions({}),
    instance: 'test',
    log: () => {},
  });
  let stopped = false;
  t.after(() => (stopped ? undefined : running.stop()));
  const c = await NfsClient.connect(running.address.port);
  t.after(() => c.close());
  const dataFrom = decodeSuperblock(device.mem.bytes.subarray(0, BLOCK_SIZE), device.size).dataStart * BLOCK_SIZE;
  const root = await c.root();
  const data = Buffer.alloc(128 * 1024, 0x6b);

  // FILE_SYNC write: the data write (one device write for the 32 consecutive blocks) fails with EIO.
  const f = (await c.create(root, 'f', 1, { mode: 0o644 })).fh!;
  device.failWrites(dataFrom, device.size, { kind: 'EIO' });
  assert.equal((await c.write(f, 0, data, 2)).status, NFS3ERR_IO);
  device.clearFaults();
  assert.equal(Number((await c.getattr(f)).attr!.size), 0, 'nothing of the failed write is visible');
  assert.equal((await c.write(f, 0, data, 2)).status, 0, 'the next write works');
  assert.deepEqual((await c.read(f, 0, data.length)).data, data);

  // A small UNSTABLE write (buffered), then COMMIT: the backing store is full at writeback.
  const g = (await c.create(root, 'g', 1, { mode: 0o644 })).fh!;
  assert.equal((await c.write(g, 0, data.subarray(0, 32 * 1024), 0)).status, 0);
  device.failWrites(dataFrom, device.size, { kind: 'ENOSPC' });
  assert.equal((await c.commit(g)).status, NFS3ERR_NOSPC);
  device.clearFaults();
  assert.equal(Number((await c.getattr(g)).attr!.size), 0);
  assert.equal((await c.commit(g)).status, 0, 'the loss is reported once');
  assert.equal(device.failed, 2);

  // A large UNSTABLE write goes to the device at once: its failure is the WRITE's reply.
  const h = (await c.create(root, 'h', 1, { mode: 0o644 })).fh!;
  device.failWrites(dataFrom, device.size, { kind: 'ENOSPC' });
  assert.equal((await c.write(h, 0, data, 0)).status, NFS3ERR_NOSPC);
  device.clearFaults();
  assert.equal(Number((await c.getattr(h)).attr!.size), 0);
  assert.equal((await c.commit(h)).status, 0, 'nothing acknowledged was lost');
  assert.equal(device.failed, 3);

  stopped = true;
  await running.stop();
  assert.deepEqual((await fsck(device.mem)).problems, []);
});
