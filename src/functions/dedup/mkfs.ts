/**
 * Format a blank backing volume: every metadata page is written initialised (so an
 * all-zero page later is damage, not "empty"), the journal is zeroed (so no stale
 * transaction can ever be replayed), and the superblock goes last (a crash during
 * format leaves a blank volume that is formatted again on the next open).
 */
import type { BlockDevice } from '../../block/types.ts';
import { BLOCK, PageType, initPage, sealPage, encodeSuperblock, type Layout } from './format.ts';
import { initialJournalSuper } from './journal.ts';

const BATCH = 256; // pages per pwrite

export async function formatVolume(dev: BlockDevice, layout: Layout): Promise<void> {
  await writeZeroes(dev, layout.journalStart, layout.journalBlocks);
  await writePages(dev, PageType.Map, layout.mapStart, layout.mapPages);
  await writePages(dev, PageType.Refcount, layout.refStart, layout.refPages);
  await writePages(dev, PageType.Index, layout.indexStart, layout.indexPages);
  const js = initialJournalSuper();
  await dev.pwrite(js, 2 * BLOCK); // seq 1 lives in copy (1 + 1 % 2) = block 2
  await dev.pwrite(new Uint8Array(BLOCK), 1 * BLOCK);
  await dev.flush();
  await dev.pwrite(encodeSuperblock(layout), 0);
  await dev.flush();
}

async function writeZeroes(dev: BlockDevice, start: number, blocks: number): Promise<void> {
  const zero = new Uint8Array(Math.min(blocks, BATCH) * BLOCK);
  for (let b = 0; b < blocks; b += BATCH) {
    const n = Math.min(BATCH, blocks - b);
    await dev.pwrite(zero.subarray(0, n * BLOCK), (start + b) * BLOCK);
  }
}

async function writePages(dev: BlockDevice, type: PageType, start: number, pages: number): Promise<void> {
  const buf = new Uint8Array(Math.min(pages, BATCH) * BLOCK);
  for (let p = 0; p < pages; p += BATCH) {
    const n = Math.min(BATCH, pages - p);
    for (let i = 0; i < n; i++) {
      const page = buf.subarray(i * BLOCK, (i + 1) * BLOCK);
      initPage(page, type, start + p + i);
      sealPage(page);
    }
    await dev.pwrite(buf.subarray(0, n * BLOCK), (start + p) * BLOCK);
  }
}
