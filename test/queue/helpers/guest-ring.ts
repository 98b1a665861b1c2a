/**
 * A hand-driven guest for device tests: writes descriptors, ring entries and
 * request headers directly into the region, so tests can build any chain,
 * including malformed ones the real driver never produces.
 */
import { RegionViews, regionLayout, type RegionLayout } from '../../../src/queue/layout.ts';
import type { BlockDevice, WriteFlags } from '../../../src/block/types.ts';

export class GuestRing {
  readonly layout: RegionLayout;
  readonly views: RegionViews;
  private availIdx = 0;
  private lastUsed = 0;

  constructor(region: SharedArrayBuffer | ArrayBuffer) {
    this.layout = regionLayout(region);
    this.views = new RegionViews(region, this.layout);
  }

  /** Guest address of byte `offset` of the data area. */
  data(offset: number): number {
    return this.layout.dataOffset + offset;
  }

  desc(i: number, addr: number | bigint, len: number, flags: number, next = 0): void {
    const a = BigInt(addr);
    const i32 = this.views.desc32(i);
    this.views.u32[i32] = Number(a & 0xffffffffn);
    this.views.u32[i32 + 1] = Number((a >> 32n) & 0xffffffffn);
    this.views.u32[i32 + 2] = len;
    this.views.u16[this.views.desc16(i) + 6] = flags;
    this.views.u16[this.views.desc16(i) + 7] = next;
  }

  /** Write a descriptor into an indirect table at guest address `table`, entry `i`. */
  indirectDesc(table: number, i: number, addr: number, len: number, flags: number, next = 0): void {
    const dv = new DataView(this.views.u8.buffer, table + 16 * i, 16);
    dv.setUint32(0, addr, true);
    dv.setUint32(4, 0, true);
    dv.setUint32(8, len, true);
    dv.setUint16(12, flags, true);
    dv.setUint16(14, next, true);
  }

  header(gpa: number, type: number, sector: number | bigint): void {
    const dv = new DataView(this.views.u8.buffer, gpa, 16);
    dv.setUint32(0, type, true);
    dv.setUint32(4, 0, true);
    dv.setBigUint64(8, BigInt(sector), true);
  }

  bytes(gpa: number, len: number): Uint8Array {
    return this.views.u8.subarray(gpa, gpa + len);
  }

  /** Make chains available and publish avail.idx once. */
  offer(...heads: number[]): void {
    for (const head of heads) {
      this.views.u16[this.views.availRing(this.availIdx & (this.layout.queueSize - 1))] = head;
      this.availIdx = (this.availIdx + 1) & 0xffff;
    }
    Atomics.store(this.views.u16, this.views.availIdx, this.availIdx);
  }

  /** Publish an arbitrary avail.idx (to corrupt the ring). */
  publishAvailIdx(idx: number): void {
    this.availIdx = idx & 0xffff;
    Atomics.store(this.views.u16, this.views.availIdx, this.availIdx);
  }

  /** Used entries published since the last call. */
  takeUsed(): Array<{ id: number; len: number }> {
    const idx = Atomics.load(this.views.u16, this.views.usedIdx);
    const out: Array<{ id: number; len: number }> = [];
    while (this.lastUsed !== idx) {
      const e = this.views.usedElem(this.lastUsed & (this.layout.queueSize - 1));
      out.push({ id: this.views.u32[e]!, len: this.views.u32[e + 1]! });
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
  }

  get usedIdx(): number {
    return Atomics.load(this.views.u16, this.views.usedIdx);
  }
}

/** A BlockDevice wrapper that counts calls (to prove a rejected request never reached the backend). */
export class SpyBlockDevice implements BlockDevice {
  calls: string[] = [];
  constructor(readonly inner: BlockDevice) {}
  get size() { return this.inner.size; }
  get blockSize() { return this.inner.blockSize; }
  get readOnly() { return this.inner.readOnly; }
  get writeThrough() { return this.inner.writeThrough; }
  pread(buf: Uint8Array, offset: number) { this.calls.push(`pread ${offset} ${buf.byteLength}`); return this.inner.pread(buf, offset); }
  pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags) { this.calls.push(`pwrite ${offset} ${buf.byteLength}`); return this.inner.pwrite(buf, offset, flags); }
  flush() { this.calls.push('flush'); return this.inner.flush(); }
  trim(offset: number, length: number) { this.calls.push(`trim ${offset} ${length}`); return this.inner.trim(offset, length); }
  zero(offset: number, length: number) { this.calls.push(`zero ${offset} ${length}`); return this.inner.zero(offset, length); }
}

/** Resolve once every queued microtask (backend completions, used-ring flushes) has run. */
export const settle = () => new Promise<void>((resolve) => setImmediate(resolve));
