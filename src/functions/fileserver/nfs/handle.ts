/**
 * NFS file handles: a fixed 32-byte format built from the inode number and its
 * generation, so handles survive server restarts and go STALE when the inode is
 * freed (the filesystem bumps the generation on reuse).
 *
 *   0  u8   version (1)
 *   1  u8*3 zero
 *   4  u64  fsid
 *  12  u64  ino
 *  20  u64  generation
 *  28  u32  crc32 of bytes 0..27
 *
 * The checksum is not a secret (NFSv3 over AUTH_SYS has none to protect); it
 * makes a mangled or invented handle BADHANDLE instead of a random inode probe.
 * A well-formed handle of another filesystem is STALE (RFC 1813 §2.3.3).
 */
import { crc32 } from 'node:zlib';
import { NfsStat3 } from './constants.ts';
import { NfsError } from './errors.ts';

export const HANDLE_VERSION = 1;
export const HANDLE_SIZE = 32;

export interface HandleRef {
  ino: number;
  gen: number;
}

export function encodeHandle(fsid: bigint, ino: number, gen: number): Buffer {
  const h = Buffer.alloc(HANDLE_SIZE);
  h[0] = HANDLE_VERSION;
  h.writeBigUInt64BE(BigInt.asUintN(64, fsid), 4);
  h.writeBigUInt64BE(BigInt(ino), 12);
  h.writeBigUInt64BE(BigInt(gen), 20);
  h.writeUInt32BE(crc32(h.subarray(0, 28)), 28);
  return h;
}

/** Throws NfsError(BADHANDLE | STALE). */
export function decodeHandle(h: Uint8Array, fsid: bigint): HandleRef {
  const b = Buffer.from(h.buffer, h.byteOffset, h.byteLength);
  if (b.length !== HANDLE_SIZE) throw new NfsError(NfsStat3.BADHANDLE, `handle of ${b.length} bytes`);
  if (b[0] !== HANDLE_VERSION || b[1] !== 0 || b[2] !== 0 || b[3] !== 0) {
    throw new NfsError(NfsStat3.BADHANDLE, `handle version ${b[0]}`);
  }
  if (crc32(b.subarray(0, 28)) !== b.readUInt32BE(28)) throw new NfsError(NfsStat3.BADHANDLE, 'handle checksum mismatch');
  if (b.readBigUInt64BE(4) !== BigInt.asUintN(64, fsid)) throw new NfsError(NfsStat3.STALE, 'handle of another filesystem');
  const ino = b.readBigUInt64BE(12);
  const gen = b.readBigUInt64BE(20);
  if (ino > BigInt(Number.MAX_SAFE_INTEGER) || gen > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new NfsError(NfsStat3.BADHANDLE, 'handle inode out of range');
  }
  return { ino: Number(ino), gen: Number(gen) };
}
