import { createRequire } from 'node:module';
import { native } from './addon.ts';

/**
 * The few system calls Node does not offer, through koffi (an FFI whose binary
 * ships inside its npm package). Every entry point degrades to `undefined` when
 * the library cannot load, and callers fall back to portable code.
 */
type Fallocate = (fd: number, mode: number, offset: number, length: number) => number;
type SchedYield = () => number;

const FALLOC_FL_KEEP_SIZE = 0x01;
const FALLOC_FL_PUNCH_HOLE = 0x02;

interface Libc {
  fallocate: Fallocate;
  sched_yield: SchedYield;
}

let libc: Libc | null | undefined;

function load(): Libc | null {
  if (libc !== undefined) return libc;
  try {
    const require = createRequire(import.meta.url);
    const koffi = require('koffi');
    const lib = koffi.load('libc.so.6');
    libc = {
      fallocate: lib.func('int fallocate(int, int, int64_t, int64_t)') as Fallocate,
      sched_yield: lib.func('int sched_yield(void)') as SchedYield,
    };
  } catch {
    libc = null;
  }
  return libc;
}

/**
 * Deallocate [offset, offset+length) of a file, keeping its size: the range then
 * reads as zeroes and stops using disk space (thin provisioning). Returns false
 * when the platform or filesystem cannot, so the caller writes zeroes instead.
 * Synchronous: punching a hole is a metadata-only operation.
 */
export function punchHole(fd: number, offset: number, length: number): boolean {
  const c = load();
  if (!c) return false;
  return c.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) === 0;
}

/**
 * Give this core to any other runnable thread, then come back. A polling loop
 * that found nothing calls it: when cores are shared (fewer cores than spinning
 * threads plus the threads doing real work), a spinner that does not yield
 * holds the core for a whole scheduler slice (milliseconds) while the thread
 * that would produce its next request waits. With a dedicated core it returns
 * at once. No-op where koffi is unavailable.
 */
export function yieldCpu(): void {
  if (native) native.schedYield();
  else load()?.sched_yield();
}
