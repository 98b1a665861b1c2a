import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { NbdClient } from '../../src/nbd/client.ts';
import {
  NBD_CMD_DISC,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_OPT_ABORT,
  OPTION_REPLY_MAGIC,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_TOO_BIG,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_SIMPLE_REPLY_MAGIC,
} from '../../src/nbd/protocol.ts';
import { MAX_OPTION_BYTES } from '../../src/nbd/handshake.ts';
import { MiB, option, optionReply, RawPeer, request, simpleReply, startHaggling, startServer } from './helpers.ts';

/** After any abuse, a well-behaved client must still be served. */
async function assertStillServing(port: number): Promise<void> {
  const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: 'vol' });
  const data = Buffer.from('still serving');
  await client.pwrite(data, 512);
  const back = Buffer.alloc(data.length);
  await client.pread(back, 512);
  assert.deepEqual(back, data);
  await client.close();
}

/** A device filled with a recognisable pattern, to prove bytes were not touched. */
function patterned(size: number): MemoryBlockDevice {
  const d = new MemoryBlockDevice(size);
  for (let i = 0; i < size; i++) d.bytes[i] = (i * 7 + 3) & 0xff;
  return d;
}

function goData(name: string): Buffer {
  const n = Buffer.from(name);
  const b = Buffer.alloc(6 + n.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  return b;
}

test('a request with a bad magic closes that connection and no other', async (t) => {
  const { port, logs } = await startServer(t);
  const { peer } = await RawPeer.transmission(port);
  peer.write(request(NBD_CMD_READ, { magic: 0xdeadbeef, length: 512 }));
  await peer.closed;
  assert.ok(logs.some((l) => l.includes('bad request magic 0xdeadbeef')), logs.join('\n'));
  await assertStillServing(port);
});

test('the greeting is fixed newstyle, so an oldstyle-expecting client sees no oldstyle magic', async (t) => {
  const { port } = await startServer(t);
  const peer = await RawPeer.connect(port);
  const greeting = await peer.read(18);
  assert.equal(greeting.toString('latin1', 0, 8), 'NBDMAGIC');
  assert.equal(greeting.toString('latin1', 8, 16), 'IHAVEOPT');
  assert.equal(greeting.readUInt16BE(16), 0b11); // FIXED_NEWSTYLE | NO_ZEROES
  // The greeting is exactly these 18 bytes: an oldstyle server would go on with
  // the export size, flags and 124 zero bytes. The first byte after them must
  // be the server's answer to our option, not more greeting.
  const flags = Buffer.alloc(4);
  flags.writeUInt32BE(0b11, 0);
  peer.write(Buffer.concat([flags, option(NBD_OPT_ABORT)]));
  const reply = await peer.read(8);
  assert.equal(reply.readBigUInt64BE(0), OPTION_REPLY_MAGIC);
  peer.destroy();
  await assertStillServing(port);
});

test('a client that does not set NBD_FLAG_C_FIXED_NEWSTYLE is disconnected', async (t) => {
  const { port, logs } = await startServer(t);
  const peer = await RawPeer.connect(port);
  await startHaggling(peer, 0);
  await peer.closed;
  assert.ok(logs.some((l) => l.includes('does not speak fixed newstyle')), logs.join('\n'));
  await assertStillServing(port);
});

test('unknown client flags are refused by closing the connection', async (t) => {
  const { port, logs } = await startServer(t);
  const peer = await RawPeer.connect(port);
  await startHaggling(peer, 1 | 0x100);
  await peer.closed;
  assert.ok(logs.some((l) => l.includes('unknown client flags 0x101')), logs.join('\n'));
  await assertStillServing(port);
});

test('an oversized option length is answered NBD_REP_ERR_TOO_BIG before any of its data arrives', async (t) => {
  const { port } = await startServer(t);
  const peer = await RawPeer.connect(port);
  await startHaggling(peer);
  peer.write(option(NBD_OPT_INFO, Buffer.alloc(0), 0xffffffff)); // claims 4 GiB of data
  const reply = await optionReply(peer);
  assert.equal(reply.option, NBD_OPT_INFO);
  assert.equal(reply.type, NBD_REP_ERR_TOO_BIG);
  peer.write(Buffer.alloc(64 * 1024)); // some of the "data", then give up
  peer.destroy();
  await assertStillServing(port);
});

test('negotiation continues once an oversized option has been skipped', async (t) => {
  const { port } = await startServer(t);
  const peer = await RawPeer.connect(port);
  await startHaggling(peer);
  const tooBig = MAX_OPTION_BYTES + 1;
  peer.write(option(NBD_OPT_GO, Buffer.alloc(tooBig, 0x41)));
  assert.equal((await optionReply(peer)).type, NBD_REP_ERR_TOO_BIG);
  peer.write(option(NBD_OPT_GO, goData('vol')));
  const info = await optionReply(peer);
  assert.equal(info.type, NBD_REP_INFO);
  peer.destroy();
});

test('an oversized NBD_OPT_EXPORT_NAME closes the connection (it cannot carry an error)', async (t) => {
  const { port } = await startServer(t);
  const peer = await RawPeer.connect(port);
  await startHaggling(peer);
  peer.write(option(NBD_OPT_EXPORT_NAME, Buffer.alloc(0), 1 << 30));
  await peer.closed;
  await assertStillServing(port);
});

test('an unknown option gets NBD_REP_ERR_UNSUP and negotiation continues', async (t) => {
  const { port } = await startServer(t);
  const peer = await RawPeer.connect(port);
  await startHaggling(peer);
  peer.write(option(4242, Buffer.from('whatever')));
  const unsup = await optionReply(peer);
  assert.equal(unsup.option, 4242);
  assert.equal(unsup.type, NBD_REP_ERR_UNSUP);
  peer.write(option(NBD_OPT_LIST));
  const server = await optionReply(peer);
  assert.equal(server.data.toString('utf8', 4, 4 + server.data.readUInt32BE(0)), 'vol');
  assert.equal((await optionReply(peer)).type, NBD_REP_ACK);
  peer.write(option(NBD_OPT_ABORT));
  assert.equal((await optionReply(peer)).type, NBD_REP_ACK);
  await peer.closed;
});

test('a bad option magic closes the connection', async (t) => {
  const { port, logs } = await startServer(t);
  const peer = await RawPeer.connect(port);
  await startHaggling(peer);
  const bad = option(NBD_OPT_LIST);
  bad.write('XHAVEOPT', 0, 'latin1');
  peer.write(bad);
  await peer.closed;
  assert.ok(logs.some((l) => l.includes('bad option magic')));
  await assertStillServing(port);
});

test('NBD_OPT_INFO with inconsistent lengths is NBD_REP_ERR_INVALID, an unknown name NBD_REP_ERR_UNKNOWN', async (t) => {
  const { port } = await startServer(t);
  const peer = await RawPeer.connect(port);
  await startHaggling(peer);
  const overrun = goData('vol');
  overrun.writeUInt32BE(1000, 0); // name length past the end of the option
  peer.write(option(NBD_OPT_INFO, overrun));
  assert.equal((await optionReply(peer)).type, NBD_REP_ERR_INVALID);
  const countMismatch = goData('vol');
  countMismatch.writeUInt16BE(3, 7); // announces 3 info requests, carries none
  peer.write(option(NBD_OPT_INFO, countMismatch));
  assert.equal((await optionReply(peer)).type, NBD_REP_ERR_INVALID);
  peer.write(option(NBD_OPT_GO, goData('nope')));
  assert.equal((await optionReply(peer)).type, NBD_REP_ERR_UNKNOWN);
  peer.write(option(NBD_OPT_GO, goData(''))); // the empty name is the default export
  const info = await optionReply(peer);
  assert.equal(info.type, NBD_REP_INFO);
  assert.equal(info.data.readBigUInt64BE(2), 16n * BigInt(MiB));
  peer.destroy();
});

test('NBD_OPT_EXPORT_NAME with an unknown export closes the connection', async (t) => {
  const { port } = await startServer(t);
  const peer = await RawPeer.connect(port);
  await startHaggling(peer);
  peer.write(option(NBD_OPT_EXPORT_NAME, Buffer.from('nope')));
  await peer.closed;
  await assertStillServing(port);
});

test('a write past the end is ENOSPC, its payload is consumed, and the device is untouched', async (t) => {
  const device = patterned(MiB);
  const before = Buffer.from(device.bytes);
  const { port } = await startServer(t, device);
  const { peer } = await RawPeer.transmission(port);
  peer.write(Buffer.concat([request(NBD_CMD_WRITE, { cookie: 7, offset: MiB - 512, length: 1024 }), Buffer.alloc(1024, 0xee)]));
  assert.deepEqual(await simpleReply(peer), { magic: NBD_SIMPLE_REPLY_MAGIC, error: NBD_ENOSPC, cookie: 7n });
  peer.write(request(NBD_CMD_FLUSH, { cookie: 8 })); // the stream is still in sync
  assert.deepEqual(await simpleReply(peer), { magic: NBD_SIMPLE_REPLY_MAGIC, error: 0, cookie: 8n });
  assert.ok(Buffer.from(device.bytes).equals(before));
  peer.destroy();
});

test('requests past the end: read and trim are EINVAL, write-zeroes ENOSPC, a 2^63 offset too', async (t) => {
  const device = patterned(MiB);
  const before = Buffer.from(device.bytes);
  const { port } = await startServer(t, device);
  const { peer } = await RawPeer.transmission(port);
  peer.write(request(NBD_CMD_READ, { cookie: 1, offset: MiB, length: 1 }));
  assert.equal((await simpleReply(peer)).error, NBD_EINVAL);
  peer.write(request(NBD_CMD_TRIM, { cookie: 2, offset: MiB - 4096, length: 8192 }));
  assert.equal((await simpleReply(peer)).error, NBD_EINVAL);
  peer.write(request(NBD_CMD_WRITE_ZEROES, { cookie: 3, offset: 0, length: MiB + 1 }));
  assert.equal((await simpleReply(peer)).error, NBD_ENOSPC);
  peer.write(request(NBD_CMD_READ, { cookie: 4, offset: 1n << 63n, length: 512 }));
  assert.equal((await simpleReply(peer)).error, NBD_EINVAL);
  peer.write(Buffer.concat([request(NBD_CMD_WRITE, { cookie: 5, offset: (1n << 64n) - 512n, length: 1024 }), Buffer.alloc(1024)]));
  assert.deepEqual(await simpleReply(peer), { magic: NBD_SIMPLE_REPLY_MAGIC, error: NBD_ENOSPC, cookie: 5n });
  assert.ok(Buffer.from(device.bytes).equals(before));
  peer.destroy();
});

test('an oversized WRITE is answered EINVAL after its payload is read and discarded', async (t) => {
  const device = patterned(MiB);
  const before = Buffer.from(device.bytes);
  const { port, server } = await startServer(t, device, { maxRequestBytes: 64 * 1024 });
  const { peer, info } = await RawPeer.transmission(port);
  assert.equal(info.maxBlockSize, 64 * 1024);
  peer.write(request(NBD_CMD_WRITE, { cookie: 1, length: 64 * 1024 + 1 }));
  peer.write(Buffer.alloc(64 * 1024 + 1, 0xab));
  peer.write(request(NBD_CMD_READ, { cookie: 2, length: 4 }));
  assert.deepEqual(await simpleReply(peer), { magic: NBD_SIMPLE_REPLY_MAGIC, error: NBD_EINVAL, cookie: 1n });
  assert.deepEqual(await simpleReply(peer), { magic: NBD_SIMPLE_REPLY_MAGIC, error: 0, cookie: 2n });
  assert.deepEqual(await peer.read(4), before.subarray(0, 4));
  assert.ok(Buffer.from(device.bytes).equals(before));
  assert.equal(server.stats().errors, 1);
  peer.destroy();
});

test('an oversized READ is answered EINVAL', async (t) => {
  const { port } = await startServer(t, new MemoryBlockDevice(MiB), { maxRequestBytes: 64 * 1024 });
  const { peer } = await RawPeer.transmission(port);
  peer.write(request(NBD_CMD_READ, { cookie: 9, length: 64 * 1024 + 1 }));
  assert.deepEqual(await simpleReply(peer), { magic: NBD_SIMPLE_REPLY_MAGIC, error: NBD_EINVAL, cookie: 9n });
  peer.destroy();
});

test('an unknown command and an inapplicable flag are EINVAL', async (t) => {
  const { port } = await startServer(t);
  const { peer } = await RawPeer.transmission(port);
  peer.write(request(42, { cookie: 1 }));
  assert.equal((await simpleReply(peer)).error, NBD_EINVAL);
  peer.write(request(NBD_CMD_READ, { cookie: 2, flags: NBD_CMD_FLAG_FUA, length: 512 }));
  assert.equal((await simpleReply(peer)).error, NBD_EINVAL);
  peer.write(request(NBD_CMD_FLUSH, { cookie: 3, flags: 0x8000 }));
  assert.equal((await simpleReply(peer)).error, NBD_EINVAL);
  peer.destroy();
});

test('writes, trims and zeroes on a read-only export are EPERM', async (t) => {
  const device = new MemoryBlockDevice(MiB, { readOnly: true });
  const { port } = await startServer(t, device);
  const { peer } = await RawPeer.transmission(port);
  peer.write(Buffer.concat([request(NBD_CMD_WRITE, { cookie: 1, length: 512 }), Buffer.alloc(512, 1)]));
  peer.write(request(NBD_CMD_TRIM, { cookie: 2, length: 512 }));
  peer.write(request(NBD_CMD_WRITE_ZEROES, { cookie: 3, length: 512 }));
  const errors = [await simpleReply(peer), await simpleReply(peer), await simpleReply(peer)];
  assert.deepEqual(errors.map((r) => r.error), [NBD_EPERM, NBD_EPERM, NBD_EPERM]);
  assert.ok(device.bytes.every((b) => b === 0));
  peer.destroy();
});

test('a client that disconnects in the middle of a WRITE payload leaves the device and server intact', async (t) => {
  const device = patterned(MiB);
  const before = Buffer.from(device.bytes);
  const { port, server } = await startServer(t, device);
  const { peer } = await RawPeer.transmission(port);
  peer.write(request(NBD_CMD_WRITE, { cookie: 1, offset: 4096, length: 256 * 1024 }));
  peer.write(Buffer.alloc(100 * 1024, 0xcd));
  peer.destroy();
  await peer.closed;
  await assertStillServing(port);
  before.write('still serving', 512);
  assert.ok(Buffer.from(device.bytes).equals(before));
  assert.equal(server.stats().writes, 1); // only the healthy client's write
});

test('NBD_CMD_DISC answers in-flight requests and then closes', async (t) => {
  const { port } = await startServer(t);
  const { peer } = await RawPeer.transmission(port);
  peer.write(Buffer.concat([request(NBD_CMD_READ, { cookie: 5, length: 8 }), request(NBD_CMD_DISC, { cookie: 6 })]));
  assert.deepEqual(await simpleReply(peer), { magic: NBD_SIMPLE_REPLY_MAGIC, error: 0, cookie: 5n });
  assert.equal((await peer.read(8)).length, 8);
  await peer.closed;
  assert.equal(peer.queue.length, 0, 'nothing after the last reply');
});

test('an export lookup that throws is answered as an unknown export, not a crash', async (t) => {
  const { port, logs } = await startServer(t, new MemoryBlockDevice(MiB), {
    exports: (name) => {
      if (name === 'broken') throw new Error('catalog unavailable');
      return name === 'vol' ? { name, device: new MemoryBlockDevice(MiB) } : undefined;
    },
  });
  await assert.rejects(NbdClient.connect({ host: '127.0.0.1', port, exportName: 'broken' }), (err: Error & { errno?: string }) => err.errno === 'ENOENT');
  assert.ok(logs.some((l) => l === 'export lookup for "broken" failed: catalog unavailable'), logs.join('\n'));
  await assertStillServing(port);
});
