/**
 * Redo journal of whole metadata-page images (jbd2-style physical journaling).
 *
 * A commit writes one transaction, contiguously, with a single pwrite:
 *   descriptor block: magic u32 "SVJT" | version u8 | - | count u16 | seq u64 |
 *                     counters (3 x u64) | crc32 u32 @44 | count x home block u32 @48
 *   count page images (each already a sealed, checksummed metadata page)
 * The descriptor CRC covers the descriptor and every image, so a transaction that was
 * not completely written before a crash is ignored as a whole: commits are atomic.
 *
 * The journal superblock (A/B copies, the newer valid one wins) records the checkpoint:
 * where replay starts and which sequence number it expects there. Replay re-applies
 * images in order, which is idempotent, so it may safely repeat work.
 */
import type { BlockDevice } from '../../block/types.ts';
import { BLOCK, FORMAT_VERSION, blockCrc, getU64, setU64, viewOf, type Layout } from './format.ts';
import { corruptMetadata } from './errors.ts';
import { internalError } from '../../util/errors.ts';
import type { Page } from './page-cache.ts';

const TX_MAGIC = 0x544a5653; // "SVJT"
const JSUPER_MAGIC = 0x534a5653; // "SVJS"
const TX_CRC_AT = 44;
const TX_ADDRS_AT = 48;
export const MAX_TX_PAGES = (BLOCK - TX_ADDRS_AT) / 4; // 1012
const JS_CRC_AT = 60;

/** Volume-wide counters kept with every commit, so opening never scans the metadata. */
export interface Counters {
  /** Logical blocks that map to data (not zero). */
  mappedBlocks: number;
  /** Data blocks with a non-zero refcount entry. */
  usedBlocks: number;
  /** Fragments (whole raw blocks or compressed slots) held by used data blocks. */
  storedFragments: number;
}

const writeCounters = (v: DataView, at: number, c: Counters) => {
  setU64(v, at, c.mappedBlocks);
  setU64(v, at + 8, c.usedBlocks);
  setU64(v, at + 16, c.storedFragments);
};
const readCounters = (v: DataView, at: number): Counters => ({
  mappedBlocks: getU64(v, at),
  usedBlocks: getU64(v, at + 8),
  storedFragments: getU64(v, at + 16),
});

interface JournalSuper {
  seq: number;
  ckptPos: number;
  ckptSeq: number;
  counters: Counters;
}

function encodeJournalSuper(s: JournalSuper): Uint8Array {
  const buf = new Uint8Array(BLOCK);
  const v = viewOf(buf);
  v.setUint32(0, JSUPER_MAGIC, true);
  v.setUint8(4, FORMAT_VERSION);
  setU64(v, 8, s.seq);
  v.setUint32(16, s.ckptPos, true);
  setU64(v, 24, s.ckptSeq);
  writeCounters(v, 32, s.counters);
  v.setUint32(JS_CRC_AT, blockCrc(buf, JS_CRC_AT), true);
  return buf;
}

function decodeJournalSuper(buf: Uint8Array): JournalSuper | null {
  const v = viewOf(buf);
  if (v.getUint32(0, true) !== JSUPER_MAGIC || v.getUint32(JS_CRC_AT, true) !== blockCrc(buf, JS_CRC_AT)) return null;
  return { seq: getU64(v, 8), ckptPos: v.getUint32(16, true), ckptSeq: getU64(v, 24), counters: readCounters(v, 32) };
}

/** Journal superblock for a freshly formatted volume. */
export function initialJournalSuper(): Uint8Array {
  return encodeJournalSuper({ seq: 1, ckptPos: 0, ckptSeq: 1, counters: { mappedBlocks: 0, usedBlocks: 0, storedFragments: 0 } });
}

export class Journal {
  /** Journal blocks used since the checkpoint (including space skipped at a wrap). */
  private live = 0;
  commits = 0;
  checkpoints = 0;

  private constructor(
    private readonly dev: BlockDevice,
    private readonly layout: Layout,
    private head: number,
    private nextSeq: number,
    private superSeq: number,
  ) {}

  /** Journal blocks a commit of `pages` pages may need (its size, plus a wrap's waste). */
  static worstCase(pages: number): number {
    return 2 * (pages + 1);
  }

  /** Blocks still free before a checkpoint is needed. */
  get free(): number {
    return this.layout.journalBlocks - this.live;
  }

