import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The native addon (native/storvisor.c, built by `npm install` through
 * scripts/build-native.mjs): io_uring, sched_yield, affinity, nice, address
 * alignment. `native` is null where it was not built or cannot load; callers
 * fall back to portable code, and `nativeUnavailable` says why.
 */
export type Ring = { readonly __ring: unique symbol };
export type FdWatch = { readonly __watch: unique symbol };

export interface NativeAddon {
  /** cooperative (default false): completions post at the thread's next system call instead of interrupting it (COOP_TASKRUN). */
  ringCreate(entries: number, cqEntries: number, cooperative?: boolean): Ring;
  /** op 0 = read, 1 = write; false when the submission queue is full. */
  prepRw(ring: Ring, op: number, fd: number, buf: Uint8Array, at: number, length: number, position: number, tag: number, rwFlags: number): boolean;
  prepFsync(ring: Ring, fd: number, tag: number, datasync: boolean): boolean;
  /** Hand the prepared SQEs to the kernel: how many, or -errno. */
  /** `times` (tracing): CLOCK_MONOTONIC ns before and after the system call. */
  submit(ring: Ring, times?: Float64Array): number;
  /**
   * Submit, then busy-poll the completion ring until `minComplete` completions are
   * ready (0), `timeoutNs` passed (1), or the event loop has I/O waiting (2); -errno when the submission failed.
   * `times` (tracing): CLOCK_MONOTONIC ns of the spin's start and of the completion seen (NaN: not seen).
   */
  hold(ring: Ring, minComplete: number, timeoutNs: number, times?: Float64Array): number;
  /** Completions into out as (tag, result) pairs; how many. */
  reap(ring: Ring, out: Int32Array): number;
  ready(ring: Ring): number;
  notify(ring: Ring, on: boolean): void;
  watch(ring: Ring, callback: () => void): void;
  ref(ring: Ring, on: boolean): void;
  ringClose(ring: Ring): void;
  schedYield(): void;
  gettid(): number;
  setAffinity(cpus: number[]): void;
  getAffinity(): number[];
  setNice(nice: number): void;
  addressAlignment(buf: Uint8Array): number;
  /** A sealed memfd of `bytes` (huge pages first when asked); `why` says why huge pages were not used. */
  memfdCreate(name: string, bytes: number, huge: boolean): { fd: number; bytes: number; huge: boolean; why: string };
  /** Map a sealed file shared and populated; an ArrayBuffer (not shared) over its first `bytes`. */
  mapShared(fd: number, bytes: number, lock: boolean): { buffer: ArrayBuffer; locked: boolean; fileBytes: number };
  eventfdCreate(): number;
  eventfdWrite(fd: number): void;
  closeFd(fd: number): void;
  /** Call back on this thread's loop whenever the eventfd is written (unref'd). */
  fdWatch(fd: number, callback: () => void): FdWatch;
  watchClose(watch: FdWatch): void;
  /** tid 0 = the calling thread. */
  setThreadAffinity(tid: number, cpus: number[]): void;
  setThreadNice(tid: number, nice: number): void;
  /** policy 0 = SCHED_OTHER, 1 = SCHED_FIFO, 2 = SCHED_RR. */
  setThreadScheduler(tid: number, policy: number, rtPriority: number): void;
  readonly RWF_DSYNC: number;
  /** zlib's crc32 of buf[offset, offset + length) from `seed` (native/crc32.c: PCLMULQDQ where the CPU has it). */
  crc32Range?(buf: Uint8Array, offset: number, length: number, seed: number): number;
  /** Seal the database log records in buf[from, to): each record's crc (chained from `seed`) into its first 4 bytes; returns the last. */
  crc32Records?(buf: Uint8Array, from: number, to: number, seed: number): number;
  // XXH64 (seed 0) and the zero-block test for dedup fingerprints (native/xxhash.c).
  /** out[0] = the digest's low 32 bits, out[1] = its high 32 bits. */
  xxh64Into?(src: Uint8Array, out: Uint32Array): void;
  /** Per block k of src: zero[k] = 1 if all zeroes; else its digest in out[2k] (low 32 bits), out[2k+1]; out null = zero test only. Returns the non-zero count. */
  fingerprintBlocks?(src: Uint8Array, blockSize: number, out: Uint32Array | null, zero: Uint8Array): number;
  // LZ4 block format through liblz4 (native/lz4.c): present only when the build found liblz4-dev.
  /** Compressed length, or 0 when the result would not fit in dst. */
  lz4Compress?(src: Uint8Array, dst: Uint8Array): number;
  /** Bytes produced, or -1 when src is malformed or would overflow dst. */
  lz4Decompress?(src: Uint8Array, dst: Uint8Array): number;
  /** Block which[k] of src (blockSize bytes each) into dst[k*slot, (k+1)*slot); lengths[k] = its length or 0. Returns how many compressed. */
  lz4CompressBlocks?(src: Uint8Array, blockSize: number, which: Int32Array, count: number, dst: Uint8Array, slot: number, lengths: Int32Array): number;
  /** Whether fragment `slot` of a packed block decompresses to exactly `data`: 1 equal, 0 different, < 0 unreadable (-1 magic, -2 slot, -3 bounds, -4 CRC, -5 LZ4). */
  lz4VerifyFragment?(block: Uint8Array, data: Uint8Array, slot: number, maxSlots: number): number;
  /** liblz4's version ("1.9.4"). */
  readonly lz4Version?: string;
}

/** The package root: the nearest directory up with a package.json (this file may also run from a bundle in build/). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..');
}
const root = packageRoot();
const addonPath = join(root, 'build', 'Release', 'storvisor.node');

function load(): { addon: NativeAddon | null; why: string } {
  if (process.env.STORVISOR_NATIVE === '0') return { addon: null, why: 'disabled by STORVISOR_NATIVE=0' };
  if (!existsSync(addonPath)) return { addon: null, why: `the native addon is not built (${addonPath} missing; run npm install with a C compiler)` };
  try {
    return { addon: createRequire(import.meta.url)(addonPath) as NativeAddon, why: '' };
  } catch (err) {
    return { addon: null, why: `the native addon failed to load: ${(err as Error).message}` };
  }
}

const loaded = load();
export const native: NativeAddon | null = loaded.addon;
export const nativeUnavailable: string = loaded.why;

/** The native LZ4 entry points, or null where the addon was built without liblz4 (or is not loaded). */
export const nativeLz4: Required<Pick<NativeAddon, 'lz4Compress' | 'lz4Decompress' | 'lz4CompressBlocks' | 'lz4Version'>> | null =
  native && typeof native.lz4Compress === 'function' && typeof native.lz4Decompress === 'function' && typeof native.lz4CompressBlocks === 'function'
    ? (native as Required<NativeAddon>)
    : null;

/** The native fingerprint entry points (native/xxhash.c), or null where the addon is not loaded. */
export const nativeFingerprint: Required<Pick<NativeAddon, 'xxh64Into' | 'fingerprintBlocks'>> | null =
  native && typeof native.xxh64Into === 'function' && typeof native.fingerprintBlocks === 'function' ? (native as Required<NativeAddon>) : null;
