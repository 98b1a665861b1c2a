import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import type { WriteFlags } from '../../src/block/types.ts';
import { DedupVolume, type DedupVolumeOptions } from '../../src/functions/dedup/volume.ts';
import { computeLayout } from '../../src/functions/dedup/format.ts';
import { BLOCK, randomBlock } from './data.ts';

const MiB = 1 << 20;
const BACKING = 16 * MiB;
const LOGICAL = 8 * MiB;
const opts: DedupVolumeOptions = { logicalSize: LOGICAL, compression: 'lz4', dedup: true, workers: 0, log: () => {} };

/** Records every read and write: block number and length in blocks. */
class CountingDevice extends MemoryBlockDevice {
  reads: Array<[number, number]> = [];
  writes: Array<[number, number]> = [];
  override async pread(buf: Uint8Array, offset: number): Promise<void> {
    this.reads.push([offset / BLOCK, buf.byteLength / BLOCK]);
    return super.pread(buf, offset);
  }
  override async pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags): Promise<void> {
    this.writes.push([offset / BLOCK, buf.byteLength / BLOCK]);
    return super.pwrite(buf, offset, flags);
  }
}

const inRegion = (start: number, pages: number) => ([no, n]: [number, number]) => no < start + pages && no + n > start;

test('a fresh volume reads its index pages in runs of neighbours during a sequential write, not one read per page', async () => {
  const dev = new CountingDevice(BACKING);
  const layout = computeLayout(BACKING, LOGICAL, 'lz4', true);
  const vol = await DedupVolume.open(dev, opts);
  dev.reads = [];
  const blocks = LOGICAL / BLOCK;
  const data = new Uint8Array(LOGICAL);
  for (let i = 0; i < blocks; i++) data.set(randomBlock(i + 1), i * BLOCK);
  for (let off = 0; off < LOGICAL; off += 256 << 10) await vol.pwrite(data.subarray(off, off + (256 << 10)), off);
  const indexReads = dev.reads.filter(inRegion(layout.indexStart, layout.indexPages));
  const pagesRead = indexReads.reduce((s, [, n]) => s + n, 0);
  assert.ok(pagesRead >= layout.indexPages * 0.9, `the write touched (nearly) every index page: ${pagesRead} of ${layout.indexPages}`);
  assert.ok(indexReads.length <= Math.ceil(layout.indexPages / 16) + 4, `${indexReads.length} reads for ${layout.indexPages} index pages`);
  const back = new Uint8Array(LOGICAL);
  await vol.pread(back, 0);
  assert.ok(Buffer.from(back).equals(data), 'every block reads back');
  assert.deepEqual(await vol.check(), { ok: true, problems: [] });
  await vol.close();
});

test('a checkpoint writes consecutive committed map pages home in one write', async () => {
  const dev = new CountingDevice(BACKING);
  const layout = computeLayout(BACKING, LOGICAL, 'lz4', true);
  const vol = await DedupVolume.open(dev, opts);
  const lbns = Array.from({ length: 4 }, (_, k) => k * 510); // one block on each of four map pages
  for (const lbn of lbns) await vol.pwrite(randomBlock(lbn + 7), lbn * BLOCK);
  await vol.flush();
  dev.writes = [];
  await vol.close(); // the checkpoint writes the committed pages home
  const mapWrites = dev.writes.filter(inRegion(layout.mapStart, layout.mapPages));
  assert.deepEqual(mapWrites, [[layout.mapStart, 4]]);
  const again = await DedupVolume.open(dev, opts);
  for (const lbn of lbns) {
    const b = new Uint8Array(BLOCK);
    await again.pread(b, lbn * BLOCK);
    assert.deepEqual(b, randomBlock(lbn + 7), `logical block ${lbn}`);
  }
  assert.deepEqual(await again.check(), { ok: true, problems: [] });
  await again.close();
});
