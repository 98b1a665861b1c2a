/**
 * Attacks on the NBD server's memory and connections, each as a small client:
 * the server stays within its bounds, closes or throttles the attacker, and a
 * real client (nbdinfo) is served meanwhile and afterwards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import type { BlockDevice } from '../../src/block/types.ts';
import { MAX_OPTIONS } from '../../src/nbd/handshake.ts';
import {
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EIO,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_REP_SERVER,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_NONE,
  NBD_SIMPLE_REPLY_MAGIC,
} from '../../src/nbd/protocol.ts';
import { ioError } from '../../src/util/errors.ts';
import { forceGc, open, waitFor, within } from '../net/helpers.ts';
import { MiB, option, optionReply, RawPeer, request, run, simpleReply, startHaggling, startServer } from './helpers.ts';

const nbdinfo = (port: number) => run('nbdinfo', ['--size', `nbd://127.0.0.1:${port}/vol`], 30_000);

async function assertServed(port: number, size = 16 * MiB): Promise<void> {
  const r = await nbdinfo(port);
  assert.equal(r.code, 0, `nbdinfo failed: ${r.stderr}`);
  assert.equal(r.stdout.trim(), String(size));
}

/** An attacker socket that never reads (paused, so the kernel buffers fill). */
async function deafSocket(port: number): Promise<Socket & { gone: Promise<void> }> {
  const s = await open(port);
  s.pause();
  return s;
}

function infoOption(name = 'vol'): Buffer {
  const data = Buffer.alloc(4 + name.length + 2);
  data.writeUInt32BE(name.length, 0);
  data.write(name, 4);
  return option(NBD_OPT_INFO, data);
}

/** A device whose empty writes and failing writes behave like a file backend: errors name the host file. */
class PickyDevice extends MemoryBlockDevice {
  emptyWrites = 0;
  failWrites = false;
  override async pwrite(buf: Uint8Array, offset: number, flags?: { fua?: boolean }): Promise<void> {
    if (buf.byteLength === 0) {
      this.emptyWrites++;
      throw ioError(`pwrite /var/lib/storvisor/data/volumes/vol0.img [${offset}, +0): EINVAL: invalid argument`);
    }
    if (this.failWrites) throw ioError(`pwrite /var/lib/storvisor/data/volumes/vol0.img [${offset}, +${buf.byteLength}): EIO`);
    return super.pwrite(buf, offset, flags);
  }
}

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
  return { type: h.readUInt16BE(6), cookie: h.readBigUInt64BE(8), payload: await peer.read(h.readUInt32BE(16)) };
}

test('clients streaming NBD_OPT_INFO without reading are paused, then closed (option cap or timeout); memory stays bounded, nbdinfo is served', async (t) => {
  const { server, port, logs } = await startServer(t, undefined, { limits: { requestTimeoutMs: 2_000 } });
  forceGc();
  const rss0 = process.memoryUsage().rss;
  const flood = Buffer.concat(Array.from({ length: 2000 }, () => infoOption()));
  const flags = Buffer.from([0, 0, 0, 1]);
  const attackers = await Promise.all(Array.from({ length: 20 }, () => deafSocket(port)));
  t.after(() => attackers.forEach((s) => s.destroy()));
  for (const s of attackers) {
    s.write(flags);
    // Far more than the cap, streamed as fast as the socket takes it.
    for (let i = 0; i < 10; i++) s.write(flood);
  }
  await assertServed(port); // meanwhile
  // Each is paused once 64 KiB of replies wait unsent, closed at 1024 options if the kernel took enough
  // replies to get there, and otherwise by the negotiation (request) timeout.
  await waitFor(() => server.stats().queuedBytes <= 20 * (64 * 1024 + 1024), 'the server to hold at most ~64 KiB per attacker');
  // (The attackers never read, so they do not see the close: the server's count tells.)
  await waitFor(() => server.stats().activeConnections === 0, 'every flooding connection to be closed', 20_000);
  const st = server.stats();
  assert.equal(st.limitClosedConnections + st.timedOutConnections, 20);
  if (st.limitClosedConnections > 0) assert.ok(logs.some((l) => l.includes(`more than ${MAX_OPTIONS} options`)), 'the option cap is logged');
  const growth = process.memoryUsage().rss - rss0;
  t.diagnostic(`closed for limits ${st.limitClosedConnections}, timed out ${st.timedOutConnections}, rss +${growth}`);
  assert.ok(growth < 64 * MiB, `rss grew by ${growth} bytes`);
  await assertServed(port); // afterwards
});

