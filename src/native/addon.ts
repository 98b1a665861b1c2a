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

export interface NativeAddon {
  ringCreate(entries: number, cqEntries: number): Ring;
  /** op 0 = read, 1 = write; false when the submission queue is full. */
  prepRw(ring: Ring, op: number, fd: number, buf: Uint8Array, at: number, length: number, position: number, tag: number, rwFlags: number): boolean;
  prepFsync(ring: Ring, fd: number, tag: number, datasync: boolean): boolean;
  /** Hand the prepared SQEs to the kernel: how many, or -errno. */
  submit(ring: Ring): number;
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
  readonly RWF_DSYNC: number;
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
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
