import { hasFastRead, type BlockCapabilities, type BlockDevice, type WriteFlags } from './types.ts';
export type { BlockCapabilities } from './types.ts';
import { outOfRange, readOnly, shutDown, type StorvisorError } from '../util/errors.ts';

/** A writable device that does everything by writing: trim and zero fall back to zero buffers. */
export const PLAIN_CAPABILITIES: BlockCapabilities = Object.freeze({ trim: false, zeroes: false, flush: true, fua: true, fastRead: false });

/**
 * The base every block device extends: the range, read-only and closed checks
 * written once (nbdkit's validate_request, random-access-storage's base), and
 * the capability flags. Subclasses set `closed` when they close and call
 * `checkRead`/`checkWrite` (or the non-throwing `inRange` on a fast path)
 * before touching anything.
 *
 * The checks are a few integer compares: no allocation until one fails, no
 * promise, so they sit on the hot read path without cost.
 */
export abstract class BlockDeviceBase implements BlockDevice {
  abstract readonly size: number;
  abstract readonly blockSize: number;
  abstract readonly readOnly: boolean;
  abstract readonly writeThrough: boolean;
  abstract readonly capabilities: BlockCapabilities;
  /** Set once the device is closed (or broken): every later request is refused with closedError(). */
  protected closed = false;

  /** A name for error messages ("volume v1", "queue driver"). */
  protected abstract label(): string;

  /** Why requests are refused once closed (ESHUTDOWN unless a subclass knows better). */
  protected closedError(): StorvisorError {
    return shutDown(this.label());
  }

  /** Open and [offset, +length) inside the device, with safe integers: the fast path's test, never throwing. */
  protected inRange(offset: number, length: number): boolean {
    return !this.closed && Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset + length <= this.size;
  }

  /** offset and length are whole multiples of `unit` (a power of two no larger than 2^30; offset may exceed 2^32). */
  protected aligned(offset: number, length: number, unit: number): boolean {
    return offset % unit === 0 && (length & (unit - 1)) === 0;
  }

  /** Throws ESHUTDOWN when closed. */
  protected checkOpen(): void {
    if (this.closed) throw this.closedError();
  }

  /** Throws ESHUTDOWN when closed, ERANGE when [offset, +length) is not inside the device. */
  protected checkRead(offset: number, length: number): void {
    if (this.closed) throw this.closedError();
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw outOfRange(offset, length, this.size);
    }
  }

  /** checkRead, and EROFS on a read-only device. */
  protected checkWrite(offset: number, length: number): void {
    if (this.closed) throw this.closedError();
    if (this.readOnly) throw readOnly(this.label());
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw outOfRange(offset, length, this.size);
    }
  }

  abstract pread(buf: Uint8Array, offset: number): Promise<void>;
  abstract pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags): Promise<void>;
  abstract flush(): Promise<void>;
  abstract trim(offset: number, length: number): Promise<void>;
  abstract zero(offset: number, length: number): Promise<void>;
}

/**
 * A device's capabilities. A BlockDevice that does not extend the base (a
 * user's own, or one not yet moved onto it) declares none, and is taken to do
 * everything the interface has, as every device was before the flags existed.
 */
export function capabilitiesOf(device: BlockDevice): BlockCapabilities {
  return device.capabilities ?? (hasFastRead(device) ? UNDECLARED_FAST : UNDECLARED);
}

const UNDECLARED: BlockCapabilities = Object.freeze({ trim: true, zeroes: true, flush: true, fua: true, fastRead: false });
const UNDECLARED_FAST: BlockCapabilities = Object.freeze({ ...UNDECLARED, fastRead: true });
