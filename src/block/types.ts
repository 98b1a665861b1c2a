/**
 * The one block interface every layer speaks: controller volumes, the guest's
 * queue driver, the NBD client used by gateways, and the virtual volumes that
 * dedup/compression functions export. Shaped after nbdkit's plugin callbacks:
 * caller-owned buffers, byte offsets, promise completion.
 *
 * Contract:
 * - `pread`/`pwrite` transfer exactly `buf.byteLength` bytes at `offset`.
 *   offset + length must be <= size, otherwise the call rejects with an
 *   `ERANGE`-coded StorvisorError (see util/errors.ts) and nothing is touched.
 * - Any byte offset and length is accepted; `blockSize` is the preferred
 *   granularity (aligned I/O is faster, unaligned I/O is read-modify-write).
 * - `pwrite` resolves once the data is durable if `fua` is set, or if the
 *   device is write-through (`writeThrough`); otherwise after `flush`.
 * - `trim` may discard data (reads after it return zeroes or old data);
 *   `zero` guarantees zeroes.
 * - Errors reject with a StorvisorError whose `errno` is one of
 *   EIO, ENOSPC, EINVAL, ERANGE, EROFS, ESHUTDOWN (see util/errors.ts).
 */
/**
 * What a device really does, asked once and cached by the protocols in front
 * of it (after nbdkit's can_trim/can_zero/can_fua/can_flush): the NBD
 * handshake and the virtio-blk config advertise only these.
 */
export interface BlockCapabilities {
  /** trim deallocates (a hole, a discard sent on): not a write of zeroes. */
  readonly trim: boolean;
  /** zero is done by the device itself (a hole, a device command), cheaper than writing zero buffers. */
  readonly zeroes: boolean;
  /** flush makes every acknowledged write durable (always true of a writable device here). */
  readonly flush: boolean;
  /** pwrite honours `fua` (durable before it resolves), natively or by a flush. */
  readonly fua: boolean;
  /** The device has the promise-free `readTo` path (FastReadDevice). */
  readonly fastRead: boolean;
}

export interface BlockDevice {
  /** Size in bytes (a multiple of 512). */
  readonly size: number;
  /** Preferred I/O granularity in bytes (4096 for controller volumes). */
  readonly blockSize: number;
  readonly readOnly: boolean;
  /** True when every acknowledged pwrite is already durable (flush is cheap). */
  readonly writeThrough: boolean;
  /** What the device really does (see BlockDeviceBase); absent: everything (capabilitiesOf). */
  readonly capabilities?: BlockCapabilities;
  pread(buf: Uint8Array, offset: number): Promise<void>;
  pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags): Promise<void>;
  flush(): Promise<void>;
  trim(offset: number, length: number): Promise<void>;
  zero(offset: number, length: number): Promise<void>;
}

/**
 * A completion receiver for the promise-free request path: `tag` identifies the
 * request to its owner, `result` is 0 (or a byte count) on success and a
 * negative errno on failure. One object serves many requests, so nothing is
 * allocated per request.
 */
export interface IoTarget {
  ioDone(tag: number, result: number): void;
}

/** A device that can also read without a promise (controller volumes). */
export interface FastReadDevice extends BlockDevice {
  /**
   * Read buf.byteLength bytes at `offset`; then target.ioDone(tag, 0 | -errno),
   * possibly before this returns. Throws, with nothing started, on a request
   * out of range or a closed device.
   */
  readTo(buf: Uint8Array, offset: number, target: IoTarget, tag: number): void;
}

export const hasFastRead = (d: BlockDevice): d is FastReadDevice => typeof (d as Partial<FastReadDevice>).readTo === 'function';

export interface WriteFlags {
  /** Force unit access: durable before the promise resolves. */
  fua?: boolean;
  /**
   * The write may stay volatile until a later flush(): a write-through device
   * may skip its per-write sync (the write is then in the host's page cache, so
   * it survives the controller's kill -9, and the next flush makes it durable).
   * The caller either flushes before it acknowledges the write, or its own
   * client was told the device is write-back (a guest's write-back queue, an
   * NBD client, which flushes or writes with FUA where it needs durability).
   * Ignored where a write cannot skip it, and never together with `fua`.
   */
  unsynced?: boolean;
}

/** The flag sets hot write paths pass, shared and frozen: no object per write. */
export const FUA_WRITE: WriteFlags = Object.freeze({ fua: true });
export const UNSYNCED_WRITE: WriteFlags = Object.freeze({ unsynced: true });
