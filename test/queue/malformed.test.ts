/**
 * The device side against hand-built, malformed descriptor chains: every bad
 * request gets the exact status and used.len, the backend is never touched,
 * and ring corruption breaks the queue once and for good.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { VirtioBlkDevice } from '../../src/queue/blk-device.ts';
import {
  Ctl,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  createRegion,
} from '../../src/queue/layout.ts';
import { GuestRing, SpyBlockDevice, settle } from './helpers/guest-ring.ts';

const N = 16;
const CAPACITY = 64 * 1024;
const R = 0;
const W = VIRTQ_DESC_F_WRITE;
const NEXT = VIRTQ_DESC_F_NEXT;

function setup(options: { segMax?: number } = {}) {
  const region = createRegion({ queueSize: N, dataBytes: 64 * 1024, capacityBytes: CAPACITY, mode: 'poll', ...options });
  const memory = new MemoryBlockDevice(CAPACITY);
  memory.bytes.fill(0xab);
  const backend = new SpyBlockDevice(memory);
  const reports: string[] = [];
  const device = new VirtioBlkDevice({ region, backend, name: 'vol-1', onBroken: (r) => reports.push(r) });
  const ring = new GuestRing(region);
  // Fixed guest buffers: header at 0, data at 4096, status at 512 (initialised to a sentinel).
  const hdr = ring.data(0);
  const buf = ring.data(4096);
  const st = ring.data(512);
  ring.bytes(st, 1)[0] = 0xee;
  return { region, memory, backend, reports, device, ring, hdr, buf, st };
}

/** Run one offered request through the device; returns the single used entry and the status byte. */
async function runOne(s: ReturnType<typeof setup>, head = 0) {
  s.ring.offer(head);
  assert.equal(s.device.poll(), 1);
  await settle();
  const used = s.ring.takeUsed();
  assert.equal(used.length, 1);
  assert.equal(used[0]!.id, head);
  return { len: used[0]!.len, status: s.ring.bytes(s.st, 1)[0] };
}

function assertUntouched(s: ReturnType<typeof setup>) {
  assert.deepEqual(s.backend.calls, []);
  assert.ok(s.memory.bytes.every((b) => b === 0xab));
}

/** A valid 512-byte write chain: header, data, status — with one field overridden by the caller. */
function writeChain(s: ReturnType<typeof setup>, sector = 0) {
  s.ring.header(s.hdr, VIRTIO_BLK_T_OUT, sector);
  s.ring.desc(0, s.hdr, 16, R | NEXT, 1);
  s.ring.desc(1, s.buf, 512, R | NEXT, 2);
  s.ring.desc(2, s.st, 1, W);
}

test('a well-formed write reaches the backend and completes OK with used.len 1', async () => {
  const s = setup();
  writeChain(s, 2);
  s.ring.bytes(s.buf, 512).fill(7);
  const { len, status } = await runOne(s);
  assert.equal(status, VIRTIO_BLK_S_OK);
  assert.equal(len, 1);
  assert.deepEqual(s.backend.calls, ['pwrite 1024 512']);
  assert.equal(s.memory.bytes[1024], 7);
});

test('a well-formed read with header and data split across segments reports data bytes plus status in used.len', async () => {
  const s = setup();
  s.memory.bytes.fill(9, 512, 1536);
  s.ring.header(s.hdr, VIRTIO_BLK_T_IN, 1);
  s.ring.desc(0, s.hdr, 5, R | NEXT, 1); // header split 5 + 11 bytes
  s.ring.desc(1, s.hdr + 5, 11, R | NEXT, 2);
  s.ring.desc(2, s.buf, 512, W | NEXT, 3);
  s.ring.desc(3, s.buf + 8192, 512, W | NEXT, 4);
  s.ring.desc(4, s.st, 1, W);
  const { len, status } = await runOne(s);
  assert.equal(status, VIRTIO_BLK_S_OK);
  assert.equal(len, 1025);
  assert.deepEqual(s.backend.calls, ['pread 512 512', 'pread 1024 512']);
  assert.ok(s.ring.bytes(s.buf, 512).every((b) => b === 9) && s.ring.bytes(s.buf + 8192, 512).every((b) => b === 9));
});

