import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { NfsClient, MOUNT, PMAP, NFS } from './helpers/nfs-client.ts';
import { RpcClient } from './helpers/rpc-client.ts';
import { startMemoryServer } from './helpers/server.ts';

async function setup(t: TestContext, opts: Parameters<typeof startMemoryServer>[0] = {}) {
  const s = await startMemoryServer(opts);
  const c = await NfsClient.connect(s.port);
  t.after(async () => {
    await c.close();
    await s.server.stop();
  });
  return { ...s, c };
}

test('MNT of the export returns the root handle and AUTH_SYS only (AUTH_NONE is refused by default)', async (t) => {
  const { c } = await setup(t);
  const m = await c.mount('/export');
  assert.equal(m.status, 0);
  assert.deepEqual(m.flavors, [1]);
  assert.equal((await c.getattr(m.fh!)).attr!.type, 2);
  assert.deepEqual((await c.mount('/export/')).fh, m.fh, 'a trailing slash names the same export');
});

test('MNT of a path outside the export is NOENT; of a sub-directory returns its handle', async (t) => {
  const { c } = await setup(t);
  assert.equal((await c.mount('/etc')).status, 2);
  assert.equal((await c.mount('/exportx')).status, 2);
  const root = await c.root();
  const sub = (await c.mkdir(root, 'sub')).fh!;
  assert.deepEqual((await c.mount('/export/sub')).fh, sub);
  assert.equal((await c.mount('/export/../etc')).status, 22);
  await c.create(root, 'file', 0);
  assert.equal((await c.mount('/export/file')).status, 20);
  assert.equal((await c.mount('/export/nothing')).status, 2);
});

test('MNT of a path over MNTPATHLEN is NAMETOOLONG', async (t) => {
  const { c } = await setup(t);
  assert.equal((await c.mount('/export/' + 'a'.repeat(1100))).status, 63);
});

test('DUMP lists mounts; UMNT and UMNTALL remove them', async (t) => {
  const { c } = await setup(t);
  const dump = async () => {
    const d = (await c.rpc.call(MOUNT, 3, 2)).body;
    const list: string[] = [];
    while (d.bool()) list.push(`${d.string(255)}:${d.string(1024)}`);
    return list;
  };
  await c.mount('/export');
  await c.mkdir(await c.root(), 'sub');
  await c.mount('/export/sub');
  assert.deepEqual(await dump(), ['127.0.0.1:/export', '127.0.0.1:/export/sub']);
  await c.rpc.call(MOUNT, 3, 3, (e) => e.string('/export'));
  assert.deepEqual(await dump(), ['127.0.0.1:/export/sub']);
  await c.rpc.call(MOUNT, 3, 4);
  assert.deepEqual(await dump(), []);
});

test('EXPORT lists the one export with its client list as groups', async (t) => {
  const { c } = await setup(t, { exportPath: '/data' });
  const d = (await c.rpc.call(MOUNT, 3, 5)).body;
  assert.equal(d.bool(), true);
  assert.equal(d.string(1024), '/data');
  const groups: string[] = [];
  while (d.bool()) groups.push(d.string(1024));
  assert.deepEqual(groups, ['127.0.0.0/8', '::1']);
  assert.equal(d.bool(), false, 'one export');
  assert.equal((await c.mount('/data')).status, 0);
});

test('MOUNT NULL answers', async (t) => {
  const { c } = await setup(t);
  assert.equal((await c.rpc.call(MOUNT, 3, 0)).stat, 0);
});

test('the portmapper answers GETPORT for NFS and MOUNT over TCP, and 0 for anything else', async (t) => {
  const { server, port } = await setup(t, { portmapperPort: 0 });
  const pm = await RpcClient.connect(server.portmapperAddress!.port);
  t.after(() => pm.close());
  const getport = async (prog: number, vers: number, prot = 6) => (await pm.call(PMAP, 2, 3, (e) => e.u32(prog).u32(vers).u32(prot).u32(0))).body.u32();
  assert.equal(await getport(NFS, 3), port);
  assert.equal(await getport(MOUNT, 3), port);
  assert.equal(await getport(NFS, 3, 17), 0, 'no UDP');
  assert.equal(await getport(NFS, 4), 0);
  assert.equal((await pm.call(PMAP, 2, 0)).stat, 0);
  assert.equal((await pm.call(PMAP, 2, 1, (e) => e.u32(1).u32(1).u32(6).u32(1))).body.bool(), false, 'SET is refused');
});

test('the portmapper is off unless a port is configured', async (t) => {
  const { server } = await setup(t);
  assert.equal(server.portmapperAddress, undefined);
});

test('a portmapper port already in use fails the start with EADDRINUSE', async (t) => {
  const net = await import('node:net');
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => blocker.close(() => r())));
  const taken = (blocker.address() as import('node:net').AddressInfo).port;
  const { MemoryFileSystem } = await import('../../../src/functions/fileserver/nfs/memory-fs.ts');
  const { startNfsServer } = await import('../../../src/functions/fileserver/nfs/server.ts');
  await assert.rejects(startNfsServer({ fs: new MemoryFileSystem(), host: '127.0.0.1', port: 0, portmapperPort: taken }), { code: 'EADDRINUSE' });
});
