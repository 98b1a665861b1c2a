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
export interface BlockDevice {
  /** Size in bytes (a multiple of 512). */
  readonly size: number;
  /** Preferred I/O granularity in bytes (4096 for controller volumes). */
  readonly blockSize: number;
  readonly readOnly: boolean;
  /** True when every acknowledged pwrite is already durable (flush is cheap). */
  readonly writeThrough: boolean;
  pread(buf: Uint8Array, offset: number): Promise<void>;
  pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags): Promise<void>;
  flush(): Promise<void>;
  trim(offset: number, length: number): Promise<void>;
  zero(offset: number, length: number): Promise<void>;
}

export interface WriteFlags {
  /** Force unit access: durable before the promise resolves. */
  fua?: boolean;
}
