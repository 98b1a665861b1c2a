import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { native } from '../../src/native/addon.ts';
import { FileBackend } from '../../src/storage/backend.ts';
import { allocAligned, directProbeFd, PROBE_BYTES, SECTOR } from '../../src/storage/aligned.ts';
import { LibuvEngine } from '../../src/storage/engine.ts';
import { tempDir } from '../helpers/tmp.ts';

/**
 * FileBackend's O_DIRECT alignment probe (storage/aligned.ts): JavaScript
 * cannot ask for an address, so the backend finds an aligned start by trying
 * O_DIRECT reads of a probe file. The addon's addressAlignment is the
 * independent witness that what the probe picked really is aligned. The test
 * data directory is on ext4 here (O_DIRECT works); the addon is built by npm ci.
 */
const addon = () => {
  assert.ok(native, 'the native addon must be built (npm ci)');
  return native;
};

function imageIn(dir: string, bytes = 1 << 20): string {
  const path = join(dir, 'vol.img');
  writeFileSync(path, Buffer.alloc(bytes));
  return path;
}

test('the probe file holds a page of real data, so a misaligned O_DIRECT read cannot succeed on a hole', (t) => {
  const dir = tempDir(t);
  const fd = directProbeFd(dir);
  assert.notEqual(fd, undefined, 'O_DIRECT works on this filesystem');
  const probe = join(dir, '.dio-probe');
  assert.equal(statSync(probe).size, PROBE_BYTES);
  assert.ok(statSync(probe).blocks * 512 >= PROBE_BYTES, 'allocated, not sparse');
  assert.ok(readFileSync(probe).every((b) => b === 0x5a));
  assert.equal(directProbeFd(dir), fd, 'one probe descriptor per directory');
});

test('every slab the probe hands out starts on a 512-byte boundary, for many allocation sizes', (t) => {
  const fd = directProbeFd(tempDir(t))!;
  const n = addon();
  for (const size of [1, 512, 4096, 4097, 65536, 128 * 1024 + 7, 1 << 20]) {
    const slab = allocAligned(size, fd);
    assert.equal(slab.aligned, true, `size ${size}`);
    assert.equal(slab.buf.byteLength, size);
    assert.equal(n.addressAlignment(slab.buf) % SECTOR, 0, `size ${size}: the probe picked an unaligned start`);
    assert.ok(slab.buf.every((b) => b === 0), 'the probe read is wiped before the slab is handed out');
  }
});

test('without an O_DIRECT descriptor a slab is plain memory, flagged unaligned', () => {
  const slab = allocAligned(1000);
  assert.equal(slab.aligned, false);
  assert.equal(slab.buf.byteLength, 1000);
});

test('a backend opened direct uses aligned memory and moves data through O_DIRECT both ways', async (t) => {
  const dir = tempDir(t);
  const b = FileBackend.open(imageIn(dir), { engine: new LibuvEngine() });
  t.after(() => b.close());
  assert.equal(b.direct, true);
  const slab = b.alloc(8192);
  assert.equal(addon().addressAlignment(slab.buf) % SECTOR, 0);
  slab.buf.fill(0xc3, 0, 4096);
  await b.write(slab.buf, 0, 4096, 8192);
  await b.read(slab.buf, 4096, 4096, 8192);
  assert.ok(slab.buf.subarray(4096).every((x) => x === 0xc3));
  assert.equal(b.stats.errors, 0);
});

test('a backend opened with direct false is buffered and its memory need not be aligned', async (t) => {
  const dir = tempDir(t);
  const b = FileBackend.open(imageIn(dir), { direct: false, engine: new LibuvEngine() });
  t.after(() => b.close());
  assert.equal(b.direct, false);
  const slab = b.alloc(4096);
  assert.equal(slab.aligned, false);
  const odd = Buffer.alloc(4096 + 3).subarray(3);
  odd.fill(7);
  await b.write(odd, 0, 4096, 0);
  const back = Buffer.alloc(4096);
  await b.read(back, 0, 4096, 0);
  assert.ok(back.every((x) => x === 7));
});

test('reading past the end of the file fills zeroes instead of failing', async (t) => {
  const dir = tempDir(t);
  const b = FileBackend.open(imageIn(dir, 4096), { engine: new LibuvEngine() });
  t.after(() => b.close());
  const slab = b.alloc(8192);
  slab.buf.fill(0xff);
  await b.read(slab.buf, 0, 8192, 0);
  assert.ok(slab.buf.every((x) => x === 0));
});
