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

/** What next() found (the allocation-free form of PopResult). */
export const PopKind = {
  Empty: 0,
  Element: 1,
  /** Details in badHead / badReason / badStatus. */
  BadChain: 2,
  BrokenRing: 3,
} as const;
export type PopKind = (typeof PopKind)[keyof typeof PopKind];

/** Views handed out per (address, length) are cached: at most this many before the cache starts over. */
const VIEW_CACHE_MAX = 4096;

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
  /**
   * The chain being mapped, as parallel arrays (no object per descriptor):
   * a chain or an indirect table never has more than `size` entries.
   */
  private readonly rawAddr: Uint32Array;
  private readonly rawHi: Uint32Array;
  private readonly rawLen: Uint32Array;
  private readonly rawFlags: Uint16Array;
  private rawCount = 0;
  /**
   * Guest buffers recur (a driver reuses its header slots and data buffers),
   * so a checked view is kept per start address and reused while its length
   * matches: no Uint8Array per descriptor. Bounded; a guest that sprays
   * addresses only makes it start over.
   */
  private readonly viewCache = new Map<number, Uint8Array>();
  /** The last BadChain from next(): its head, why, and its status byte (or null). */
  badHead = 0;
  badReason = '';
  badStatus: Uint8Array | null = null;

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
    this.rawAddr = new Uint32Array(this.size);
    this.rawHi = new Uint32Array(this.size);
    this.rawLen = new Uint32Array(this.size);
    this.rawFlags = new Uint16Array(this.size);
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
    const cached = this.viewCache.get(start);
    if (cached !== undefined && cached.byteLength === end - start) return cached;
    if (this.viewCache.size >= VIEW_CACHE_MAX) this.viewCache.clear();
    const view = this.views.u8.subarray(start, end);
    this.viewCache.set(start, view);
    return view;
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
   * is empty or broken. (Allocates its result: the poll loop uses next().)
   */
  pop(): PopResult {
    const element: VirtqElement = { head: 0, out: [], in: [] };
    switch (this.next(element)) {
      case PopKind.Empty:
        return { kind: 'empty' };
      case PopKind.Element:
        return { kind: 'element', element };
      case PopKind.BadChain:
        return { kind: MapFailure.BadChain, head: this.badHead, reason: this.badReason, status: this.badStatus };
      default:
        return { kind: MapFailure.BrokenRing, reason: this.brokenReason ?? 'broken' };
    }
  }

  /**
   * Take the next available chain into `element` (its arrays are reused):
   * what pop() does, with no allocation on the common path.
   */
  next(element: VirtqElement): PopKind {
    if (this.brokenReason !== null) return PopKind.Empty;
    // Acquire: the seq-cst load of avail.idx orders our later plain reads of the
    // ring entry and descriptors after the driver's writes that preceded its store.
    const availIdx = Atomics.load(this.views.u16, this.views.availIdx);
    const count = (availIdx - this.lastAvailIdx) & 0xffff;
    if (count === 0) return PopKind.Empty;
    if (count > this.size) {
      this.markBroken(`avail idx moved by ${count} (queue size ${this.size})`);
      return PopKind.BrokenRing;
    }
    const head = this.views.u16[this.views.availRing(this.lastAvailIdx & (this.size - 1))]!;
    this.lastAvailIdx = (this.lastAvailIdx + 1) & 0xffff;
    if (head >= this.size) {
      this.markBroken(`avail ring head ${head} >= queue size ${this.size}`);
      return PopKind.BrokenRing;
    }
    if (this.outstanding[head] !== 0) {
      // Re-posting a head in flight would let a guest keep unbounded requests
      // in flight on a fixed-size queue (and alias their buffers).
      this.markBroken(`avail ring head ${head} posted again while in flight`);
      return PopKind.BrokenRing;
    }
    this.outstanding[head] = 1;
    this.outstandingCount++;
    return this.mapInto(head, element);
  }

  /**
   * Walk and map the chain at `head`. Structural faults (next out of range,
   * loops, bad indirect tables) leave the chain without a known end, so the
   * request is completed with used.len 0; buffer faults (bad address, zero
   * length, order, too many segments) leave a known last descriptor whose last
   * byte, if writable and mappable, receives the error status.
   */
  mapDesc(head: number): PopResult {
    const element: VirtqElement = { head, out: [], in: [] };
    if (this.mapInto(head, element) === PopKind.Element) return { kind: 'element', element };
    return { kind: MapFailure.BadChain, head, reason: this.badReason, status: this.badStatus };
  }

  private mapInto(head: number, element: VirtqElement): PopKind {
    element.head = head;
    const out = element.out;
    const inb = element.in;
    // Filled by index and trimmed at the end: a chain of the same shape as the
    // last one leaves both arrays' storage as it was (length = 0 would free it).
    let outN = 0;
    let inN = 0;
    const structural = this.walk(head);
    if (structural !== null) {
      out.length = inb.length = 0;
      return this.bad(head, structural, null);
    }
    let fault: string | null = null;
    const n = this.rawCount;
    if (n > this.maxChain) fault = `chain of ${n} descriptors exceeds the segment limit ${this.maxChain}`;
    for (let i = 0; fault === null && i < n; i++) {
      const len = this.rawLen[i]!;
      if (len === 0) {
        fault = `descriptor ${i} of chain ${head} has length 0`;
        break;
      }
      const view = this.gpaToView(this.rawAddr[i]!, this.rawHi[i]!, len);
      if (view === null) {
        fault = `descriptor ${i} of chain ${head} is outside the data area`;
        break;
      }
      if (this.rawFlags[i]! & VIRTQ_DESC_F_WRITE) inb[inN++] = view;
      else if (inN > 0) fault = `readable descriptor ${i} after a writable one in chain ${head}`;
      else out[outN++] = view;
    }
    if (out.length !== outN) out.length = outN;
    if (inb.length !== inN) inb.length = inN;
    if (fault === null) return PopKind.Element;
    return this.bad(head, fault, this.lastWritableByte());
  }

  private bad(head: number, reason: string, status: Uint8Array | null): PopKind {
    this.badHead = head;
    this.badReason = reason;
    this.badStatus = status;
    return PopKind.BadChain;
  }

  /** Collect the chain's descriptors into the raw arrays (following one level of indirection); a reason string on a structural fault. */
  private walk(head: number): string | null {
    const { u32, u16 } = this.views;
    this.rawCount = 0;
    let i = head;
    for (let hops = 0; ; hops++) {
      if (hops >= this.size) return `chain ${head} loops or is longer than the queue`;
      const i32 = this.views.desc32(i);
      const i16 = this.views.desc16(i);
      // Plain reads: ordered after the avail.idx acquire in next().
      const flags = u16[i16 + 6]!;
      if (flags & VIRTQ_DESC_F_INDIRECT) {
        if (flags & VIRTQ_DESC_F_NEXT) return `descriptor ${i} has both NEXT and INDIRECT`;
        if (this.rawCount > 0) return `indirect descriptor ${i} is not the only one in chain ${head}`;
        return this.walkIndirect(head, u32[i32]!, u32[i32 + 1]!, u32[i32 + 2]!);
      }
      this.record(u32[i32]!, u32[i32 + 1]!, u32[i32 + 2]!, flags);
      if (!(flags & VIRTQ_DESC_F_NEXT)) return null;
      const next = u16[i16 + 7]!;
      if (next >= this.size) return `descriptor ${i} next ${next} >= queue size ${this.size}`;
      i = next;
    }
  }

  private record(addr: number, addrHi: number, len: number, flags: number): void {
    const k = this.rawCount++;
    this.rawAddr[k] = addr;
    this.rawHi[k] = addrHi;
    this.rawLen[k] = len;
    this.rawFlags[k] = flags;
  }

  private walkIndirect(head: number, tableAddr: number, tableHi: number, tableLen: number): string | null {
    if (tableLen === 0 || tableLen % DESC_BYTES !== 0) return `indirect table length ${tableLen} is not a non-zero multiple of 16`;
    const entries = tableLen / DESC_BYTES;
    if (entries > this.size) return `indirect table of ${entries} entries exceeds the queue size`;
    const view = this.gpaToView(tableAddr, tableHi, tableLen);
    if (view === null || view.byteOffset % 4 !== 0) return `indirect table of chain ${head} is outside the data area or misaligned`;
    const u32 = this.views.u32;
    const u16 = this.views.u16;
    let i = 0;
    for (let hops = 0; ; hops++) {
      if (hops >= entries) return `indirect chain of ${head} loops`;
      const byte = view.byteOffset + i * DESC_BYTES;
      const i32 = byte >>> 2;
      const i16 = byte >>> 1;
      const flags = u16[i16 + 6]!;
      if (flags & VIRTQ_DESC_F_INDIRECT) return `nested indirect descriptor in chain ${head}`;
      this.record(u32[i32]!, u32[i32 + 1]!, u32[i32 + 2]!, flags);
      if (!(flags & VIRTQ_DESC_F_NEXT)) return null;
      const next = u16[i16 + 7]!;
      if (next >= entries) return `indirect descriptor next ${next} >= table size ${entries}`;
      i = next;
    }
  }

  private lastWritableByte(): Uint8Array | null {
    if (this.rawCount === 0) return null;
    const k = this.rawCount - 1;
    const len = this.rawLen[k]!;
    if (!(this.rawFlags[k]! & VIRTQ_DESC_F_WRITE) || len === 0) return null;
    const lo = this.rawAddr[k]! + len - 1;
    if (lo > 0xffffffff) return null;
    return this.gpaToView(lo, this.rawHi[k]!, 1);
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
