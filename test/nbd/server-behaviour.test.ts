import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { NbdClient } from '../../src/nbd/client.ts';
import { MAX_INFLIGHT_REQUESTS } from '../../src/nbd/connection.ts';
import {
  NBD_CMD_FLAG_DF,
  NBD_CMD_READ,
  NBD_EINVAL,
  NBD_EOVERFLOW,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
} from '../../src/nbd/protocol.ts';
import { GatedDevice } from './gated-device.ts';
import { MiB, option, optionReply, RawPeer, request, simpleReply, startHaggling, startServer } from './helpers.ts';

async function structuredPeer(port: number): Promise<RawPeer> {
  const peer = await RawPeer.connect(port);
  await startHaggling(peer, 0b11);
  peer.write(option(NBD_OPT_STRUCTURED_REPLY));
  assert.equal((await optionReply(peer)).type, NBD_REP_ACK);
  const go = Buffer.alloc(9);
  go.writeUInt32BE(3, 0);
  go.write('vol', 4);
  peer.write(option(NBD_OPT_GO, go));
  while ((await optionReply(peer)).type !== NBD_REP_ACK);
  return peer;
}

async function chunk(peer: RawPeer) {
  const h = await peer.read(20);
  return {
    magic: h.readUInt32BE(0),
    flags: h.readUInt16BE(4),
    type: h.readUInt16BE(6),
    cookie: h.readBigUInt64BE(8),
    payload: await peer.read(h.readUInt32BE(16)),
  };
}

test('with structured replies a read comes back as one OFFSET_DATA chunk marked DONE', async (t) => {
  const device = new MemoryBlockDevice(MiB);
  device.bytes.set([1, 2, 3, 4], 8192);
  const { port } = await startServer(t, device);
  const peer = await structuredPeer(port);
  peer.write(request(NBD_CMD_READ, { cookie: 11, offset: 8192, length: 4, flags: NBD_CMD_FLAG_DF }));
  const c = await chunk(peer);
  assert.deepEqual(
    { magic: c.magic, flags: c.flags, type: c.type, cookie: c.cookie },
    { magic: NBD_STRUCTURED_REPLY_MAGIC, flags: NBD_REPLY_FLAG_DONE, type: NBD_REPLY_TYPE_OFFSET_DATA, cookie: 11n },
  );
  assert.equal(c.payload.readBigUInt64BE(0), 8192n);
  assert.deepEqual([...c.payload.subarray(8)], [1, 2, 3, 4]);
  peer.destroy();
});

test('with structured replies read errors are ERROR chunks: EINVAL past the end, EOVERFLOW when too large', async (t) => {
  const { port } = await startServer(t, new MemoryBlockDevice(MiB), { maxRequestBytes: 64 * 1024 });
  const peer = await structuredPeer(port);
  peer.write(request(NBD_CMD_READ, { cookie: 1, offset: MiB, length: 512 }));
  const past = await chunk(peer);
  assert.equal(past.type, NBD_REPLY_TYPE_ERROR);
  assert.equal(past.flags, NBD_REPLY_FLAG_DONE);
  assert.equal(past.payload.readUInt32BE(0), NBD_EINVAL);
  const msgLength = past.payload.readUInt16BE(4);
  assert.equal(past.payload.toString('utf8', 6, 6 + msgLength), 'invalid read request');
  peer.write(request(NBD_CMD_READ, { cookie: 2, length: 64 * 1024 + 1 }));
  const big = await chunk(peer);
  assert.equal(big.type, NBD_REPLY_TYPE_ERROR);
  assert.equal(big.payload.readUInt32BE(0), NBD_EOVERFLOW);
  peer.destroy();
});

test('replies leave in completion order, not request order', async (t) => {
  const device = new GatedDevice(MiB);
  const { port } = await startServer(t, device);
  const { peer } = await RawPeer.transmission(port);
  peer.write(request(NBD_CMD_READ, { cookie: 1, length: 4 })); // held by the gate
  await device.startedAtLeast(1);
  peer.write(request(3 /* FLUSH */, { cookie: 2 })); // not gated: overtakes the read
  assert.deepEqual(await simpleReply(peer), { magic: NBD_SIMPLE_REPLY_MAGIC, error: 0, cookie: 2n });
  device.releaseAll();
  assert.deepEqual(await simpleReply(peer), { magic: NBD_SIMPLE_REPLY_MAGIC, error: 0, cookie: 1n });
  peer.destroy();
});

