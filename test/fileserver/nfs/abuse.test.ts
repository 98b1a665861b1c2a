/**
 * Bad input from one client (malformed records, bad XDR, forged and stale
 * handles, oversized READ/WRITE, path escapes) gets the right error and changes
 * nothing, while a second client's reads and writes carry on correctly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NfsClient, NFS } from './helpers/nfs-client.ts';
import { RpcClient } from './helpers/rpc-client.ts';
import { startMemoryServer } from './helpers/server.ts';

test('a misbehaving client gets exact errors while a well-behaved client keeps working', async (t) => {
  const { server, port } = await startMemoryServer({ ioMax: 64 * 1024 });
  const good = await NfsClient.connect(port);
  const bad = await NfsClient.connect(port);
  t.after(async () => {
    await Promise.all([good.close(), bad.close()]);
    await server.stop();
  });
  const root = await good.root();
  const fh = (await good.create(root, 'data', 1, { mode: 0o644 })).fh!;
  assert.equal((await good.write(fh, 0, Buffer.alloc(64 * 1024), 2)).status, 0);

  let stop = false;
  let goodOps = 0;
  const worker = (async () => {
    for (let i = 0; !stop || goodOps < 50; i++) {
      const chunk = Buffer.alloc(4096, i & 0xff);
      const off = (i % 16) * 4096;
      assert.equal((await good.write(fh, off, chunk, 2)).status, 0);
      assert.deepEqual((await good.read(fh, off, 4096)).data, chunk);
      goodOps++;
    }
  })();

  const badRoot = await bad.root();
  const garbage = await bad.rpc.call(NFS, 3, 6, (e) => e.opaque(badRoot).u32(0)); // READ cut short
  assert.equal(garbage.stat, 4, 'GARBAGE_ARGS');
  const forged = Buffer.from(fh);
  forged[20]! ^= 0x55;
  assert.equal((await bad.write(forged, 0, Buffer.from('evil'))).status, 10001, 'BADHANDLE');
  assert.equal((await bad.write(fh, 0, Buffer.alloc(64 * 1024 + 1))).status, 22, 'oversized WRITE is INVAL');
  assert.equal((await bad.read(fh, 0, 1 << 30)).count, 64 * 1024, 'oversized READ is clamped');
  assert.equal((await bad.create(badRoot, '../../etc/passwd', 0)).status, 22, 'path escape is INVAL');
  assert.equal((await bad.lookup(badRoot, '..')).fh!.equals(badRoot), true);
  assert.equal((await bad.read(fh, 2n ** 63n, 10)).eof, true, 'a read at a huge offset is an empty eof');
  assert.equal((await bad.write(fh, 2n ** 63n, Buffer.from('x'))).status, 27, 'a write at a huge offset is FBIG');
  const raw = await RpcClient.connect(port);
  raw.writeRaw(Buffer.from([0xff, 0xff, 0xff, 0xff])); // a 2 GiB fragment
  await raw.closed;

  stop = true;
  await worker;
  assert.ok(goodOps >= 50);
  assert.equal((await good.getattr(fh)).attr!.size, 64n * 1024n, 'nothing the bad client sent changed the file');
  assert.equal((await good.lookup(root, 'passwd')).status, 2);
});

test('a caller with AUTH_NONE cannot create files under the default export (ACCES)', async (t) => {
  const { server, port } = await startMemoryServer();
  const c = await NfsClient.connect(port);
  t.after(async () => {
    await c.close();
    await server.stop();
  });
  const root = await c.root();
  c.cred = { flavor: 0 };
  const r = await c.create(root, 'anon', 0);
  assert.equal(r.status, 13);
});
