import { MemoryBlockDevice } from '../../../src/block/memory-device.ts';
import type { BlockDevice } from '../../../src/block/types.ts';
import { openFileSystem, type OpenOptions } from '../../../src/functions/fileserver/fs/index.ts';
import type { FileSystem } from '../../../src/functions/fileserver/fs/types.ts';

export const OWNER = { mode: 0o644, uid: 1000, gid: 100 };
export const ROOT = 1;
export const ROOT_GEN = 1;

export async function memFs(sizeMiB = 32, opts: OpenOptions = {}): Promise<{ fs: FileSystem; dev: MemoryBlockDevice }> {
  const dev = new MemoryBlockDevice(sizeMiB << 20);
  const fs = await openFileSystem(dev, opts);
  return { fs, dev };
}

export async function reopen(dev: BlockDevice, opts: OpenOptions = {}): Promise<FileSystem> {
  return openFileSystem(dev, opts);
}

/** Every entry of a directory, following cookies `batch` at a time. */
export async function listAll(fs: FileSystem, dir: number, gen: number, batch = 100) {
  const out: Array<{ name: string; ino: number; cookie: number }> = [];
  let cookie = 0;
  for (;;) {
    const r = await fs.readdir(dir, gen, cookie, batch);
    out.push(...r.entries);
    if (r.eof) return out;
    if (r.entries.length === 0) throw new Error('readdir made no progress');
    cookie = r.entries[r.entries.length - 1].cookie;
  }
}

export const bytes = (s: string) => new TextEncoder().encode(s);
export const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** Deterministic pseudo-random bytes (xorshift), so failures reproduce. */
export function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed | 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
