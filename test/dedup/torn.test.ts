import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import type { WriteFlags } from '../../src/block/types.ts';
import { ioError } from '../../src/util/errors.ts';
import { DedupVolume, type DedupVolumeOptions } from '../../src/functions/dedup/volume.ts';
import { computeLayout, pageProblem, PageType } from '../../src/functions/dedup/format.ts';
import { BLOCK, compressibleBlock, randomBlock } from './data.ts';

const MiB = 1 << 20;
const BACKING = 16 * MiB;
const LOGICAL = 16 * MiB;
const opts = (log: (m: string) => void = () => {}): DedupVolumeOptions => ({ logicalSize: LOGICAL, compression: 'lz4', dedup: true, workers: 0, log });

/**
 * A device that loses power in the middle of one write (after the idea of
 * test/fileserver/fs/torn-device.ts): in the first write `tearWhen` picks, the bytes before
 * the page it names land, and of that page only its first 512-byte sector (the new header
 * and checksum over the old entries); every call after it fails. A checkpoint writes runs
 * of consecutive pages in one pwrite, so the torn page may sit inside a longer write.
 */
class TearingDevice extends MemoryBlockDevice {
  dead = false;
  torn: number | null = null;
  /** Bytes of the write that tore. */
  tornLength = 0;
  /** The block number of the page to tear in this write, or null to let it through. */
  tearWhen: ((offset: number, length: number) => number | null) | null = null;

  override async pread(buf: Uint8Array, offset: number): Promise<void> {
    if (this.dead) throw ioError('device lost power');
    return super.pread(buf, offset);
  }
  override async pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags): Promise<void> {
    if (this.dead) throw ioError('device lost power');
    const page = this.tearWhen?.(offset, buf.byteLength) ?? null;
    if (page !== null) {
      this.bytes.set(buf.subarray(0, page * BLOCK - offset + 512), offset);
      this.dead = true;
      this.torn = page;
      this.tornLength = buf.byteLength;
      throw ioError('device lost power mid-write');
    }
    return super.pwrite(buf, offset, flags);
  }
  override async flush(): Promise<void> {
    if (this.dead) throw ioError('device lost power');
    return super.flush();
  }
}

const contentOf = (lbn: number) => (lbn % 3 === 0 ? compressibleBlock(lbn + 1) : randomBlock(lbn + 1));
// Blocks over several map pages (510 entries each) and refcount entries past the first sector.
const LBNS = Array.from({ length: 400 }, (_, i) => i * 7);

/** Write the data set, flush (one journal commit), then close: the checkpoint's home write of the chosen page tears. */
async function tearDuringCheckpoint(region: 'map' | 'refcount'): Promise<{ image: Uint8Array; torn: number; tornLength: number }> {
  const layout = computeLayout(BACKING, LOGICAL, 'lz4', true);
  const [start, pages] = region === 'map' ? [layout.mapStart, layout.mapPages] : [layout.refStart, layout.refPages];
  const dev = new TearingDevice(BACKING);
  const vol = await DedupVolume.open(dev, opts());
  for (const lbn of LBNS) await vol.pwrite(contentOf(lbn), lbn * BLOCK);
  await vol.pwrite(contentOf(0), 5 * BLOCK); // a duplicate
  await vol.flush();
  // The last page of the region the write covers: the pages before it in the same write land whole.
  dev.tearWhen = (offset, length) => {
    const last = Math.min(start + pages, (offset + length) / BLOCK) - 1;
    return last >= Math.max(start, offset / BLOCK) ? last : null;
  };
  await assert.rejects(vol.close(), { errno: 'EIO' });
  assert.ok(dev.torn !== null, `a ${region} page was torn`);
  return { image: dev.bytes.slice(), torn: dev.torn!, tornLength: dev.tornLength };
}

async function reopenAndVerify(image: Uint8Array): Promise<string[]> {
  const logs: string[] = [];
  const dev = new MemoryBlockDevice(BACKING);
  dev.bytes.set(image);
  const vol = await DedupVolume.open(dev, opts((m) => logs.push(m)));
  for (const lbn of [...LBNS, 5]) {
    const b = new Uint8Array(BLOCK);
    await vol.pread(b, lbn * BLOCK);
    assert.deepEqual(b, contentOf(lbn === 5 ? 0 : lbn), `logical block ${lbn}`);
  }
  assert.deepEqual(await vol.check(), { ok: true, problems: [] });
  await vol.close();
  return logs;
}

test('a map page torn by a crash while it is written home is repaired from the journal on open, with no data lost', async () => {
  const { image, torn, tornLength } = await tearDuringCheckpoint('map');
  assert.ok(tornLength > BLOCK, 'the map pages went home in one write, torn inside it');
  assert.match(pageProblem(image.subarray(torn * BLOCK, (torn + 1) * BLOCK), PageType.Map, torn) ?? '', /checksum/, 'the page on disk is torn');
  const logs = await reopenAndVerify(image);
  assert.ok(logs.some((m) => /replayed \d+ journal transaction/.test(m)), logs.join('\n'));
});

test('a refcount page torn by a crash while it is written home is repaired from the journal on open, with no data lost', async () => {
  const { image, torn } = await tearDuringCheckpoint('refcount');
  assert.match(pageProblem(image.subarray(torn * BLOCK, (torn + 1) * BLOCK), PageType.Refcount, torn) ?? '', /checksum/, 'the page on disk is torn');
  await reopenAndVerify(image);
});

test('half a page written over a map page of a stopped volume is repaired from the journal on open', async () => {
  const dev = new MemoryBlockDevice(BACKING);
  const vol = await DedupVolume.open(dev, opts());
  for (const lbn of LBNS) await vol.pwrite(contentOf(lbn), lbn * BLOCK);
  await vol.pwrite(contentOf(0), 5 * BLOCK);
  await vol.flush(); // committed to the journal; the volume is then stopped without a checkpoint (kill -9)
  const image = dev.bytes.slice();
  const layout = computeLayout(BACKING, LOGICAL, 'lz4', true);
  const page = layout.mapStart + 1;
  image.fill(0xa5, page * BLOCK, page * BLOCK + BLOCK / 2);
  assert.notEqual(pageProblem(image.subarray(page * BLOCK, (page + 1) * BLOCK), PageType.Map, page), null);
  await reopenAndVerify(image);
});
