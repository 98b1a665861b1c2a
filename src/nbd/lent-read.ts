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

/** The receiver of one promise-free write (pooled by its owner). */
export interface WriteTarget {
  /** null: the write is done (durable if FUA, else at the next flush); else why it failed. May be called before writeFrom returns. */
  writeDone(err: Error | null): void;
}

export interface LentReadDevice extends BlockDevice {
  /**
   * The device itself. A wrapper made with Object.create(device) that
   * overrides pread or pwrite (to count or fail them) inherits readLent and
   * writeFrom, which would bypass it; its `lending` is not itself, so it is not
   * taken for a lender.
   */
  readonly lending: LentReadDevice;
  /**
   * Start a read of `length` bytes at `offset` whose data will be lent to
   * `target`; false, with nothing started, when this request does not qualify
   * (the caller then uses pread).
   */
  readLent(offset: number, length: number, target: LentReadTarget): boolean;
  /**
   * Write `src` at `offset` without a promise (`src` must stay unchanged
   * until `target` hears back); false, with nothing
   * started, when the request does not qualify (the caller then uses pwrite).
   * A plain write follows WriteFlags.unsynced (durable at the next flush where
   * the device can defer its sync); `fua` only on a write-through device, which
   * then has it durable before `target` hears back.
   */
  writeFrom(src: Uint8Array, offset: number, target: WriteTarget, fua?: boolean): boolean;
}

export const hasLentRead = (d: BlockDevice): d is LentReadDevice => (d as Partial<LentReadDevice>).lending === d;
