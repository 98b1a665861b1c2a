import { MemoryBlockDevice } from '../../src/block/memory-device.ts';

/**
 * A memory device whose reads wait until the test releases them, so tests can
 * hold requests in flight and observe what the server does meanwhile.
 */
export class GatedDevice extends MemoryBlockDevice {
  private gates: (() => void)[] = [];
  private waiters: { n: number; resolve: () => void }[] = [];
  inflight = 0;
  maxInflight = 0;
  started = 0;

  override async pread(buf: Uint8Array, offset: number): Promise<void> {
    this.started++;
    this.inflight++;
    this.maxInflight = Math.max(this.maxInflight, this.inflight);
    this.waiters = this.waiters.filter((w) => (this.started >= w.n ? (w.resolve(), false) : true));
    await new Promise<void>((resolve) => this.gates.push(resolve));
    this.inflight--;
    return super.pread(buf, offset);
  }

  /** Resolves once `n` reads have started in total. */
  startedAtLeast(n: number): Promise<void> {
    if (this.started >= n) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ n, resolve }));
  }

  releaseAll(): void {
    for (const g of this.gates.splice(0)) g();
  }
}
