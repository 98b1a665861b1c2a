import type { MetaCache } from './cache.ts';
import type { Handle } from './journal.ts';
import { BITS_PER_BLOCK } from './superblock.ts';
import { fsError } from '../../../util/errors.ts';

/** Count set bits of one bitmap block, ignoring bits past `limit`. */
function countSet(buf: Uint8Array, limit: number): number {
  let n = 0;
  const bytes = Math.ceil(limit / 8);
  for (let i = 0; i < bytes; i++) {
    let x = buf[i];
    if (i === bytes - 1 && limit % 8 !== 0) x &= (1 << limit % 8) - 1;
    while (x) {
      x &= x - 1;
      n++;
    }
  }
  return n;
}

/**
 * A bitmap of `count` items stored in consecutive metadata blocks, changed only
 * through journal handles. Keeps the free count in memory (counted at mount).
 */
export class Bitmap {
  free = 0;
  private hint = 0;

  constructor(
    private readonly cache: MetaCache,
    private readonly start: number,
    readonly count: number,
  ) {}

  private blocks(): number {
    return Math.ceil(this.count / BITS_PER_BLOCK);
  }

  async countFree(): Promise<void> {
    let used = 0;
    for (let i = 0; i < this.blocks(); i++) {
      const e = await this.cache.load(this.start + i);
      used += countSet(e.buf, Math.min(BITS_PER_BLOCK, this.count - i * BITS_PER_BLOCK));
    }
    this.free = this.count - used;
  }

  /**
   * Find and set a clear bit at or after the hint, skipping items `skip` rejects.
   * Returns -1 when none is free. If the handle aborts, the bit is cleared again
   * and `onUndo` accounts for the item (default: it is free again at once).
   */
  async allocate(h: Handle, skip?: (item: number) => boolean, onUndo: (item: number) => void = () => this.free++): Promise<number> {
    const nb = this.blocks();
    const first = Math.floor(this.hint / BITS_PER_BLOCK);
    for (let k = 0; k <= nb; k++) {
      const bi = (first + k) % nb;
      const buf = await h.get(this.start + bi);
      const base = bi * BITS_PER_BLOCK;
      const limit = Math.min(BITS_PER_BLOCK, this.count - base);
      const startBit = k === 0 ? this.hint % BITS_PER_BLOCK : 0;
      for (let byte = startBit >> 3; byte * 8 < limit; byte++) {
        if (buf[byte] === 0xff) continue;
        for (let bit = 0; bit < 8; bit++) {
          const idx = byte * 8 + bit;
          if (idx >= limit) break;
          if (buf[byte] & (1 << bit)) continue;
          const item = base + idx;
          if (skip?.(item)) continue;
          buf[byte] |= 1 << bit;
          h.dirty(this.start + bi);
          this.free--;
          const mask = 1 << bit;
          h.onAbort(() => {
            buf[byte] &= ~mask;
            onUndo(item);
          });
          this.hint = item + 1 >= this.count ? 0 : item + 1;
          return item;
        }
      }
    }
    return -1;
  }

  /**
   * Find the first clear bit at or after the hint (as `allocate`) and set it and
   * up to `max - 1` clear bits right after it, within one bitmap block: one run
   * of consecutive items. Returns the first item and the run length (0 when
   * nothing is free). If the handle aborts, the bits still set are cleared and
   * `onUndo` accounts for each item.
   */
  async allocateRun(
    h: Handle,
    max: number,
    skip: (item: number) => boolean,
    onUndo: (item: number) => void,
  ): Promise<{ start: number; count: number; giveBack: (n: number) => void }> {
    const first = await this.allocate(h, skip, onUndo);
    if (first < 0) return { start: -1, count: 0, giveBack: () => {} };
    const bi = Math.floor(first / BITS_PER_BLOCK);
    const buf = await h.get(this.start + bi);
    const base = bi * BITS_PER_BLOCK;
    const limit = Math.min(BITS_PER_BLOCK, this.count - base);
    let count = 1;
    while (count < max) {
      const idx = first - base + count;
      if (idx >= limit) break;
      const mask = 1 << (idx & 7);
      if (buf[idx >> 3] & mask || skip(base + idx)) break;
      buf[idx >> 3] |= mask;
      count++;
    }
    const extra = count - 1;
    // Undo of the extension (the first item has its own): clears what is still set.
    let held = extra;
    if (extra > 0) {
      this.free -= extra;
      h.onAbort(() => {
        for (let i = 1; i <= held; i++) {
          const idx = first - base + i;
          buf[idx >> 3] &= ~(1 << (idx & 7));
          onUndo(base + idx);
        }
      });
    }
    this.hint = first + count >= this.count ? 0 : first + count;
    /** Return the last `n` items of the extension unused (never the first item). */
    const giveBack = (n: number): void => {
      const k = Math.min(n, held);
      for (let i = held - k + 1; i <= held; i++) {
        const idx = first - base + i;
        buf[idx >> 3] &= ~(1 << (idx & 7));
      }
      held -= k;
      this.free += k;
      if (this.hint === first + count) this.hint = first + 1 + held;
    };
    return { start: first, count, giveBack };
  }