test('a data address beyond the region completes with IOERR and used.len 1', async () => {
  const s = setup();
  writeChain(s);
  s.ring.desc(1, s.ring.layout.regionBytes + 4096, 512, R | NEXT, 2);
  assert.deepEqual(await runOne(s), { len: 1, status: VIRTIO_BLK_S_IOERR });
  assertUntouched(s);
});

test('a header address inside the control block completes with IOERR and used.len 1', async () => {
  const s = setup();
  writeChain(s);
  s.ring.desc(0, 64, 16, R | NEXT, 1);
  assert.deepEqual(await runOne(s), { len: 1, status: VIRTIO_BLK_S_IOERR });
  assertUntouched(s);
});

test('a buffer pointing at the descriptor table completes with IOERR and used.len 1', async () => {
  const s = setup();
  writeChain(s);
  s.ring.desc(1, s.ring.layout.descOffset, 512, R | NEXT, 2);
  assert.deepEqual(await runOne(s), { len: 1, status: VIRTIO_BLK_S_IOERR });
  assertUntouched(s);
});

test('an address with a non-zero u64 high word completes with IOERR and used.len 1', async () => {
  const s = setup();
  writeChain(s);
  s.ring.desc(1, (1n << 32n) + BigInt(s.buf), 512, R | NEXT, 2);
  assert.deepEqual(await runOne(s), { len: 1, status: VIRTIO_BLK_S_IOERR });
  assertUntouched(s);
});

test('a buffer whose end runs past the data area completes with IOERR and used.len 1', async () => {
  const s = setup();
  writeChain(s);
  s.ring.desc(1, s.ring.layout.regionBytes - 256, 512, R | NEXT, 2);
  assert.deepEqual(await runOne(s), { len: 1, status: VIRTIO_BLK_S_IOERR });
  assertUntouched(s);
});

test('an unmappable status descriptor completes with used.len 0 and writes nothing', async () => {
  const s = setup();
  writeChain(s);
  s.ring.desc(2, 0xffffffff, 1, W);
  assert.deepEqual(await runOne(s), { len: 0, status: 0xee });
  assertUntouched(s);
});

test('a zero-length buffer completes with IOERR and used.len 1', async () => {
  const s = setup();
  writeChain(s);
  s.ring.desc(1, s.buf, 0, R | NEXT, 2);
  assert.deepEqual(await runOne(s), { len: 1, status: VIRTIO_BLK_S_IOERR });
  assertUntouched(s);
});

test('a next index >= queue size completes with used.len 0 (the chain has no end)', async () => {
  const s = setup();
  writeChain(s);
  s.ring.desc(1, s.buf, 512, R | NEXT, N);
  assert.deepEqual(await runOne(s), { len: 0, status: 0xee });
  assertUntouched(s);
  assert.equal(s.device.broken, false);
});

test('a descriptor loop completes with used.len 0 and does not hang', async () => {
  const s = setup();
  writeChain(s);
  s.ring.desc(2, s.st, 1, W | NEXT, 0);
  assert.deepEqual(await runOne(s), { len: 0, status: 0xee });
  assertUntouched(s);
});

test('a chain longer than the segment limit completes with IOERR and used.len 1', async () => {
  const s = setup({ segMax: 2 }); // limit = segMax + 4 = 6 descriptors
  s.ring.header(s.hdr, VIRTIO_BLK_T_OUT, 0);
  s.ring.desc(0, s.hdr, 16, R | NEXT, 1);
  for (let i = 1; i <= 6; i++) s.ring.desc(i, s.buf + 512 * (i - 1), 512, R | NEXT, i + 1);
  s.ring.desc(7, s.st, 1, W);
  assert.deepEqual(await runOne(s), { len: 1, status: VIRTIO_BLK_S_IOERR });
  assertUntouched(s);
});

