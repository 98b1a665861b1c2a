/**
 * NFS file handles: a fixed 44-byte format built from the inode number and its
 * generation, so handles survive server restarts and go STALE when the inode is
 * freed (the filesystem bumps the generation on reuse).
 *
 *   0  u8   version (2)
 *   1  u8*3 zero
 *   4  u64  fsid
 *  12  u64  ino
 *  20  u64  generation
 *  28  u8*16 HMAC-SHA256(key, bytes 0..27), first 16 bytes
 *
 * The MAC is what makes a handle a capability: AUTH_SYS proves nothing, so the
 * only thing standing between a client and an inode it could not LOOKUP (a file
 * under a 0700 directory) is that it cannot make up the handle. The key is a
 * secret of the volume (see handleKeyFor), so handles stay valid across restarts
 * and move with the volume. A handle whose MAC does not verify is BADHANDLE;
 * a version-1 handle (the old CRC format, forgeable) is STALE so clients
 * remount; a verified handle of another filesystem is STALE (RFC 1813 §2.3.3).
 */
import { createHmac, createSecretKey, hkdfSync, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { invalidArgument, nfsRefused } from '../../../util/errors.ts';

export const HANDLE_VERSION = 2;
const OLD_HANDLE_VERSION = 1;
const OLD_HANDLE_SIZE = 32;
const BODY = 28;
export const HANDLE_MAC_BYTES = 16;
export const HANDLE_SIZE = BODY + HANDLE_MAC_BYTES;
/** Handle keys are 32 bytes (HMAC-SHA256's block-size-safe choice). */
export const HANDLE_KEY_BYTES = 32;

export interface HandleRef {
  ino: number;
  gen: number;
}

/** Verified handles kept per codec (44 bytes of key and a small object each). */
const VERIFIED_CACHE = 4096;

/** Encodes and verifies the handles of one filesystem under one key. */
export class HandleCodec {
  /** Imported once: every handle in and out is one HMAC. */
  private readonly key: KeyObject;
  constructor(readonly fsid: bigint, key: Uint8Array) {
    if (key.byteLength < 16) throw invalidArgument(`nfs: a handle key of ${key.byteLength} bytes is too short (at least 16)`);
    this.key = createSecretKey(Buffer.from(key));
  }

  private mac(body: Buffer): Buffer {
    return createHmac('sha256', this.key).update(body).digest().subarray(0, HANDLE_MAC_BYTES);
  }

  encode(ino: number, gen: number): Buffer {
    const h = Buffer.alloc(HANDLE_SIZE);
    h[0] = HANDLE_VERSION;
    h.writeBigUInt64BE(BigInt.asUintN(64, this.fsid), 4);
    h.writeBigUInt64BE(BigInt(ino), 12);
    h.writeBigUInt64BE(BigInt(gen), 20);
    this.mac(h.subarray(0, BODY)).copy(h, BODY);
    return h;
  }

  /**
   * Handles that verified, by their exact bytes: a hit skips the HMAC (a few µs
   * and several allocations per call). Bounded; cleared whole when full. Only
   * bytes that verified under this codec's key get in, so a hit proves as much.
   */
  private readonly verified = new Map<string, HandleRef>();

  /** Throws nfsRefused('BADHANDLE' | 'STALE') (SV_ERR_NFS_BADHANDLE, SV_ERR_NFS_STALE). */
  decode(h: Uint8Array): HandleRef {
    const b = Buffer.from(h.buffer, h.byteOffset, h.byteLength);
    if (b.length !== HANDLE_SIZE) return this.verify(b);
    const key = b.toString('latin1');
    const hit = this.verified.get(key);
    if (hit) return hit;
    const ref = this.verify(b);
    if (this.verified.size >= VERIFIED_CACHE) this.verified.clear();
    this.verified.set(key, Object.freeze(ref));
    return ref;
  }

  private verify(b: Buffer): HandleRef {
    if (b.length === OLD_HANDLE_SIZE && b[0] === OLD_HANDLE_VERSION) {
      throw nfsRefused('STALE', 'version-1 handle (before keyed handles): mount again');
    }
    if (b.length !== HANDLE_SIZE) throw nfsRefused('BADHANDLE', `handle of ${b.length} bytes`);
    if (b[0] !== HANDLE_VERSION || b[1] !== 0 || b[2] !== 0 || b[3] !== 0) {
      throw nfsRefused('BADHANDLE', `handle version ${b[0]}`);
    }
    if (!timingSafeEqual(this.mac(b.subarray(0, BODY)), b.subarray(BODY))) {
      throw nfsRefused('BADHANDLE', 'handle MAC mismatch');
    }
    if (b.readBigUInt64BE(4) !== BigInt.asUintN(64, this.fsid)) throw nfsRefused('STALE', 'handle of another filesystem');
    const ino = b.readBigUInt64BE(12);
    const gen = b.readBigUInt64BE(20);
    if (ino > BigInt(Number.MAX_SAFE_INTEGER) || gen > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw nfsRefused('BADHANDLE', 'handle inode out of range');
    }
    return { ino: Number(ino), gen: Number(gen) };
  }
}

const isZero = (b: Uint8Array) => b.every((x) => x === 0);
/** Per-process keys of filesystems that keep none, so a server restarted on the same object keeps its handles. */
const processKeys = new WeakMap<object, Uint8Array>();

/**
 * The handle key of a filesystem, from what it keeps on its volume:
 * - `handleKey` (32 random bytes the file server had mkfs put in the superblock): used as is;
 * - otherwise (a volume formatted before keyed handles) HKDF-SHA256 of the volume uuid.
 *   Only the first 8 uuid bytes ever leave the server (as the fsid), so this key rests on
 *   the other 64 random bits: weaker than a full key, documented in the README;
 * - otherwise (memory-fs in tests, or a filesystem that keeps neither) a random key for
 *   this process: handles then last as long as the server, which is as long as such a
 *   filesystem lives anyway.
 */
export function handleKeyFor(fs: object): Uint8Array {
  const sb = (fs as { sb?: { handleKey?: Uint8Array; uuid?: Uint8Array } }).sb;
  if (sb?.handleKey && sb.handleKey.byteLength === HANDLE_KEY_BYTES && !isZero(sb.handleKey)) return sb.handleKey;
  if (sb?.uuid && sb.uuid.byteLength === 16 && !isZero(sb.uuid)) {
    return new Uint8Array(hkdfSync('sha256', sb.uuid, 'storvisor', 'nfs handle key v2', HANDLE_KEY_BYTES));
  }
  let key = processKeys.get(fs);
  if (!key) processKeys.set(fs, (key = new Uint8Array(randomBytes(HANDLE_KEY_BYTES))));
  return key;
}