  /**
   * Find (without setting anything) the first clear bit at or after the hint that
   * `skip` does not reject, and up to `max - 1` more clear, unrejected bits right
   * after it in the same bitmap block, and hand them to `take` before anything
   * else can run. Moves the hint past the run. Reads the cached blocks directly:
   * what a claim (BlockAllocator.claim) holds in memory only until a handle sets the bits.
   */
  async findRun(max: number, skip: (item: number) => boolean, take: (start: number, count: number) => void): Promise<{ start: number; count: number }> {
    const nb = this.blocks();
    const first = Math.floor(this.hint / BITS_PER_BLOCK);
    for (let k = 0; k <= nb; k++) {
      const bi = (first + k) % nb;
      const l = this.cache.load(this.start + bi);
      const buf = (l instanceof Promise ? await l : l).buf;
      const base = bi * BITS_PER_BLOCK;
      const limit = Math.min(BITS_PER_BLOCK, this.count - base);
      const startBit = k === 0 ? this.hint % BITS_PER_BLOCK : 0;
      for (let idx = startBit; idx < limit; idx++) {
        if (buf[idx >> 3] === 0xff && (idx & 7) === 0) {
          idx += 7;
          continue;
        }
        if (buf[idx >> 3] & (1 << (idx & 7)) || skip(base + idx)) continue;
        let count = 1;
        while (count < max && idx + count < limit && !(buf[(idx + count) >> 3] & (1 << ((idx + count) & 7))) && !skip(base + idx + count)) count++;
        const start = base + idx;
        this.hint = start + count >= this.count ? 0 : start + count;
        // Taken in this same synchronous step: a concurrent finder resumes only after it.
        take(start, count);
        return { start, count };
      }
    }
    return { start: -1, count: 0 };
  }

  /**
   * Set bits start .. start+count-1 (clear, in one bitmap block, held by the
   * caller's claim) through `h`; undone (and `onUndo` called for each) if the handle aborts.
   */
  async setRun(h: Handle, start: number, count: number, onUndo: (item: number) => void): Promise<void> {
    const bi = Math.floor(start / BITS_PER_BLOCK);
    if (Math.floor((start + count - 1) / BITS_PER_BLOCK) !== bi) throw fsError('IO', `run ${start}+${count} crosses a bitmap block`);
    const l = h.get(this.start + bi);
    const buf = l instanceof Promise ? await l : l;
    const first = start % BITS_PER_BLOCK;
    for (let b = first; b < first + count; b++) {
      if (buf[b >> 3] & (1 << (b & 7))) throw fsError('IO', `claimed item ${start + b - first} is already allocated`);
    }
    for (let b = first; b < first + count; b++) buf[b >> 3] |= 1 << (b & 7);
    h.dirty(this.start + bi);
    h.onAbort(() => {
      for (let b = first; b < first + count; b++) {
        buf[b >> 3] &= ~(1 << (b & 7));
        onUndo(start + b - first);
      }
    });
  }

  async clear(h: Handle, item: number): Promise<void> {
    const bi = Math.floor(item / BITS_PER_BLOCK);
    const buf = await h.get(this.start + bi);
    const bit = item % BITS_PER_BLOCK;
    if (!(buf[bit >> 3] & (1 << (bit & 7)))) throw fsError('IO', `freeing item ${item} that is not allocated`);
    buf[bit >> 3] &= ~(1 << (bit & 7));
    h.dirty(this.start + bi);
  }
}

/**
 * Data-block allocation with reservations and a quarantine: a block freed by
 * transaction T stays unusable until a checkpoint covers T (see journal.ts).
 */
export class BlockAllocator {
  /** Blocks promised to operations in flight (checked before they touch anything). */
  reserved = 0;
  private readonly quarantine = new Map<number, number>();
  /**
   * Blocks claimed in memory by writes in flight (write-before-map): not set in
   * the bitmap yet, so a crash leaves them free, but no allocation hands them out.
   */
  private readonly claimed = new Set<number>();
  private readonly unusable = (item: number): boolean => this.quarantine.has(item) || this.claimed.has(item);

