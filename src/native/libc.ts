import { createRequire } from 'node:module';

/**
 * The few system calls Node does not offer, through koffi (an FFI whose binary
 * ships inside its npm package). Every entry point degrades to `undefined` when
 * the library cannot load, and callers fall back to portable code.
 */
type Fallocate = (fd: number, mode: number, offset: number, length: number) => number;

const FALLOC_FL_KEEP_SIZE = 0x01;
const FALLOC_FL_PUNCH_HOLE = 0x02;

let fallocateFn: Fallocate | null | undefined;

function loadFallocate(): Fallocate | null {
  if (fallocateFn !== undefined) return fallocateFn;
  try {
    const require = createRequire(import.meta.url);
    const koffi = require('koffi');
    const libc = koffi.load('libc.so.6');
    fallocateFn = libc.func('int fallocate(int, int, int64_t, int64_t)') as Fallocate;
  } catch {
    fallocateFn = null;
  }
  return fallocateFn;
}

/**
 * Deallocate [offset, offset+length) of a file, keeping its size: the range then
 * reads as zeroes and stops using disk space (thin provisioning). Returns false
 * when the platform or filesystem cannot, so the caller writes zeroes instead.
 * Synchronous: punching a hole is a metadata-only operation.
 */
export function punchHole(fd: number, offset: number, length: number): boolean {
  const fallocate = loadFallocate();
  if (!fallocate) return false;
  return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) === 0;
}