  /**
   * Read the checkpoint, replay every complete transaction after it into the pages'
   * home locations, and checkpoint again. Returns the journal and the counters of the
   * last committed state.
   */
  static async recover(
    dev: BlockDevice,
    layout: Layout,
    log: (msg: string) => void,
  ): Promise<{ journal: Journal; counters: Counters; replayed: number }> {
    const two = new Uint8Array(2 * BLOCK);
    await dev.pread(two, BLOCK);
    const candidates = [decodeJournalSuper(two.subarray(0, BLOCK)), decodeJournalSuper(two.subarray(BLOCK))];
    const best = candidates.reduce<JournalSuper | null>((a, b) => (b && (!a || b.seq > a.seq) ? b : a), null);
    if (!best || best.ckptPos >= layout.journalBlocks) {
      const err = corruptMetadata('journal superblock', 1, 'neither copy is valid');
      log(err.message);
      throw err;
    }
    let pos = best.ckptPos;
    let seq = best.ckptSeq;
    let counters = best.counters;
    let replayed = 0;
    for (;;) {
      const tx = (await readTx(dev, layout, pos, seq)) ?? (pos !== 0 ? await readTx(dev, layout, 0, seq) : null);
      if (!tx) break;
      for (let i = 0; i < tx.addrs.length; i++) {
        await dev.pwrite(tx.images.subarray(i * BLOCK, (i + 1) * BLOCK), tx.addrs[i]! * BLOCK);
      }
      counters = tx.counters;
      pos = (tx.pos + 1 + tx.addrs.length) % layout.journalBlocks;
      seq++;
      replayed++;
    }
    const journal = new Journal(dev, layout, pos, seq, best.seq);
    if (replayed > 0) {
      log(`dedup: replayed ${replayed} journal transaction(s)`);
      await dev.flush();
      await journal.checkpoint(counters);
    }
    return { journal, counters, replayed };
  }

  /**
   * Write `pages` (sealed by the caller) as one transaction and make it durable. The
   * caller has already made the data those pages point to durable.
   */
  async commit(pages: Page[], counters: Counters): Promise<void> {
    const j = this.layout.journalBlocks;
    const k = 1 + pages.length;
    if (pages.length > MAX_TX_PAGES) throw internalError(`journal transaction of ${pages.length} pages exceeds ${MAX_TX_PAGES}`);
    let pos = this.head;
    let waste = 0;
    if (pos + k > j) {
      waste = j - pos;
      pos = 0;
    }
    if (this.live + waste + k > j) throw internalError('journal full: checkpoint was not taken in time');
    const buf = new Uint8Array(k * BLOCK);
    const v = viewOf(buf);
    v.setUint32(0, TX_MAGIC, true);
    v.setUint8(4, FORMAT_VERSION);
    v.setUint16(6, pages.length, true);
    setU64(v, 8, this.nextSeq);
    writeCounters(v, 16, counters);
    pages.forEach((p, i) => {
      v.setUint32(TX_ADDRS_AT + 4 * i, p.no, true);
      buf.set(p.buf, (i + 1) * BLOCK);
    });
    v.setUint32(TX_CRC_AT, txCrc(buf), true);
    await this.dev.pwrite(buf, (this.layout.journalStart + pos) * BLOCK);
    await this.dev.flush();
    this.head = (pos + k) % j;
    this.live += waste + k;
    this.nextSeq++;
    this.commits++;
  }

  /**
   * Declare the journal empty. The caller has written every committed page home and
   * flushed, so replay may start at the current head.
   */
  async checkpoint(counters: Counters): Promise<void> {
    this.superSeq++;
    const buf = encodeJournalSuper({ seq: this.superSeq, ckptPos: this.head, ckptSeq: this.nextSeq, counters });
    await this.dev.pwrite(buf, (1 + (this.superSeq % 2)) * BLOCK);
    await this.dev.flush();
    this.live = 0;
    this.checkpoints++;
  }
}

function txCrc(tx: Uint8Array): number {
  return blockCrc(tx, TX_CRC_AT);
}

async function readTx(
  dev: BlockDevice,
  layout: Layout,
  pos: number,
  seq: number,
): Promise<{ pos: number; addrs: number[]; images: Uint8Array; counters: Counters } | null> {
  const desc = new Uint8Array(BLOCK);
  await dev.pread(desc, (layout.journalStart + pos) * BLOCK);
  const v = viewOf(desc);
  const count = v.getUint16(6, true);
  if (v.getUint32(0, true) !== TX_MAGIC || getU64(v, 8) !== seq) return null;
  if (count > MAX_TX_PAGES || pos + 1 + count > layout.journalBlocks) return null;
  const tx = new Uint8Array((1 + count) * BLOCK);
  tx.set(desc);
  await dev.pread(tx.subarray(BLOCK), (layout.journalStart + pos + 1) * BLOCK);
  if (v.getUint32(TX_CRC_AT, true) !== txCrc(tx)) return null;
  const addrs: number[] = [];
  const journaledEnd = layout.refStart + layout.refPages;
  for (let i = 0; i < count; i++) {
    const a = v.getUint32(TX_ADDRS_AT + 4 * i, true);
    // A valid CRC with a home outside the journaled metadata would be a bug, not damage.
    if (a < layout.mapStart || a >= journaledEnd) return null;
    addrs.push(a);
  }
  return { pos, addrs, images: tx.subarray(BLOCK), counters: readCounters(v, 16) };
}
