/**
 * Device side of a split virtqueue: the only code that reads descriptors.
 * Everything the guest wrote is untrusted; every guest address goes through
 * gpaToView(), every chain through mapDesc(). A guest that corrupts the ring
 * itself marks the queue broken (sticky, reported once); a guest that sends a
 * bad chain gets that request completed with an error and nothing else.
 * (After libvhost-user's vu_queue_pop / vu_queue_map_desc / vu_panic.)
 */
import {
  Ctl,
  DESC_BYTES,
  RegionViews,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_USED_F_NO_NOTIFY,
  ringDoorbell,
  type RegionLayout,
} from './layout.ts';

/** One popped request: its head index and the guest buffers, in chain order. */
export interface VirtqElement {
  head: number;
  /** Device-readable buffers (driver → device). */
  out: Uint8Array[];
  /** Device-writable buffers (device → driver). */
  in: Uint8Array[];
}

export enum MapFailure {
  /** The chain is malformed but its head is valid: complete it with an error. */
  BadChain = 'bad-chain',
  /** The ring itself is corrupt: the queue is now broken. */
  BrokenRing = 'broken-ring',
}

export type PopResult =
  | { kind: 'element'; element: VirtqElement }
  | {
      kind: MapFailure.BadChain;
      head: number;
      reason: string;
      /** The chain's last writable byte, if the chain has a well-formed end there. */
      status: Uint8Array | null;
    }
  | { kind: MapFailure.BrokenRing; reason: string }
  | { kind: 'empty' };

interface RawDesc {
  addr: number;
  addrHi: number;
  len: number;
  flags: number;
}

export class VirtqDevice {
  readonly views: RegionViews;
  readonly size: number;
  /** Shadow of avail.idx we have consumed up to (free-running u16). */
  private lastAvailIdx = 0;
  /** Shadow of used.idx including entries written but not yet published. */
  private shadowUsedIdx = 0;
  private publishedUsedIdx = 0;
  private brokenReason: string | null = null;
  /** Heads taken and not yet returned in the used ring: a guest may not post one twice. */
  private readonly outstanding: Uint8Array;
  private outstandingCount = 0;
  private readonly dataStart: number;
  private readonly dataEnd: number;
  private readonly maxChain: number;

  constructor(
    buffer: SharedArrayBuffer | ArrayBuffer,
    readonly layout: RegionLayout,
    private readonly onBroken: (reason: string) => void,
  ) {
    this.views = new RegionViews(buffer, layout);
    this.size = layout.queueSize;
    this.dataStart = layout.dataOffset;
    this.dataEnd = layout.dataOffset + layout.dataBytes;
    // Header + status + seg_max data segments; a split header may use a few more.
    this.maxChain = Math.min(this.size, layout.segMax + 4);
    this.outstanding = new Uint8Array(this.size);
    // Resume from the ring's current state (a restarted controller must not re-execute).
    this.lastAvailIdx = this.shadowUsedIdx = this.publishedUsedIdx = Atomics.load(this.views.u16, this.views.usedIdx);
  }

  get broken(): boolean {
    return this.brokenReason !== null;
  }

  get brokenWhy(): string | null {
    return this.brokenReason;
  }

  /** Mark the queue broken: sticky, reported once, flagged in the control block for the driver. */
  markBroken(reason: string): void {
    if (this.brokenReason !== null) return;
    this.brokenReason = reason;
    Atomics.store(this.views.ctl, Ctl.broken, 1);
    ringDoorbell(this.views, Ctl.call); // wake a sleeping driver so it sees the flag
    try {
      this.onBroken(reason);
    } catch {
      // A throwing reporter must not take the poll loop down.
    }
  }

  /**
   * The single choke point for guest memory: a view of [addr, addr+len) if it
   * lies entirely inside the data area, else null. addr is a u64 given as two
   * u32 words; any high word makes it out of range.
   */
  gpaToView(addrLo: number, addrHi: number, len: number): Uint8Array | null {
    if (addrHi !== 0) return null;
    const start = addrLo >>> 0;
    const end = start + (len >>> 0); // both < 2^32: exact in a double, cannot overflow
    if (start < this.dataStart || end > this.dataEnd) return null;
    return this.views.u8.subarray(start, end);
  }

  /** Requests taken and not yet completed (never more than the queue size). */
  get inFlight(): number {
    return this.outstandingCount;
  }