test('a request through a valid indirect table is executed', async () => {
  const s = setup();
  const table = s.ring.data(16384);
  s.ring.header(s.hdr, VIRTIO_BLK_T_OUT, 1);
  s.ring.bytes(s.buf, 512).fill(3);
  s.ring.indirectDesc(table, 0, s.hdr, 16, R | NEXT, 1);
  s.ring.indirectDesc(table, 1, s.buf, 512, R | NEXT, 2);
  s.ring.indirectDesc(table, 2, s.st, 1, W);
  s.ring.desc(0, table, 48, VIRTQ_DESC_F_INDIRECT);
  assert.deepEqual(await runOne(s), { len: 1, status: VIRTIO_BLK_S_OK });
  assert.deepEqual(s.backend.calls, ['pwrite 512 512']);
});

for (const [name, len] of [['not a multiple of 16', 40], ['zero', 0]] as const) {
  test(`an indirect table whose length is ${name} completes with used.len 0`, async () => {
    const s = setup();
    const table = s.ring.data(16384);
    s.ring.indirectDesc(table, 0, s.hdr, 16, R | NEXT, 1);
    s.ring.indirectDesc(table, 1, s.buf, 512, R | NEXT, 2);
    s.ring.indirectDesc(table, 2, s.st, 1, W);
    s.ring.desc(0, table, len, VIRTQ_DESC_F_INDIRECT);
    assert.deepEqual(await runOne(s), { len: 0, status: 0xee });
    assertUntouched(s);
  });
}

test('a nested indirect descriptor completes with used.len 0', async () => {
  const s = setup();
  const table = s.ring.data(16384);
  s.ring.indirectDesc(table, 0, s.hdr, 16, R | NEXT, 1);
  s.ring.indirectDesc(table, 1, table, 48, VIRTQ_DESC_F_INDIRECT);
  s.ring.desc(0, table, 32, VIRTQ_DESC_F_INDIRECT);
  assert.deepEqual(await runOne(s), { len: 0, status: 0xee });
  assertUntouched(s);
});

test('an indirect descriptor that also has NEXT completes with used.len 0', async () => {
  const s = setup();
  const table = s.ring.data(16384);
  s.ring.indirectDesc(table, 0, s.hdr, 16, R | NEXT, 1);
  s.ring.indirectDesc(table, 1, s.st, 1, W);
  s.ring.desc(0, table, 32, VIRTQ_DESC_F_INDIRECT | NEXT, 1);
  s.ring.desc(1, s.st, 1, W);
  assert.deepEqual(await runOne(s), { len: 0, status: 0xee });
  assertUntouched(s);
});

test('an indirect table outside the data area completes with used.len 0', async () => {
  const s = setup();
  s.ring.desc(0, s.ring.layout.descOffset, 48, VIRTQ_DESC_F_INDIRECT);
  assert.deepEqual(await runOne(s), { len: 0, status: 0xee });
  assertUntouched(s);
});

test('a readable descriptor after a writable one completes with IOERR and used.len 1', async () => {
  const s = setup();
  s.ring.header(s.hdr, VIRTIO_BLK_T_OUT, 0);
  s.ring.desc(0, s.hdr, 16, R | NEXT, 1);
  s.ring.desc(1, s.buf + 1024, 1, W | NEXT, 2);
  s.ring.desc(2, s.buf, 512, R | NEXT, 3);
  s.ring.desc(3, s.st, 1, W);
  assert.deepEqual(await runOne(s), { len: 1, status: VIRTIO_BLK_S_IOERR });
  assertUntouched(s);
});

