import type { BlockDevice, WriteFlags } from './types.ts';
import { outOfRange, readOnly } from '../util/errors.ts';

/**
 * A BlockDevice held in memory: for tests, and as the reference a layered
 * device (queue driver, NBD client, dedup volume) is compared against.
 */
export class MemoryBlockDevice implements BlockDevice {
  readonly size: number;
  readonly blockSize: number;
  readonly readOnly: boolean;
  readonly writeThrough = true;
  readonly bytes: Uint8Array;

  constructor(size: number, options: { blockSize?: number; readOnly?: boolean } = {}) {
    this.size = size;
    this.blockSize = options.blockSize ?? 4096;
    this.readOnly = options.readOnly ?? false;
    this.bytes = new Uint8Array(size);
  }

  private check(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw outOfRange(offset, length, this.size);
    }
  }

  async pread(buf: Uint8Array, offset: number): Promise<void> {
    this.check(offset, buf.byteLength);
    buf.set(this.bytes.subarray(offset, offset + buf.byteLength));
  }

  async pwrite(buf: Uint8Array, offset: number, _flags?: WriteFlags): Promise<void> {
    if (this.readOnly) throw readOnly('memory device');
    this.check(offset, buf.byteLength);
    this.bytes.set(buf, offset);
  }

  async flush(): Promise<void> {}

  async trim(offset: number, length: number): Promise<void> {
    return this.zero(offset, length);
  }

  async zero(offset: number, length: number): Promise<void> {
    if (this.readOnly) throw readOnly('memory device');
    this.check(offset, length);
    this.bytes.fill(0, offset, offset + length);
  }
}