test('negotiation stops taking options while unsent replies pass 64 KiB, and goes on once the client reads', async (t) => {
  // 1,000 exports with 1 KiB descriptions: each NBD_OPT_LIST answers ~1 MiB.
  const exports = Array.from({ length: 1000 }, (_, i) => ({ name: `e${i}`, description: 'd'.repeat(1024), device: new MemoryBlockDevice(MiB) }));
  const { server, port } = await startServer(t, undefined, { exports });
  const peer = await RawPeer.connect(port);
  t.after(() => peer.destroy());
  await startHaggling(peer);
  peer.socket.pause(); // stop reading replies
  const lists = 100; // ~100 MiB of replies if the server answered them all
  forceGc();
  const ab0 = process.memoryUsage().arrayBuffers;
  peer.write(Buffer.concat(Array.from({ length: lists }, () => option(NBD_OPT_LIST))));
  await waitFor(() => server.stats().queuedBytes > 64 * 1024, 'replies to wait unsent');
  // Whatever the kernel took, the server holds at most the cap plus one option's replies.
  const queued = server.stats().queuedBytes;
  assert.ok(queued <= 64 * 1024 + 1.1 * MiB, `queued ${queued}`);
  assert.ok(process.memoryUsage().arrayBuffers - ab0 < 16 * MiB);
  peer.socket.resume();
  for (let i = 0; i < lists; i++) {
    let r;
    while ((r = await optionReply(peer)).type !== NBD_REP_ACK) assert.equal(r.type, NBD_REP_SERVER);
  }
  assert.equal(server.stats().limitClosedConnections, 0);
});

test('a negotiation that does not finish within the request timeout is closed', async (t) => {
  const { server, port } = await startServer(t, undefined, { limits: { requestTimeoutMs: 150 } });
  const s = await open(port); // reads the greeting, never answers it
  await within(s.gone, 5_000, 'the stalled negotiation to be closed');
  assert.equal(server.stats().timedOutConnections, 1);
});

test('a half-sent WRITE is closed after the request timeout while other clients are served', async (t) => {
  const { server, port } = await startServer(t, undefined, { limits: { requestTimeoutMs: 200 } });
  const { peer } = await RawPeer.transmission(port);
  peer.write(request(NBD_CMD_WRITE, { cookie: 1, length: MiB }));
  peer.write(Buffer.alloc(100_000)); // most of the payload never comes
  await assertServed(port);
  await within(peer.closed, 5_000, 'the half-sent request to time out');
  assert.equal(server.stats().timedOutConnections, 1);
  assert.equal(server.stats().bufferedBytes, 0);
});

test('clients holding half-sent WRITEs beyond the server budget are closed heaviest first, memory stays bounded', async (t) => {
  const { server, port } = await startServer(t, new MemoryBlockDevice(64 * MiB));
  forceGc();
  const ab0 = process.memoryUsage().arrayBuffers;
  const peers = await Promise.all(Array.from({ length: 30 }, () => RawPeer.transmission(port).then((p) => p.peer)));
  t.after(() => peers.forEach((p) => p.destroy()));
  const payload = Buffer.alloc(6 * MiB); // one buffer written 30 times: the client side holds 6 MiB
  for (const p of peers) {
    p.write(request(NBD_CMD_WRITE, { cookie: 1, length: 8 * MiB }));
    p.write(payload); // 30 × 6 MiB = 180 MiB held if nothing stopped it
  }
  // Settled: every attacker is either closed or holds its whole half-sent payload.
  await waitFor(() => {
    const st = server.stats();
    return st.activeConnections + st.limitClosedConnections === 30 && st.bufferedBytes === st.activeConnections * payload.length;
  }, 'every attacker to be held or closed', 30_000);
  await assertServed(port, 64 * MiB); // meanwhile
  // Closed attackers' buffers are freed once their sockets are gone: collect until the
  // count settles under the budget (it never does if something holds them).
  let growth = Infinity;
  await waitFor(() => {
    forceGc();
    growth = process.memoryUsage().arrayBuffers - ab0 - payload.length;
    return growth < 144 * MiB;
  }, 'process arrayBuffers to settle under the budget', 10_000).catch(() => {});
  const s = server.stats();
  assert.ok(s.bufferedBytes <= 128 * MiB, `buffered ${s.bufferedBytes}`);
  assert.ok(s.limitClosedConnections >= 1);
  t.diagnostic(`held ${s.bufferedBytes} by ${s.activeConnections} connections, closed for limits ${s.limitClosedConnections}, arrayBuffers +${growth}`);
  assert.ok(growth < 144 * MiB, `arrayBuffers grew by ${growth} bytes (budget 128 MiB)`);
});

