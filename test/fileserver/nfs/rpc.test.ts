import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RpcClient } from './helpers/rpc-client.ts';
import { NfsClient, NFS, MOUNT } from './helpers/nfs-client.ts';
import { startMemoryServer } from './helpers/server.ts';
import { frameRecord } from '../../../src/functions/fileserver/rpc/record-reader.ts';
import { XdrEncoder } from '../../../src/functions/fileserver/rpc/xdr.ts';

const ACCEPTED = 0;
const DENIED = 1;

async function setup(t: import('node:test').TestContext, opts: Parameters<typeof startMemoryServer>[0] = {}) {
  const s = await startMemoryServer(opts);
  const rpc = await RpcClient.connect(s.port);
  t.after(async () => {
    await rpc.close();
    await s.server.stop();
  });
  return { ...s, rpc };
}

test('NULL on NFS v3 answers SUCCESS with an empty result', async (t) => {
  const { rpc } = await setup(t);
  const r = await rpc.call(NFS, 3, 0);
  assert.deepEqual([r.replyStat, r.stat, r.body.remaining], [ACCEPTED, 0, 0]);
});

test('an RPC version other than 2 is denied with RPC_MISMATCH low=2 high=2', async (t) => {
  const { rpc } = await setup(t);
  const r = await rpc.call(NFS, 3, 0, undefined, { flavor: 0 }, 3);
  assert.deepEqual([r.replyStat, r.stat, r.body.u32(), r.body.u32()], [DENIED, 0, 2, 2]);
});

test('an unknown program is PROG_UNAVAIL', async (t) => {
  const { rpc } = await setup(t);
  const r = await rpc.call(100099, 1, 0);
  assert.deepEqual([r.replyStat, r.stat], [ACCEPTED, 1]);
});

test('an unsupported version is PROG_MISMATCH with the supported range', async (t) => {
  const { rpc } = await setup(t);
  const nfs = await rpc.call(NFS, 4, 0);
  assert.deepEqual([nfs.stat, nfs.body.u32(), nfs.body.u32()], [2, 3, 3]);
  const mount = await rpc.call(MOUNT, 1, 0);
  assert.deepEqual([mount.stat, mount.body.u32(), mount.body.u32()], [2, 3, 3]);
});

test('an unknown procedure is PROC_UNAVAIL', async (t) => {
  const { rpc } = await setup(t);
  const r = await rpc.call(NFS, 3, 22);
  assert.deepEqual([r.replyStat, r.stat], [ACCEPTED, 3]);
});

test('truncated arguments are GARBAGE_ARGS and the connection keeps working', async (t) => {
  const { rpc, server } = await setup(t);
  const r = await rpc.call(NFS, 3, 1, (e) => e.u32(64)); // handle length 64, no bytes
  assert.deepEqual([r.replyStat, r.stat], [ACCEPTED, 4]);
  const bad = await rpc.call(NFS, 3, 1, (e) => e.u32(65).fixed(Buffer.alloc(65))); // longer than NFS3_FHSIZE
  assert.equal(bad.stat, 4);
  const enumBad = await rpc.call(NFS, 3, 7, (e) => e.opaque(Buffer.alloc(32)).u64(0).u32(1).u32(9).opaque(Buffer.alloc(1)));
  assert.equal(enumBad.stat, 4, 'stable_how 9 is garbage');
  assert.equal((await rpc.call(NFS, 3, 0)).stat, 0);
  assert.equal(server.stats().garbageArgs, 3);
});

test('a malformed AUTH_SYS credential is AUTH_ERROR AUTH_BADCRED', async (t) => {
  const { rpc } = await setup(t);
  const xid = rpc.takeXid();
  const e = new XdrEncoder();
  e.u32(xid).u32(0).u32(2).u32(NFS).u32(3).u32(0);
  e.u32(1).opaque(Buffer.from([0, 0, 0, 0, 0, 0, 1, 0])); // machine name length 256 inside an 8-byte body
  e.u32(0).u32(0);
  const r = await rpc.send(xid, frameRecord(e.take()));
  assert.deepEqual([r.replyStat, r.stat, r.body.u32()], [DENIED, 1, 1]);
});

test('AUTH_SYS with more than 16 groups and an unknown flavor are both AUTH_BADCRED', async (t) => {
  const { rpc } = await setup(t);
  const many = await rpc.call(NFS, 3, 0, undefined, { flavor: 1, uid: 1, gid: 1, gids: Array.from({ length: 17 }, (_, i) => i) });
  assert.deepEqual([many.replyStat, many.stat, many.body.u32()], [DENIED, 1, 1]);
  const xid = rpc.takeXid();
  const e = new XdrEncoder();
  e.u32(xid).u32(0).u32(2).u32(NFS).u32(3).u32(0).u32(6).u32(0).u32(0).u32(0); // RPCSEC_GSS
  const gss = await rpc.send(xid, frameRecord(e.take()));
  assert.deepEqual([gss.replyStat, gss.stat, gss.body.u32()], [DENIED, 1, 1]);
});