  /** Number of entries the driver has made available and we have not taken. */
  pending(): number {
    const availIdx = Atomics.load(this.views.u16, this.views.availIdx);
    return (availIdx - this.lastAvailIdx) & 0xffff;
  }

  /**
   * Take the next available chain. Never throws; returns 'empty' when the ring
   * is empty or broken.
   */
  pop(): PopResult {
    if (this.brokenReason !== null) return { kind: 'empty' };
    // Acquire: the seq-cst load of avail.idx orders our later plain reads of the
    // ring entry and descriptors after the driver's writes that preceded its store.
    const availIdx = Atomics.load(this.views.u16, this.views.availIdx);
    const count = (availIdx - this.lastAvailIdx) & 0xffff;
    if (count === 0) return { kind: 'empty' };
    if (count > this.size) {
      const reason = `avail idx moved by ${count} (queue size ${this.size})`;
      this.markBroken(reason);
      return { kind: MapFailure.BrokenRing, reason };
    }
    const head = this.views.u16[this.views.availRing(this.lastAvailIdx & (this.size - 1))]!;
    this.lastAvailIdx = (this.lastAvailIdx + 1) & 0xffff;
    if (head >= this.size) {
      const reason = `avail ring head ${head} >= queue size ${this.size}`;
      this.markBroken(reason);
      return { kind: MapFailure.BrokenRing, reason };
    }
    if (this.outstanding[head] !== 0) {
      // Re-posting a head in flight would let a guest keep unbounded requests
      // in flight on a fixed-size queue (and alias their buffers).
      const reason = `avail ring head ${head} posted again while in flight`;
      this.markBroken(reason);
      return { kind: MapFailure.BrokenRing, reason };
    }
    this.outstanding[head] = 1;
    this.outstandingCount++;
    return this.mapDesc(head);
  }

  /**
   * Walk and map the chain at `head`. Structural faults (next out of range,
   * loops, bad indirect tables) leave the chain without a known end, so the
   * request is completed with used.len 0; buffer faults (bad address, zero
   * length, order, too many segments) leave a known last descriptor whose last
   * byte, if writable and mappable, receives the error status.
   */
  mapDesc(head: number): PopResult {
    const raw: RawDesc[] = [];
    const structural = this.walk(head, raw);
    if (structural !== null) return { kind: MapFailure.BadChain, head, reason: structural, status: null };

    const element: VirtqElement = { head, out: [], in: [] };
    let fault: string | null = null;
    if (raw.length > this.maxChain) fault = `chain of ${raw.length} descriptors exceeds the segment limit ${this.maxChain}`;
    for (let i = 0; fault === null && i < raw.length; i++) {
      const d = raw[i]!;
      if (d.len === 0) {
        fault = `descriptor ${i} of chain ${head} has length 0`;
        break;
      }
      const view = this.gpaToView(d.addr, d.addrHi, d.len);
      if (view === null) {
        fault = `descriptor ${i} of chain ${head} is outside the data area`;
        break;
      }
      if (d.flags & VIRTQ_DESC_F_WRITE) element.in.push(view);
      else if (element.in.length > 0) fault = `readable descriptor ${i} after a writable one in chain ${head}`;
      else element.out.push(view);
    }
    if (fault === null) return { kind: 'element', element };
    return { kind: MapFailure.BadChain, head, reason: fault, status: this.lastWritableByte(raw) };
  }

  /** Collect the chain's descriptors (following one level of indirection); a reason string on a structural fault. */
  private walk(head: number, out: RawDesc[]): string | null {
    const { u32, u16 } = this.views;
    let i = head;
    for (let hops = 0; ; hops++) {
      if (hops >= this.size) return `chain ${head} loops or is longer than the queue`;
      const d = this.readDesc(u32, u16, this.views.desc32(i), this.views.desc16(i));
      if (d.flags & VIRTQ_DESC_F_INDIRECT) {
        if (d.flags & VIRTQ_DESC_F_NEXT) return `descriptor ${i} has both NEXT and INDIRECT`;
        if (out.length > 0) return `indirect descriptor ${i} is not the only one in chain ${head}`;
        return this.walkIndirect(head, d, out);
      }
      out.push(d);
      if (!(d.flags & VIRTQ_DESC_F_NEXT)) return null;
      const next = u16[this.views.desc16(i) + 7]!;
      if (next >= this.size) return `descriptor ${i} next ${next} >= queue size ${this.size}`;
      i = next;
    }
  }