test('a request without a writable status byte completes with used.len 0', async () => {
  const s = setup();
  s.ring.header(s.hdr, VIRTIO_BLK_T_OUT, 0);
  s.ring.desc(0, s.hdr, 16, R | NEXT, 1);
  s.ring.desc(1, s.buf, 512, R);
  assert.deepEqual(await runOne(s), { len: 0, status: 0xee });
  assertUntouched(s);
  assert.equal(s.device.stats().errors, 1);
});

test('a header shorter than 16 bytes completes with IOERR and used.len 1', async () => {
  const s = setup();
  s.ring.header(s.hdr, VIRTIO_BLK_T_IN, 0);
  s.ring.desc(0, s.hdr, 12, R | NEXT, 1);
  s.ring.desc(1, s.st, 1, W);
  assert.deepEqual(await runOne(s), { len: 1, status: VIRTIO_BLK_S_IOERR });
  assertUntouched(s);
});

test('an unknown request type completes with UNSUPP and used.len 1', async () => {
  const s = setup();
  writeChain(s);
  s.ring.header(s.hdr, 99, 0);
  assert.deepEqual(await runOne(s), { len: 1, status: VIRTIO_BLK_S_UNSUPP });
  assertUntouched(s);
  assert.equal(s.device.stats().unsupported, 1);
});

test('a write ending past the capacity completes with IOERR and used.len 1', async () => {
  const s = setup();
  writeChain(s, CAPACITY / 512 - 1); // last sector: fits
  s.ring.desc(1, s.buf, 1024, R | NEXT, 2); // two sectors: one past the end
  assert.deepEqual(await runOne(s), { len: 1, status: VIRTIO_BLK_S_IOERR });
  assertUntouched(s);
});

test('a sector with a non-zero high word completes with IOERR', async () => {
  const s = setup();
  writeChain(s);
  s.ring.header(s.hdr, VIRTIO_BLK_T_OUT, 1n << 32n);
  assert.deepEqual(await runOne(s), { len: 1, status: VIRTIO_BLK_S_IOERR });
  assertUntouched(s);
});

test('a data length that is not a multiple of 512 completes with IOERR', async () => {
  const s = setup();
  writeChain(s);
  s.ring.desc(1, s.buf, 100, R | NEXT, 2);
  assert.deepEqual(await runOne(s), { len: 1, status: VIRTIO_BLK_S_IOERR });
  assertUntouched(s);
});

test('a read carrying device-readable data completes with IOERR', async () => {
  const s = setup();
  writeChain(s);
  s.ring.header(s.hdr, VIRTIO_BLK_T_IN, 0);
  assert.deepEqual(await runOne(s), { len: 1, status: VIRTIO_BLK_S_IOERR });
  assertUntouched(s);
});

test('a write carrying device-writable data completes with IOERR', async () => {
  const s = setup();
  s.ring.header(s.hdr, VIRTIO_BLK_T_OUT, 0);
  s.ring.desc(0, s.hdr, 16, R | NEXT, 1);
  s.ring.desc(1, s.buf, 512, W | NEXT, 2);
  s.ring.desc(2, s.st, 1, W);
  assert.deepEqual(await runOne(s), { len: 1, status: VIRTIO_BLK_S_IOERR });
  assertUntouched(s);
});

test('a discard with the unmap flag completes with UNSUPP', async () => {
  const s = setup();
  s.ring.header(s.hdr, VIRTIO_BLK_T_DISCARD, 0);
  const seg = new DataView(s.ring.views.u8.buffer, s.hdr + 16, 16);
  seg.setBigUint64(0, 0n, true);
  seg.setUint32(8, 8, true);
  seg.setUint32(12, 1, true);
  s.ring.desc(0, s.hdr, 32, R | NEXT, 1);
  s.ring.desc(1, s.st, 1, W);
  assert.deepEqual(await runOne(s), { len: 1, status: VIRTIO_BLK_S_UNSUPP });
  assertUntouched(s);
});