test('connections beyond maxConnections are closed at once; nbdinfo works once one is released', async (t) => {
  const limit = 10;
  const { server, port } = await startServer(t, undefined, { limits: { maxConnections: limit } });
  const sockets = await Promise.all(Array.from({ length: limit + 50 }, () => open(port)));
  t.after(() => sockets.forEach((s) => s.destroy()));
  let closed = 0;
  for (const s of sockets) void s.gone.then(() => closed++);
  await waitFor(() => closed === 50, 'the 50 excess connections to be closed');
  assert.equal(server.stats().refusedConnections, 50);
  assert.equal(server.stats().activeConnections, limit);
  const held = sockets.filter((s) => !s.destroyed);
  held[0]!.destroy();
  await waitFor(() => server.stats().activeConnections === limit - 1, 'a slot to free');
  await assertServed(port);
});

test('with idleTimeoutMs set, a connection idle in transmission is closed', async (t) => {
  const { server, port } = await startServer(t, undefined, { limits: { idleTimeoutMs: 150 } });
  const { peer } = await RawPeer.transmission(port);
  peer.write(request(NBD_CMD_READ, { cookie: 7, length: 512 }));
  assert.equal((await simpleReply(peer)).cookie, 7n);
  await peer.read(512);
  await within(peer.closed, 5_000, 'the idle connection to be closed');
  assert.equal(server.stats().timedOutConnections, 1);
});

test('zero-length WRITE, TRIM, WRITE_ZEROES and READ are answered with success without reaching the device', async (t) => {
  const device = new PickyDevice(MiB);
  const { port } = await startServer(t, device as BlockDevice);
  const { peer } = await RawPeer.transmission(port);
  t.after(() => peer.destroy());
  let cookie = 1;
  for (const type of [NBD_CMD_WRITE, NBD_CMD_TRIM, NBD_CMD_WRITE_ZEROES, NBD_CMD_READ]) {
    peer.write(request(type, { cookie, offset: 4096, length: 0 }));
    assert.deepEqual(await simpleReply(peer), { magic: NBD_SIMPLE_REPLY_MAGIC, error: 0, cookie: BigInt(cookie) });
    cookie++;
  }
  assert.equal(device.emptyWrites, 0);
});

test('with structured replies a zero-length READ is one NONE chunk, and a device error message carries no host path', async (t) => {
  const device = new PickyDevice(MiB);
  const { port } = await startServer(t, device as BlockDevice);
  const peer = await structuredPeer(port);
  t.after(() => peer.destroy());
  peer.write(request(NBD_CMD_READ, { cookie: 1, offset: 0, length: 0 }));
  const none = await chunk(peer);
  assert.deepEqual([none.type, none.cookie, none.payload.length], [NBD_REPLY_TYPE_NONE, 1n, 0]);
  device.failWrites = true;
  peer.write(request(NBD_CMD_WRITE, { cookie: 2, length: 512 }));
  peer.write(Buffer.alloc(512));
  const err = await chunk(peer);
  assert.equal(err.type, NBD_REPLY_TYPE_ERROR);
  assert.equal(err.payload.readUInt32BE(0), NBD_EIO);
  const message = err.payload.toString('utf8', 6, 6 + err.payload.readUInt16BE(4));
  assert.equal(message, 'pwrite <path> [0, +512): EIO');
});

test('host paths are taken out of wire error messages, the rest of the text stays', async () => {
  const { redactHostPaths } = await import('../../src/nbd/error-map.ts');
  assert.equal(redactHostPaths("ENOENT: no such file, open '/srv/data/v.img'"), "ENOENT: no such file, open '<path>'");
  assert.equal(redactHostPaths('pwrite /srv/data/v.img [0, +0): EINVAL (file:///srv/x)'), 'pwrite <path> [0, +0): EINVAL (<path>)');
  assert.equal(redactHostPaths('invalid write request'), 'invalid write request');
  assert.equal(redactHostPaths('read 4/8 blocks'), 'read 4/8 blocks');
});
