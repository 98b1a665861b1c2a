/**
 * NFSv3 attribute structures on the wire (RFC 1813 §2.6): fattr3, post_op_attr,
 * pre_op_attr/wcc_data, sattr3 and times.
 */
import type { Attr, SetAttr } from '../fs/types.ts';
import type { XdrDecoder, XdrEncoder } from '../rpc/xdr.ts';
import { Ftype3, TimeHow } from './constants.ts';

const FTYPE = { file: Ftype3.REG, dir: Ftype3.DIR, symlink: Ftype3.LNK } as const;

export function encodeTime(enc: XdrEncoder, ms: number): void {
  const t = Math.max(0, ms);
  const sec = Math.floor(t / 1000);
  enc.u32(sec).u32(Math.round((t - sec * 1000) * 1e6));
}

export function decodeTime(dec: XdrDecoder): number {
  const sec = dec.u32();
  const nsec = dec.u32();
  // Milliseconds are what the FileSystem stores; finer client times are rounded down.
  return sec * 1000 + Math.floor(Math.min(nsec, 999_999_999) / 1e6);
}

/** The last fsid encoded, split into its two words once (a server has one): no BigInt per reply. */
let fsidSeen: bigint = -1n;
let fsidHi = 0;
let fsidLo = 0;

export function encodeFattr(enc: XdrEncoder, a: Attr, fsid: bigint): void {
  enc.u32(FTYPE[a.type]).u32(a.mode & 0o7777).u32(a.nlink).u32(a.uid).u32(a.gid);
  enc.u64(a.size).u64(a.used);
  enc.u32(0).u32(0); // rdev: no device files
  if (fsid !== fsidSeen) {
    const v = BigInt.asUintN(64, fsid);
    fsidHi = Number(v >> 32n);
    fsidLo = Number(v & 0xffffffffn);
    fsidSeen = fsid;
  }
  enc.u32(fsidHi).u32(fsidLo).u64(a.ino);
  encodeTime(enc, a.atimeMs);
  encodeTime(enc, a.mtimeMs);
  encodeTime(enc, a.ctimeMs);
}

export function encodePostOpAttr(enc: XdrEncoder, a: Attr | undefined, fsid: bigint): void {
  enc.bool(a !== undefined);
  if (a) encodeFattr(enc, a, fsid);
}

/** wcc_data: the pre-operation (size, mtime, ctime) and the post-operation attributes. */
export interface Wcc {
  before?: Attr;
  after?: Attr;
}

export function encodeWcc(enc: XdrEncoder, wcc: Wcc, fsid: bigint): void {
  enc.bool(wcc.before !== undefined);
  if (wcc.before) {
    enc.u64(wcc.before.size);
    encodeTime(enc, wcc.before.mtimeMs);
    encodeTime(enc, wcc.before.ctimeMs);
  }
  encodePostOpAttr(enc, wcc.after, fsid);
}

/** The decoded sattr3s that set a time to the client's value (only the owner may). */
const clientTimed = new WeakSet<SetAttr>();
export const setsClientTime = (s: SetAttr) => clientTimed.has(s);

/** sattr3, decoded to the FileSystem's SetAttr; "server time" becomes `now`. */
export function decodeSattr(dec: XdrDecoder, now: () => number): SetAttr {
  const s: SetAttr = {};
  let clientTime = false;
  if (dec.bool()) s.mode = dec.u32() & 0o7777;
  if (dec.bool()) s.uid = dec.u32();
  if (dec.bool()) s.gid = dec.u32();
  if (dec.bool()) {
    const size = dec.u64();
    s.size = size > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(size);
  }
  for (const field of ['atimeMs', 'mtimeMs'] as const) {
    const how = dec.enumOf([TimeHow.DONT_CHANGE, TimeHow.SET_TO_SERVER_TIME, TimeHow.SET_TO_CLIENT_TIME]);
    if (how === TimeHow.SET_TO_CLIENT_TIME) {
      s[field] = decodeTime(dec);
      clientTime = true;
    } else if (how === TimeHow.SET_TO_SERVER_TIME) s[field] = now();
  }
  if (clientTime) clientTimed.add(s);
  return s;
}

/** The 32-bit seconds of an NFS time, as a client would compare them (guards, verifiers). */
export const sameNfsTime = (aMs: number, bMs: number) => Math.floor(aMs) === Math.floor(bMs);