  constructor(readonly bitmap: Bitmap) {}

  get claimedBlocks(): number {
    return this.claimed.size;
  }

  /** Blocks an operation may still claim. */
  get available(): number {
    return this.bitmap.free - this.reserved;
  }

  get quarantined(): number {
    return this.quarantine.size;
  }

  tryReserve(n: number): boolean {
    if (n > this.available) return false;
    this.reserved += n;
    return true;
  }

  unreserve(n: number): void {
    this.reserved -= n;
  }

  /** Allocate one block out of the caller's reservation. */
  async allocate(h: Handle): Promise<number> {
    // An aborted allocation goes to the quarantine, not straight back to free: the
    // handle may have made it a metadata block (an indirect block), whose zeroed
    // copy still commits with the running transaction; reusing it for file data
    // before a checkpoint would let a replay write that copy over the data.
    const b = await this.bitmap.allocate(
      h,
      this.unusable,
      (item) => this.quarantine.set(item, h.seq),
    );
    if (b < 0) throw fsError('NOSPC', 'no free block (reservation accounting is off)');
    this.reserved--;
    h.allocated++;
    h.onAbort(() => {
      this.reserved++;
      h.allocated--;
    });
    return b;
  }

  /**
   * Allocate up to `max` consecutive blocks out of the caller's reservation (an
   * extent for a large write): one bitmap scan, blocks that sit together on the
   * volume so their data goes out in one device write. `giveBack(n)` returns the
   * last n of them unused (to free and to the reservation) before the handle ends.
   */
  async allocateRun(h: Handle, max: number): Promise<{ start: number; count: number; giveBack: (n: number) => void }> {
    const run = await this.bitmap.allocateRun(
      h,
      max,
      this.unusable,
      (item) => this.quarantine.set(item, h.seq),
    );
    if (run.count === 0) throw fsError('NOSPC', 'no free block (reservation accounting is off)');
    let held = run.count;
    this.reserved -= held;
    h.allocated += held;
    h.onAbort(() => {
      this.reserved += held;
      h.allocated -= held;
    });
    return {
      start: run.start,
      count: run.count,
      giveBack: (n: number) => {
        const k = Math.min(n, held - 1);
        run.giveBack(k);
        held -= k;
        this.reserved += k;
        h.allocated -= k;
      },
    };
  }

  /**
   * Claim up to `max` consecutive free blocks out of the caller's reservation,
   * in memory only (write-before-map): the caller writes file data into them
   * outside any lock or transaction, then sets their bits with `commitClaim` in
   * the transaction that maps them, or hands back the ones it did not map with
   * `releaseClaim`. Nothing is on the volume until that transaction commits, so
   * a crash before it leaves the blocks free and the file as it was.
   */
  async claim(max: number): Promise<{ start: number; count: number }> {
    const run = await this.bitmap.findRun(max, this.unusable, this.take);
    if (run.count === 0) throw fsError('NOSPC', 'no free block (reservation accounting is off)');
    return run;
  }

  private readonly take = (start: number, count: number): void => {
    for (let i = 0; i < count; i++) this.claimed.add(start + i);
    this.bitmap.free -= count;
    this.reserved -= count;
  };

  /** Set the bits of claimed run start+count in `h` (allocated from now on; quarantined if the handle aborts). */
  async commitClaim(h: Handle, start: number, count: number): Promise<void> {
    for (let i = 0; i < count; i++) if (!this.claimed.has(start + i)) throw fsError('IO', `block ${start + i} is not claimed`);
    await this.bitmap.setRun(h, start, count, (item) => this.quarantine.set(item, h.seq));
    for (let i = 0; i < count; i++) this.claimed.delete(start + i);
  }

  /** Claimed blocks that will not be mapped are free again (their reservation stays with the caller, who gives it back). */
  releaseClaim(block: number): void {
    if (this.claimed.delete(block)) this.bitmap.free++;
  }

  async free(h: Handle, block: number): Promise<void> {
    await this.bitmap.clear(h, block);
    this.quarantine.set(block, h.seq);
  }

  /** A checkpoint covered every transaction up to `seq`: their frees become allocatable. */
  release(seq: number): void {
    for (const [b, s] of this.quarantine) {
      if (s <= seq) {
        this.quarantine.delete(b);
        this.bitmap.free++;
      }
    }
  }
}