test('a verifier of a flavor other than AUTH_NONE is AUTH_BADVERF', async (t) => {
  const { rpc } = await setup(t);
  const xid = rpc.takeXid();
  const e = new XdrEncoder();
  e.u32(xid).u32(0).u32(2).u32(NFS).u32(3).u32(0).u32(0).u32(0).u32(1).u32(0);
  const r = await rpc.send(xid, frameRecord(e.take()));
  assert.deepEqual([r.replyStat, r.stat, r.body.u32()], [DENIED, 1, 3]);
});

test('a credential body over 400 bytes is AUTH_BADCRED', async (t) => {
  const { rpc } = await setup(t);
  const xid = rpc.takeXid();
  const e = new XdrEncoder();
  e.u32(xid).u32(0).u32(2).u32(NFS).u32(3).u32(0).u32(1).opaque(Buffer.alloc(404)).u32(0).u32(0);
  const r = await rpc.send(xid, frameRecord(e.take()));
  assert.deepEqual([r.replyStat, r.stat, r.body.u32()], [DENIED, 1, 1]);
});

test('a REPLY sent to the server is dropped and the next call is answered', async (t) => {
  const { rpc, logs } = await setup(t);
  rpc.writeRaw(frameRecord(new XdrEncoder().u32(77).u32(1).u32(0).take()));
  assert.equal((await rpc.call(NFS, 3, 0)).stat, 0);
  assert.ok(logs.some((l) => l.includes('message type 1 is not CALL')));
});

test('pipelined calls on one connection all get replies matched by xid', async (t) => {
  const { rpc } = await setup(t);
  const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => rpc.call(NFS, 3, i % 2 === 0 ? 0 : 22)));
  assert.deepEqual(
    replies.map((r) => r.stat),
    Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? 0 : 3)),
  );
});

test('a record over the size limit closes that connection while another client keeps working', async (t) => {
  const { rpc, port, server } = await setup(t, { ioMax: 4096 });
  const other = await NfsClient.connect(port);
  t.after(() => other.close());
  const root = await other.root();
  const mark = Buffer.alloc(4);
  mark.writeUInt32BE((0x80000000 | (1 << 20)) >>> 0);
  rpc.writeRaw(mark);
  await rpc.closed;
  assert.equal(server.stats().recordErrors, 1);
  assert.equal((await other.getattr(root)).status, 0);
});

test('a record cut off mid-way and then closed does not disturb other clients', async (t) => {
  const { port } = await setup(t);
  const a = await RpcClient.connect(port);
  const b = await NfsClient.connect(port);
  t.after(() => b.close());
  const call = frameRecord(RpcClient.encodeCall(1, NFS, 3, 0, { flavor: 0 }));
  a.writeRaw(call.subarray(0, call.length - 5));
  await a.close();
  assert.equal((await b.getattr(await b.root())).status, 0);
});

test('many connections at once are all served', async (t) => {
  const { port } = await setup(t);
  const clients = await Promise.all(Array.from({ length: 20 }, () => NfsClient.connect(port)));
  t.after(() => Promise.all(clients.map((c) => c.close())));
  const statuses = await Promise.all(clients.map(async (c) => (await c.getattr(await c.root())).status));
  assert.deepEqual(statuses, new Array(20).fill(0));
});

test('stop() lets an in-flight call finish and its reply reach the client', async () => {
  const { MemoryFileSystem } = await import('../../../src/functions/fileserver/nfs/memory-fs.ts');
  const { startNfsServer } = await import('../../../src/functions/fileserver/nfs/server.ts');
  const fs = new MemoryFileSystem();
  let reached!: () => void;
  const atGate = new Promise<void>((r) => (reached = r));
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const read = fs.read.bind(fs);
  fs.read = async (...args) => {
    reached();
    await gate;
    return read(...args);
  };
  const server = await startNfsServer({ fs, host: '127.0.0.1', port: 0 });
  const c = await NfsClient.connect(server.address.port);
  const fh = (await c.create(await c.root(), 'f', 0)).fh!;
  await c.write(fh, 0, Buffer.from('still here'));
  const pending = c.read(fh, 0, 100);
  await atGate;
  const stopped = server.stop();
  open();
  const r = await pending;
  assert.deepEqual([r.status, r.data?.toString()], [0, 'still here']);
  await stopped;
  await c.rpc.closed;
});
