/** A BlockDevice whose operations complete only when the test releases them (to control completion order). */
import { MemoryBlockDevice } from '../../../src/block/memory-device.ts';
import type { BlockDevice } from '../../../src/block/types.ts';

interface Held {
  op: string;
  release: () => void;
  fail: (err: Error) => void;
}

export class DeferredBlockDevice implements BlockDevice {
  readonly memory: MemoryBlockDevice;
  readonly held: Held[] = [];
  readonly log: string[] = [];
  private arrivals: Array<() => void> = [];
  readonly blockSize = 4096;
  readonly readOnly = false;
  readonly writeThrough = true;

  constructor(readonly size: number) {
    this.memory = new MemoryBlockDevice(size);
  }

  /** Resolve once at least `n` operations are held. */
  async waitHeld(n: number): Promise<void> {
    while (this.held.length < n) await new Promise<void>((r) => this.arrivals.push(r));
  }

  private hold(op: string, run: () => Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.held.push({
        op,
        release: () => { this.log.push(`done ${op}`); run().then(resolve, reject); },
        fail: (err) => reject(err),
      });
      for (const wake of this.arrivals.splice(0)) wake();
    });
  }

  pread(buf: Uint8Array, offset: number) { return this.hold(`pread ${offset}`, () => this.memory.pread(buf, offset)); }
  pwrite(buf: Uint8Array, offset: number) { return this.hold(`pwrite ${offset}`, () => this.memory.pwrite(buf, offset)); }
  flush() { return this.hold('flush', () => this.memory.flush()); }
  trim(offset: number, length: number) { return this.hold(`trim ${offset}`, () => this.memory.trim(offset, length)); }
  zero(offset: number, length: number) { return this.hold(`zero ${offset}`, () => this.memory.zero(offset, length)); }
}
