import type { BlockDevice } from '../block/types.ts';

/**
 * Reads whose data is lent, not copied: the device hands out a view of its own
 * memory (a guest's region slot) and keeps that memory until the borrower gives
 * it back. The NBD server writes such a view to the socket as the reply's
 * payload and returns it once the socket is done with the bytes, so a 4 KiB
 * read in a guest is never copied in user space, and no promise is made.
 */
export interface Lease {
  /** Give the memory back; call exactly once. */
  release(): void;
}

/** The receiver of one lent read (pooled by its owner: nothing is allocated per request). */
export interface LentReadTarget {
  /** `data` is valid until `lease.release()`. Called from the device's completion path, never before readLent returns. */
  lentDone(data: Buffer, lease: Lease): void;
  /** The read failed (nothing to release); may be called before readLent returns. */
  lentFailed(err: Error): void;
}

export interface LentReadDevice extends BlockDevice {
  /**
   * Start a read of `length` bytes at `offset` whose data will be lent to
   * `target`; false, with nothing started, when this request does not qualify
   * (the caller then uses pread).
   */
  readLent(offset: number, length: number, target: LentReadTarget): boolean;
}

export const hasLentRead = (d: BlockDevice): d is LentReadDevice => typeof (d as Partial<LentReadDevice>).readLent === 'function';
