/**
 * The shared region of one guest: a control block, one virtio 1.x split
 * virtqueue (virtio 1.2 §2.7) and a data area, all in one SharedArrayBuffer.
 *
 *   [0, 4096)            control block (Int32 fields, see Ctl)
 *   [4096, +16N)         descriptor table  {u64 addr, u32 len, u16 flags, u16 next}
 *   then                 available ring    {u16 flags, u16 idx, u16 ring[N], u16 used_event}
 *   then, 4-aligned      used ring         {u16 flags, u16 idx, {u32 id, u32 len}[N], u16 avail_event}
 *   then, 4096-aligned   data area, to the end of the region
 *
 * Guest "physical" addresses are byte offsets into the region; data buffers may
 * only lie in the data area. Everything is little-endian: we read multi-byte
 * fields through typed arrays, so the host must be LE (asserted once below).
 */
import os from 'node:os';
import { invalidArgument, notSupported } from '../util/errors.ts';

if (os.endianness() !== 'LE') {
  // Typed arrays use host byte order; virtio rings are little-endian.
  throw notSupported('storvisor queue: big-endian hosts');
}

export const REGION_MAGIC = 0x53565131; // "SVQ1"
export const REGION_VERSION = 1;
export const CONTROL_BYTES = 4096;
export const SECTOR_BYTES = 512;
export const MAX_QUEUE_SIZE = 32768;
export const DEFAULT_QUEUE_SIZE = 256;

/** Notification mode of a queue, stored in the control block. */
export const QueueMode = { poll: 0, notify: 1, adaptive: 2, 'poll-guest': 3, 'poll-controller': 4 } as const;
export type QueueModeName = keyof typeof QueueMode;
/** Which side spins in a mode: poll both, adaptive both for a budget, the split modes one side only. */
export const driverSpins = (m: QueueModeName): boolean => m === 'poll' || m === 'poll-guest';
export const deviceSleeps = (m: QueueModeName): boolean => m === 'notify' || m === 'poll-guest';
export const modeName = (value: number): QueueModeName | undefined =>
  (Object.keys(QueueMode) as QueueModeName[]).find((k) => QueueMode[k] === value);

/**
 * Int32 indexes of the control block fields. The two doorbells sit on their
 * own 64-byte lines so that the counter one side hammers does not share a
 * cache line with the read-mostly config. Append new fields; never renumber.
 */
export const Ctl = {
  magic: 0,
  version: 1,
  queueSize: 2,
  mode: 3,
  broken: 4,
  /** virtio-blk config (§5.2.4): capacity in 512-byte sectors as two u32. */
  capacityLo: 5,
  capacityHi: 6,
  blkSize: 7,
  segMax: 8,
  sizeMax: 9,
  maxDiscardSectors: 10,
  maxWriteZeroesSectors: 11,
  /** Byte offset and length of the data area (redundant, checked on attach). */
  dataOffset: 12,
  dataBytes: 13,
  /**
   * virtio-blk `writeback` (§5.2.4, CONFIG_WCE): 1 when the device acknowledges
   * writes before they are durable, so the driver must send FLUSH (or FUA) for
   * durability; 0 when every completed write is already durable.
   */
  writeback: 14,
  /** driver → device counter: Atomics.add + Atomics.notify. */
  kick: 16,
  /**
   * Cross-process doorbells only (eventfd): the device is about to sleep on
   * `kick` (set before its last ring check), so the driver must write the
   * eventfd. Sits beside its counter: `index + 1` of every doorbell.
   */
  kickSleeping: 17,
  /** device → driver counter: Atomics.add + Atomics.notify. */
  call: 32,
  /** Cross-process doorbells only: the driver is about to sleep on `call`. */
  callSleeping: 33,
} as const;

// Descriptor flags (§2.7.5).
export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
/** avail.flags: the driver does not want a call (it is polling). */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** used.flags: the device does not want a kick (it is polling). */
export const VIRTQ_USED_F_NO_NOTIFY = 1;
export const DESC_BYTES = 16;

// virtio-blk request types and status values (§5.2.6).
export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_T_DISCARD = 11;
export const VIRTIO_BLK_T_WRITE_ZEROES = 13;
export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;
export const VIRTIO_BLK_ID_BYTES = 20;
export const BLK_HEADER_BYTES = 16;
export const BLK_DISCARD_SEGMENT_BYTES = 16;
export const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1;

