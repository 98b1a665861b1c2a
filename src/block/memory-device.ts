import type { WriteFlags } from './types.ts';
import { BlockDeviceBase, type BlockCapabilities } from './device.ts';

/** Memory has nothing to deallocate: zeroing in place is what a discard costs here, so both are offered. */
const CAPABILITIES: BlockCapabilities = Object.freeze({ trim: true, zeroes: true, flush: true, fua: true, fastRead: false });

/**
 * A BlockDevice held in memory: for tests, and as the reference a layered
 * device (queue driver, NBD client, dedup volume) is compared against.
 */
export class MemoryBlockDevice extends BlockDeviceBase {
  readonly size: number;
  readonly blockSize: number;
  readonly readOnly: boolean;
  readonly writeThrough = true;
  readonly capabilities = CAPABILITIES;
  readonly bytes: Uint8Array;

  constructor(size: number, options: { blockSize?: number; readOnly?: boolean } = {}) {
    super();
    this.size = size;
    this.blockSize = options.blockSize ?? 4096;
    this.readOnly = options.readOnly ?? false;
    this.bytes = new Uint8Array(size);
  }

  protected label(): string {
    return 'memory device';
  }

  async pread(buf: Uint8Array, offset: number): Promise<void> {
    this.checkRead(offset, buf.byteLength);
    buf.set(this.bytes.subarray(offset, offset + buf.byteLength));
  }

  async pwrite(buf: Uint8Array, offset: number, _flags?: WriteFlags): Promise<void> {
    this.checkWrite(offset, buf.byteLength);
    this.bytes.set(buf, offset);
  }

  async flush(): Promise<void> {
    this.checkOpen();
  }

  async trim(offset: number, length: number): Promise<void> {
    return this.zero(offset, length);
  }

  async zero(offset: number, length: number): Promise<void> {
    this.checkWrite(offset, length);
    this.bytes.fill(0, offset, offset + length);
  }

  /** Later requests fail with ESHUTDOWN; the bytes stay readable through `bytes`. */
  close(): void {
    this.closed = true;
  }
}
