import { MemoryBlockDevice } from '../../../src/block/memory-device.ts';
import type { BlockDevice, WriteFlags } from '../../../src/block/types.ts';
import { ioError } from '../../../src/util/errors.ts';

/**
 * A device with a volatile write cache, for torn-crash tests: writes land in
 * `durable` only when a flush (or FUA) follows them. After the operations
 * allowed by `arm` the device "loses power": every later call fails, and
 * `crashImage()` returns what survived — the durable bytes, plus, if asked, a
 * random subset of the unflushed writes (a cache that wrote back some of them
 * in any order).
 */
/** One call the device saw, in order (for tests that check write ordering). */
export type DeviceEvent =
  | { op: 'write'; offset: number; length: number; fua: boolean; /** First u32 (LE) of every 4 KiB block written: their magics. */ magics: number[] }
  | { op: 'flush' };

export class TornDevice implements BlockDevice {
  readonly size: number;
  readonly blockSize = 4096;
  readonly readOnly = false;
  readonly writeThrough = false;
  readonly durable: Uint8Array;
  private readonly volatile: MemoryBlockDevice;
  private pending: Array<{ offset: number; data: Uint8Array }> = [];
  ops = 0;
  crashed = false;
  /** Every write and flush that reached the device, in order. */
  readonly events: DeviceEvent[] = [];

  private crashAfter = Infinity;

  constructor(size: number) {
    this.size = size;
    this.durable = new Uint8Array(size);
    this.volatile = new MemoryBlockDevice(size);
  }

  /** Lose power after `n` more operations. */
  arm(n: number): void {
    this.crashAfter = this.ops + n;
  }

  private tick(): void {
    if (this.crashed) throw ioError('device lost power');
    if (++this.ops > this.crashAfter) {
      this.crashed = true;
      throw ioError('device lost power');
    }
  }

  async pread(buf: Uint8Array, offset: number): Promise<void> {
    this.tick();
    await this.volatile.pread(buf, offset);
  }

  async pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags): Promise<void> {
    this.tick();
    const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const magics: number[] = [];
    for (let at = 0; at + 4 <= buf.byteLength; at += 4096) magics.push(v.getUint32(at, true));
    this.events.push({ op: 'write', offset, length: buf.byteLength, fua: flags?.fua === true, magics });
    await this.volatile.pwrite(buf, offset);
    if (flags?.fua) this.durable.set(buf, offset);
    else this.pending.push({ offset, data: buf.slice() });
  }

  async flush(): Promise<void> {
    this.tick();
    this.events.push({ op: 'flush' });
    for (const w of this.pending) this.durable.set(w.data, w.offset);
    this.pending = [];
  }

  async trim(offset: number, length: number): Promise<void> {
    return this.zero(offset, length);
  }

  async zero(offset: number, length: number): Promise<void> {
    return this.pwrite(new Uint8Array(length), offset);
  }

  /** The bytes a restart would find, as a fresh device. */
  crashImage(keepSomeUnflushed: (i: number, offset: number) => boolean = () => false): MemoryBlockDevice {
    const dev = new MemoryBlockDevice(this.size);
    dev.bytes.set(this.durable);
    this.pending.forEach((w, i) => keepSomeUnflushed(i, w.offset) && dev.bytes.set(w.data, w.offset));
    return dev;
  }
}