/** Byte offsets of the queue parts and the data area within a region. */
export interface RegionLayout {
  queueSize: number;
  mode: QueueModeName;
  descOffset: number;
  availOffset: number;
  usedOffset: number;
  dataOffset: number;
  dataBytes: number;
  regionBytes: number;
  capacityBytes: number;
  blkSize: number;
  segMax: number;
  sizeMax: number;
  maxDiscardSectors: number;
  maxWriteZeroesSectors: number;
  writeback: boolean;
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** Queue-part offsets for a queue of `queueSize` entries (spec alignments: 16, 2, 4). */
export function queueOffsets(queueSize: number) {
  const descOffset = CONTROL_BYTES;
  const availOffset = descOffset + DESC_BYTES * queueSize;
  const usedOffset = alignUp(availOffset + 6 + 2 * queueSize, 4);
  const dataOffset = alignUp(usedOffset + 6 + 8 * queueSize, 4096);
  return { descOffset, availOffset, usedOffset, dataOffset };
}

const isQueueSize = (n: number) => Number.isInteger(n) && n >= 2 && n <= MAX_QUEUE_SIZE && (n & (n - 1)) === 0;

export interface CreateRegionOptions {
  queueSize?: number;
  /** Bytes of data area (rounded up to 4096). */
  dataBytes: number;
  mode?: QueueModeName;
  /** Size of the block device the queue exposes (multiple of 512). */
  capacityBytes: number;
  /** Largest single data segment (virtio-blk size_max); default min(128 KiB, dataBytes / 4). */
  sizeMax?: number;
  /** Most data segments per request (virtio-blk seg_max); default min(queueSize - 2, 126). */
  segMax?: number;
  /** Use an ArrayBuffer instead of a SharedArrayBuffer (single-thread tests). */
  shared?: boolean;
  /** The backend acknowledges writes before they are durable (see Ctl.writeback). Default false. */
  writeback?: boolean;
  /**
   * Where the region's memory comes from, given its size: a process guest's
   * region is mapped from a shared file (see src/native/shm.ts). It must be
   * zero-filled. Default: a new SharedArrayBuffer.
   */
  allocate?: (regionBytes: number) => ArrayBuffer | SharedArrayBuffer;
}

/** Bytes a region created with these options takes (for allocating it elsewhere first). */
export function regionBytesFor(options: { queueSize?: number; dataBytes: number }): number {
  return queueOffsets(options.queueSize ?? DEFAULT_QUEUE_SIZE).dataOffset + alignUp(options.dataBytes, 4096);
}

/** Create and initialise a region (controller side). Throws EINVAL on bad options. */
export function createRegion(options: CreateRegionOptions): SharedArrayBuffer {
  const queueSize = options.queueSize ?? DEFAULT_QUEUE_SIZE;
  if (!isQueueSize(queueSize)) throw invalidArgument(`queueSize ${queueSize} is not a power of two in [2, 32768]`);
  const { capacityBytes } = options;
  if (!Number.isSafeInteger(capacityBytes) || capacityBytes < 0 || capacityBytes % SECTOR_BYTES !== 0) {
    throw invalidArgument(`capacityBytes ${capacityBytes} is not a non-negative multiple of 512`);
  }
  const dataBytes = alignUp(options.dataBytes, 4096);
  if (!Number.isSafeInteger(dataBytes) || dataBytes < 4096) throw invalidArgument('dataBytes must be >= 4096');
  const mode = options.mode ?? 'adaptive';
  if (!(mode in QueueMode)) throw invalidArgument(`unknown queue mode ${String(mode)}`);
  const { dataOffset } = queueOffsets(queueSize);
  const regionBytes = dataOffset + dataBytes;
  if (regionBytes > 2 ** 31) throw invalidArgument('region larger than 2 GiB');
  const sizeMax = options.sizeMax ?? Math.max(4096, Math.min(128 * 1024, alignUp(dataBytes / 4, 4096) - 4096));
  const segMax = options.segMax ?? Math.max(1, Math.min(queueSize - 2, 126));
  if (!Number.isInteger(sizeMax) || sizeMax < SECTOR_BYTES || sizeMax % SECTOR_BYTES !== 0) {
    throw invalidArgument(`sizeMax ${sizeMax} is not a positive multiple of 512`);
  }
  if (!Number.isInteger(segMax) || segMax < 1) throw invalidArgument(`segMax ${segMax} must be >= 1`);

  const buffer = options.allocate
    ? (options.allocate(regionBytes) as SharedArrayBuffer)
    : options.shared === false
      ? (new ArrayBuffer(regionBytes) as unknown as SharedArrayBuffer)
      : new SharedArrayBuffer(regionBytes);
  if (buffer.byteLength !== regionBytes) throw invalidArgument(`allocated region is ${buffer.byteLength} bytes, not ${regionBytes}`);
  const ctl = new Int32Array(buffer, 0, CONTROL_BYTES / 4);
  const sectors = capacityBytes / SECTOR_BYTES;
  ctl[Ctl.version] = REGION_VERSION;
  ctl[Ctl.queueSize] = queueSize;
  ctl[Ctl.mode] = QueueMode[mode];
  ctl[Ctl.capacityLo] = sectors >>> 0;
  ctl[Ctl.capacityHi] = Math.floor(sectors / 2 ** 32);
  ctl[Ctl.blkSize] = 4096;
  ctl[Ctl.segMax] = segMax;
  ctl[Ctl.sizeMax] = sizeMax;
  // One request's discard/zero range must fit an i32 of sectors; 1 GiB keeps it small.
  ctl[Ctl.maxDiscardSectors] = (1 << 30) / SECTOR_BYTES;
  ctl[Ctl.maxWriteZeroesSectors] = (1 << 30) / SECTOR_BYTES;
  ctl[Ctl.dataOffset] = dataOffset;
  ctl[Ctl.dataBytes] = dataBytes;
  ctl[Ctl.writeback] = options.writeback ? 1 : 0;
  // Magic last and with a seq-cst store: a guest that attaches concurrently sees
  // either no magic or a fully initialised block.
  Atomics.store(ctl, Ctl.magic, REGION_MAGIC);
  return buffer;
}

/** Read and validate a region's control block (both sides). Throws EINVAL if it is not a valid region. */
export function regionLayout(buffer: SharedArrayBuffer | ArrayBuffer): RegionLayout {
  if (buffer.byteLength < CONTROL_BYTES) throw invalidArgument('region smaller than its control block');
  const ctl = new Int32Array(buffer, 0, CONTROL_BYTES / 4);
  if (Atomics.load(ctl, Ctl.magic) !== REGION_MAGIC) throw invalidArgument('region has no storvisor queue magic');
  if (ctl[Ctl.version] !== REGION_VERSION) throw invalidArgument(`region version ${ctl[Ctl.version]} unsupported`);
  const queueSize = ctl[Ctl.queueSize]!;
  if (!isQueueSize(queueSize)) throw invalidArgument(`region queue size ${queueSize} invalid`);
  const mode = modeName(ctl[Ctl.mode]!);
  if (mode === undefined) throw invalidArgument(`region mode ${ctl[Ctl.mode]} invalid`);
  const offsets = queueOffsets(queueSize);
  const dataBytes = ctl[Ctl.dataBytes]!;
  if (ctl[Ctl.dataOffset] !== offsets.dataOffset || dataBytes <= 0 || offsets.dataOffset + dataBytes !== buffer.byteLength) {
    throw invalidArgument('region data area does not match its size');
  }
  const capacityBytes = ((ctl[Ctl.capacityLo]! >>> 0) + (ctl[Ctl.capacityHi]! >>> 0) * 2 ** 32) * SECTOR_BYTES;
  if (!Number.isSafeInteger(capacityBytes)) throw invalidArgument('region capacity too large');
  return {
    queueSize,
    mode,
    ...offsets,
    dataBytes,
    regionBytes: buffer.byteLength,
    capacityBytes,
    blkSize: ctl[Ctl.blkSize]!,
    segMax: ctl[Ctl.segMax]!,
    sizeMax: ctl[Ctl.sizeMax]!,
    maxDiscardSectors: ctl[Ctl.maxDiscardSectors]!,
    maxWriteZeroesSectors: ctl[Ctl.maxWriteZeroesSectors]!,
    writeback: ctl[Ctl.writeback] === 1,
  };
}

/**
 * Typed-array views over the whole region, shared by both sides. Index
 * helpers convert byte offsets to element indexes (all offsets are aligned).
 */
export class RegionViews {
  readonly ctl: Int32Array;
  readonly u8: Uint8Array;
  readonly u16: Uint16Array;
  readonly u32: Uint32Array;
  readonly shared: boolean;
  /** Cross-process doorbells bound to this region (see bindDoorbells), or null for Atomics. */
  readonly doorbells: Doorbells | null;