test('the server stops reading a connection once its in-flight limit is reached, and resumes after', async (t) => {
  const device = new GatedDevice(MiB);
  const { port } = await startServer(t, device);
  const { peer } = await RawPeer.transmission(port);
  const total = MAX_INFLIGHT_REQUESTS + 72;
  peer.write(Buffer.concat(Array.from({ length: total }, (_, i) => request(NBD_CMD_READ, { cookie: i, length: 512 }))));
  await device.startedAtLeast(MAX_INFLIGHT_REQUESTS);
  device.releaseAll();
  // Each completion lets more in; keep releasing until every request has run.
  for (let started = MAX_INFLIGHT_REQUESTS; started < total; started = device.started) {
    await device.startedAtLeast(started + 1);
    device.releaseAll();
  }
  device.releaseAll();
  const cookies = new Set<bigint>();
  for (let i = 0; i < total; i++) {
    cookies.add((await simpleReply(peer)).cookie);
    await peer.read(512);
  }
  assert.equal(cookies.size, total);
  assert.equal(device.maxInflight, MAX_INFLIGHT_REQUESTS);
  peer.destroy();
});

test('close() lets an in-flight request finish and answers it before closing', async (t) => {
  const device = new GatedDevice(MiB);
  device.bytes.fill(9, 0, 512);
  const { port, server } = await startServer(t, device);
  const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: 'vol' });
  const buf = Buffer.alloc(512);
  const read = client.pread(buf, 0);
  await device.startedAtLeast(1);
  let closed = false;
  const closing = server.close().then(() => (closed = true));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(closed, false, 'close waits for the in-flight read');
  device.releaseAll();
  await read;
  await closing;
  assert.ok(buf.every((b) => b === 9));
  await client.close();
});

test('stats count connections, requests, bytes and errors', async (t) => {
  const { port, server } = await startServer(t, new MemoryBlockDevice(MiB));
  const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: 'vol' });
  await client.pwrite(Buffer.alloc(4096, 1), 0);
  await client.pread(Buffer.alloc(1000), 0);
  const { peer } = await RawPeer.transmission(port);
  peer.write(request(99, { cookie: 1 }));
  await simpleReply(peer);
  peer.destroy();
  await client.close();
  const s = server.stats();
  assert.deepEqual(
    { connections: s.connections, requests: s.requests, reads: s.reads, writes: s.writes, bytesRead: s.bytesRead, bytesWritten: s.bytesWritten, errors: s.errors },
    { connections: 2, requests: 3, reads: 1, writes: 1, bytesRead: 1000, bytesWritten: 4096, errors: 1 },
  );
});

test('NBD_OPT_EXPORT_NAME sends the 124 zero bytes unless the client asked for NO_ZEROES', async (t) => {
  const { port } = await startServer(t, new MemoryBlockDevice(MiB));
  for (const [clientFlags, padding] of [[0b01, 124], [0b11, 0]] as const) {
    const peer = await RawPeer.connect(port);
    await startHaggling(peer, clientFlags);
    peer.write(option(NBD_OPT_EXPORT_NAME, Buffer.from('vol')));
    const reply = await peer.read(10 + padding);
    assert.equal(reply.readBigUInt64BE(0), BigInt(MiB));
    assert.equal(reply.readUInt16BE(8) & 1, 1, 'NBD_FLAG_HAS_FLAGS');
    assert.ok(reply.subarray(10).every((b) => b === 0));
    // The very next bytes are the reply to our first request: nothing was left over.
    peer.write(request(3 /* FLUSH */, { cookie: 77 }));
    assert.deepEqual(await simpleReply(peer), { magic: NBD_SIMPLE_REPLY_MAGIC, error: 0, cookie: 77n });
    peer.destroy();
  }
});