  private walkIndirect(head: number, table: RawDesc, out: RawDesc[]): string | null {
    if (table.len === 0 || table.len % DESC_BYTES !== 0) return `indirect table length ${table.len} is not a non-zero multiple of 16`;
    const entries = table.len / DESC_BYTES;
    if (entries > this.size) return `indirect table of ${entries} entries exceeds the queue size`;
    const view = this.gpaToView(table.addr, table.addrHi, table.len);
    if (view === null || view.byteOffset % 4 !== 0) return `indirect table of chain ${head} is outside the data area or misaligned`;
    const u32 = this.views.u32;
    const u16 = this.views.u16;
    let i = 0;
    for (let hops = 0; ; hops++) {
      if (hops >= entries) return `indirect chain of ${head} loops`;
      const byte = view.byteOffset + i * DESC_BYTES;
      const d = this.readDesc(u32, u16, byte >>> 2, byte >>> 1);
      if (d.flags & VIRTQ_DESC_F_INDIRECT) return `nested indirect descriptor in chain ${head}`;
      out.push(d);
      if (!(d.flags & VIRTQ_DESC_F_NEXT)) return null;
      const next = u16[(byte >>> 1) + 7]!;
      if (next >= entries) return `indirect descriptor next ${next} >= table size ${entries}`;
      i = next;
    }
  }

  private readDesc(u32: Uint32Array, u16: Uint16Array, i32: number, i16: number): RawDesc {
    // Plain reads: ordered after the avail.idx acquire in pop().
    return { addr: u32[i32]!, addrHi: u32[i32 + 1]!, len: u32[i32 + 2]!, flags: u16[i16 + 6]! };
  }

  private lastWritableByte(raw: RawDesc[]): Uint8Array | null {
    const last = raw[raw.length - 1];
    if (last === undefined || !(last.flags & VIRTQ_DESC_F_WRITE) || last.len === 0) return null;
    const lo = last.addr + last.len - 1;
    if (lo > 0xffffffff) return null;
    return this.gpaToView(lo, last.addrHi, 1);
  }

  /**
   * Write a used entry (not yet visible to the driver). At most queueSize
   * entries are outstanding, so the slot cannot hold an unread entry.
   */
  push(head: number, len: number): void {
    if (this.outstanding[head] !== 0) {
      this.outstanding[head] = 0;
      this.outstandingCount--;
    }
    if (this.brokenReason !== null) return;
    const slot = this.views.usedElem(this.shadowUsedIdx & (this.size - 1));
    this.views.u32[slot] = head;
    this.views.u32[slot + 1] = len;
    this.shadowUsedIdx = (this.shadowUsedIdx + 1) & 0xffff;
  }

  /**
   * Publish every pushed entry with one used.idx store and, unless the driver
   * asked for no interrupts, one call. Returns whether the driver was called.
   */
  flush(): boolean {
    if (this.brokenReason !== null || this.shadowUsedIdx === this.publishedUsedIdx) return false;
    // Release: the seq-cst store orders the used entries (and the status/data
    // bytes written into guest buffers) before the driver can observe the idx.
    Atomics.store(this.views.u16, this.views.usedIdx, this.shadowUsedIdx);
    this.publishedUsedIdx = this.shadowUsedIdx;
    // This load is ordered after the idx store (seq-cst): a driver that clears
    // NO_INTERRUPT and then re-checks used.idx either sees our entries or we see its flag clear.
    if (Atomics.load(this.views.u16, this.views.availFlags) & VIRTQ_AVAIL_F_NO_INTERRUPT) return false;
    ringDoorbell(this.views, Ctl.call);
    return true;
  }

  /** Ask for kicks: clear NO_NOTIFY. Returns the kick counter seen after arming (for waitKick). */
  armKick(): number {
    Atomics.store(this.views.u16, this.views.usedFlags, 0);
    // Snapshot the doorbell after arming and before the caller re-checks avail:
    // a kick that lands after the re-check changes the counter, so the wait cannot miss it.
    return Atomics.load(this.views.ctl, Ctl.kick);
  }

  disarmKick(): void {
    Atomics.store(this.views.u16, this.views.usedFlags, VIRTQ_USED_F_NO_NOTIFY);
  }
}