  constructor(readonly buffer: SharedArrayBuffer | ArrayBuffer, readonly layout: RegionLayout) {
    this.doorbells = boundDoorbells.get(buffer) ?? null;
    this.ctl = new Int32Array(buffer, 0, CONTROL_BYTES / 4);
    this.u8 = new Uint8Array(buffer);
    this.u16 = new Uint16Array(buffer, 0, buffer.byteLength >>> 1);
    this.u32 = new Uint32Array(buffer, 0, buffer.byteLength >>> 2);
    this.shared = typeof SharedArrayBuffer !== 'undefined' && buffer instanceof SharedArrayBuffer;
  }

  // u16 indexes of the ring headers.
  get availFlags() { return this.layout.availOffset >>> 1; }
  get availIdx() { return (this.layout.availOffset >>> 1) + 1; }
  availRing(slot: number) { return (this.layout.availOffset >>> 1) + 2 + slot; }
  get usedFlags() { return this.layout.usedOffset >>> 1; }
  get usedIdx() { return (this.layout.usedOffset >>> 1) + 1; }
  /** u32 index of used.ring[slot].id; .len is the next element. */
  usedElem(slot: number) { return (this.layout.usedOffset >>> 2) + 1 + 2 * slot; }
  /** u32 index of descriptor i's addr low word (then addr high, len; u16 flags/next after). */
  desc32(i: number) { return (this.layout.descOffset >>> 2) + 4 * i; }
  desc16(i: number) { return (this.layout.descOffset >>> 1) + 8 * i; }
}

/**
 * How the two sides of a region wake each other when it is shared across
 * processes (Atomics.wait/notify reach only threads of one process): eventfds
 * in practice (src/native/shm.ts). Indexes are the Ctl doorbell counters.
 */
export interface Doorbells {
  /** Signal the other side's waiter on `index`. */
  ring(index: number): void;
  /** Sleep until rung or timeoutMs; true when rung. The counter check is the caller's. */
  wait(index: number, timeoutMs: number): Promise<boolean>;
  /** Wake this side's own waiter (for shutdown). */
  wakeLocal(index: number): void;
}

const boundDoorbells = new WeakMap<object, Doorbells>();

/**
 * Bind cross-process doorbells to a region buffer, on each side, before the
 * driver or device is built on it. The queue code is otherwise the same for
 * thread and process guests.
 */
export function bindDoorbells(buffer: ArrayBuffer | SharedArrayBuffer, doorbells: Doorbells): void {
  boundDoorbells.set(buffer, doorbells);
}

/** Atomics.waitAsync is in Node 20 but not in the ES2023 lib typings. */
type WaitAsync = (
  ta: Int32Array,
  index: number,
  value: number,
  timeout?: number,
) => { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
const waitAsyncImpl = (Atomics as unknown as { waitAsync?: WaitAsync }).waitAsync;

/**
 * Wait until ctl[index] differs from `seen` (or is notified), up to timeoutMs.
 * Resolves true when woken or the value already changed, false on timeout.
 * On a non-shared buffer (single-thread tests) nobody else can ring, so it
 * only re-checks the value after the timeout.
 */
export async function waitDoorbell(views: RegionViews, index: number, seen: number, timeoutMs: number): Promise<boolean> {
  const bells = views.doorbells;
  if (bells !== null) {
    // Dekker with the ringer: we store "sleeping" then load the counter; it adds
    // to the counter then loads "sleeping" (all seq-cst). Either we see its ring
    // here, or it sees our flag and writes the eventfd.
    const flag = index + 1;
    Atomics.store(views.ctl, flag, 1);
    if (Atomics.load(views.ctl, index) !== seen) {
      Atomics.store(views.ctl, flag, 0);
      return true;
    }
    const woken = await bells.wait(index, timeoutMs);
    Atomics.store(views.ctl, flag, 0);
    return woken || Atomics.load(views.ctl, index) !== seen;
  }
  if (!views.shared || waitAsyncImpl === undefined) {
    if (Atomics.load(views.ctl, index) !== seen) return true;
    await new Promise((r) => setTimeout(r, timeoutMs));
    return Atomics.load(views.ctl, index) !== seen;
  }
  const result = waitAsyncImpl(views.ctl, index, seen, timeoutMs);
  if (!result.async) return result.value === 'not-equal';
  // A pending waitAsync does not keep Node's event loop alive: without this
  // timer a worker with nothing else to do would exit mid-request.
  const keepAlive = setTimeout(() => {}, timeoutMs + 1000);
  try {
    return (await result.value) === 'ok' || Atomics.load(views.ctl, index) !== seen;
  } finally {
    clearTimeout(keepAlive);
  }
}

/** Ring a doorbell: bump the counter (so a waiter that has not slept yet sees the change), then wake sleepers. */
export function ringDoorbell(views: RegionViews, index: number): void {
  Atomics.add(views.ctl, index, 1);
  if (views.doorbells !== null) {
    // A system call only when the other side said it sleeps (see waitDoorbell).
    if (Atomics.load(views.ctl, index + 1) !== 0) views.doorbells.ring(index);
  } else if (views.shared) Atomics.notify(views.ctl, index);
}

/** Wake this side's own wait on a doorbell without ringing it (so a loop can see it was closed). */
export function wakeDoorbell(views: RegionViews, index: number): void {
  if (views.doorbells !== null) views.doorbells.wakeLocal(index);
  else if (views.shared) Atomics.notify(views.ctl, index);
}
