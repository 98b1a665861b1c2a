import { readSync, openSync, writeSync, fsyncSync, closeSync, constants } from 'node:fs';
import { join } from 'node:path';
import { native } from '../native/addon.ts';

/**
 * Memory for O_DIRECT. JavaScript cannot ask for an address, so alignment is found
 * by probing: an O_DIRECT read into a misaligned buffer fails with EINVAL. A large
 * allocation has a fixed (if unknown) offset from a 512-byte boundary, so trying
 * the 32 possible 16-byte offsets once per allocation finds the aligned one.
 *
 * The probe must read allocated blocks (a hole is zero-filled by the filesystem
 * without any DMA, so every buffer "works"), hence a small probe file with real
 * data per directory. It reads a whole page: a read inside one page only needs the device's
 * DMA alignment (4 bytes on virtio), but one that crosses a page boundary is cut
 * there, and each piece must be a multiple of the 512-byte logical block, which
 * holds only when the buffer starts on a 512-byte boundary.
 */
export const SECTOR = 512;
export const PROBE_BYTES = 4096;

export interface AlignedSlab {
  /** A view that starts on a 512-byte boundary (when `aligned`), `size` bytes long. */
  readonly buf: Buffer;
  /** False when no probe succeeded (the caller is not using O_DIRECT, or the probe file is too small). */
  readonly aligned: boolean;
}

/**
 * Allocate `size` bytes whose start is aligned for O_DIRECT on `directFd`
 * (a file opened with O_DIRECT, at least PROBE_BYTES long). With `directFd`
 * undefined it returns plain memory.
 */
export function allocAligned(size: number, directFd?: number): AlignedSlab {
  const raw = Buffer.allocUnsafeSlow(Math.max(size, PROBE_BYTES) + SECTOR);
  if (directFd === undefined) return { buf: raw.subarray(0, size), aligned: false };
  for (let shift = 0; shift < SECTOR; shift += 16) {
    try {
      readSync(directFd, raw, shift, PROBE_BYTES, 0);
      const buf = raw.subarray(shift, shift + size);
      buf.fill(0);
      return { buf, aligned: true };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
    }
  }
  return { buf: raw.subarray(0, size), aligned: false };
}

const probes = new Map<string, number>();

/**
 * An O_DIRECT descriptor of `<dir>/.dio-probe`, a page of real (allocated) data,
 * or undefined when the filesystem refuses O_DIRECT.
 */
export function directProbeFd(dir: string): number | undefined {
  const known = probes.get(dir);
  if (known !== undefined) return known;
  const path = join(dir, '.dio-probe');
  const w = openSync(path, 'w');
  try {
    writeSync(w, Buffer.alloc(PROBE_BYTES, 0x5a), 0, PROBE_BYTES, 0);
    fsyncSync(w);
  } finally {
    closeSync(w);
  }
  try {
    const fd = openSync(path, constants.O_RDONLY | constants.O_DIRECT);
    probes.set(dir, fd);
    return fd;
  } catch {
    return undefined;
  }
}

/**
 * `size` bytes starting on a 4096-byte boundary, found by asking the addon for
 * the address (no probe file needed). Unaligned (`aligned` false) without the addon.
 */
export function allocPageAligned(size: number): AlignedSlab {
  if (!native) return { buf: Buffer.alloc(size), aligned: false };
  const raw = Buffer.alloc(Math.max(size, 1) + 4096);
  const shift = (4096 - native.addressAlignment(raw)) % 4096;
  return { buf: raw.subarray(shift, shift + size), aligned: true };
}