test('a write-zeroes segment past the capacity completes with IOERR', async () => {
  const s = setup();
  s.ring.header(s.hdr, VIRTIO_BLK_T_WRITE_ZEROES, 0);
  const seg = new DataView(s.ring.views.u8.buffer, s.hdr + 16, 16);
  seg.setBigUint64(0, BigInt(CAPACITY / 512 - 4), true);
  seg.setUint32(8, 8, true);
  seg.setUint32(12, 0, true);
  s.ring.desc(0, s.hdr, 32, R | NEXT, 1);
  s.ring.desc(1, s.st, 1, W);
  assert.deepEqual(await runOne(s), { len: 1, status: VIRTIO_BLK_S_IOERR });
  assertUntouched(s);
});

test('GET_ID writes the 20-byte id and reports 21 bytes in used.len', async () => {
  const s = setup();
  s.ring.header(s.hdr, VIRTIO_BLK_T_GET_ID, 0);
  s.ring.desc(0, s.hdr, 16, R | NEXT, 1);
  s.ring.desc(1, s.buf, 20, W | NEXT, 2);
  s.ring.desc(2, s.st, 1, W);
  assert.deepEqual(await runOne(s), { len: 21, status: VIRTIO_BLK_S_OK });
  assert.equal(Buffer.from(s.ring.bytes(s.buf, 20)).toString('latin1'), 'vol-1' + '\0'.repeat(15));
  assertUntouched(s);
});

test('a backend failure completes with IOERR and used.len 1', async () => {
  const s = setup();
  writeChain(s);
  s.backend.inner.pwrite = async () => { throw new Error('disk on fire'); };
  assert.deepEqual(await runOne(s), { len: 1, status: VIRTIO_BLK_S_IOERR });
  assert.equal(s.device.stats().errors, 1);
});

test('an avail idx jump larger than the queue breaks the queue, reported once and sticky', async () => {
  const s = setup();
  writeChain(s);
  s.ring.publishAvailIdx(N + 1);
  assert.equal(s.device.poll(), 0);
  assert.equal(s.device.broken, true);
  assert.equal(s.device.brokenReason, `avail idx moved by ${N + 1} (queue size ${N})`);
  assert.deepEqual(s.reports, [`avail idx moved by ${N + 1} (queue size ${N})`]);
  assert.equal(Atomics.load(s.ring.views.ctl, Ctl.broken), 1);
  // Sticky: a now-sane ring is still ignored, and nothing is reported again.
  s.ring.publishAvailIdx(1);
  assert.equal(s.device.poll(), 0);
  assert.equal(s.device.enableKick(), true);
  await settle();
  assert.equal(s.reports.length, 1);
  assert.equal(s.ring.usedIdx, 0);
  assertUntouched(s);
});

test('a ring head >= queue size breaks the queue', async () => {
  const s = setup();
  s.ring.offer(N + 3);
  assert.equal(s.device.poll(), 0);
  assert.deepEqual(s.reports, [`avail ring head ${N + 3} >= queue size ${N}`]);
  assertUntouched(s);
});

test('a bad request among good ones fails alone', async () => {
  const s = setup();
  writeChain(s, 0); // head 0: good
  s.ring.header(s.hdr + 64, 99, 0); // head 3: bad type, own header and status
  s.ring.desc(3, s.hdr + 64, 16, R | NEXT, 4);
  s.ring.desc(4, s.st + 1, 1, W);
  s.ring.offer(0, 3);
  assert.equal(s.device.poll(), 2);
  await settle();
  const used = s.ring.takeUsed().sort((a, b) => a.id - b.id);
  assert.deepEqual(used, [{ id: 0, len: 1 }, { id: 3, len: 1 }]);
  assert.equal(s.ring.bytes(s.st, 2)[0], VIRTIO_BLK_S_OK);
  assert.equal(s.ring.bytes(s.st, 2)[1], VIRTIO_BLK_S_UNSUPP);
});
