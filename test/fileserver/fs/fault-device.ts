import { MemoryBlockDevice } from '../../../src/block/memory-device.ts';
import type { BlockDevice, WriteFlags } from '../../../src/block/types.ts';
import { ioError, noSpace, type StorvisorError } from '../../../src/util/errors.ts';

export type FaultKind = 'EIO' | 'ENOSPC';

interface Fault {
  op: 'pread' | 'pwrite';
  /** Byte offsets the fault applies to: [from, to). */
  from: number;
  to: number;
  /** Matching calls to let through before failing. */
  skip: number;
  /** Matching calls to fail after that. */
  count: number;
  kind: FaultKind;
}

/**
 * A write-through memory device that fails chosen calls: "let `skip` writes to
 * this range through, then fail the next `count` with EIO (or ENOSPC)". A
 * failed write changes nothing. Counts what it failed, so a test can check the
 * fault actually fired.
 */
export class FaultDevice implements BlockDevice {
  readonly mem: MemoryBlockDevice;
  readonly blockSize = 4096;
  readonly readOnly = false;
  readonly writeThrough = true;
  private faults: Fault[] = [];
  failed = 0;

  constructor(size: number) {
    this.mem = new MemoryBlockDevice(size);
  }

  get size(): number {
    return this.mem.size;
  }

  /** The device's bytes right now, as another device (what a crash at this instant would leave). */
  snapshot(): MemoryBlockDevice {
    const copy = new MemoryBlockDevice(this.size);
    copy.bytes.set(this.mem.bytes);
    return copy;
  }

  failWrites(from: number, to: number, opts: { skip?: number; count?: number; kind?: FaultKind } = {}): void {
    this.faults.push({ op: 'pwrite', from, to, skip: opts.skip ?? 0, count: opts.count ?? 1, kind: opts.kind ?? 'EIO' });
  }

  failReads(from: number, to: number, opts: { skip?: number; count?: number; kind?: FaultKind } = {}): void {
    this.faults.push({ op: 'pread', from, to, skip: opts.skip ?? 0, count: opts.count ?? 1, kind: opts.kind ?? 'EIO' });
  }

  clearFaults(): void {
    this.faults = [];
  }

  private check(op: Fault['op'], offset: number, length: number): void {
    for (const f of this.faults) {
      if (f.op !== op || f.count === 0 || offset >= f.to || offset + length <= f.from) continue;
      if (f.skip > 0) {
        f.skip--;
        continue;
      }
      f.count--;
      this.failed++;
      const err: StorvisorError =
        f.kind === 'ENOSPC' ? noSpace('injected: backing store full') : ioError(`injected ${op} error at ${offset}`);
      throw err;
    }
  }

  async pread(buf: Uint8Array, offset: number): Promise<void> {
    this.check('pread', offset, buf.byteLength);
    await this.mem.pread(buf, offset);
  }

  async pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags): Promise<void> {
    this.check('pwrite', offset, buf.byteLength);
    await this.mem.pwrite(buf, offset, flags);
  }

  async flush(): Promise<void> {}

  async trim(offset: number, length: number): Promise<void> {
    return this.zero(offset, length);
  }

  async zero(offset: number, length: number): Promise<void> {
    this.check('pwrite', offset, length);
    await this.mem.zero(offset, length);
  }
}
