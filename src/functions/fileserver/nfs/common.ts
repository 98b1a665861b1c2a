/** Pieces every NFSv3 procedure shares: server state, handle and name checks, best-effort attributes. */
import type { Attr, FileSystem } from '../fs/types.ts';
import type { Procedure, RpcCall } from '../rpc/server.ts';
import type { XdrDecoder, XdrEncoder } from '../rpc/xdr.ts';
import { NAME_MAX, NFS3_FHSIZE, NfsStat3, PATH_MAX } from './constants.ts';
import { nfsStatusOf } from './errors.ts';
import { nfsRefused } from '../../../util/errors.ts';
import type { HandleCodec, HandleRef } from './handle.ts';
import { encodePostOpAttr, encodeWcc, type Wcc } from './attrs.ts';
import type { Caller, ExportPolicy } from './export.ts';

export interface NfsServerState {
  fs: FileSystem;
  /** Keyed handles of this filesystem (handle.ts). */
  handles: HandleCodec;
  /** Client list, squashing, AUTH_NONE policy (export.ts). */
  policy: ExportPolicy;
  /** Changes every server boot so clients resend UNSTABLE writes they have not seen committed. */
  writeVerifier: Buffer;
  rtmax: number;
  wtmax: number;
  now: () => number;
  stats: { reads: number; writes: number; readBytes: number; writeBytes: number; errors: number; denied: number };
  log: (msg: string) => void;
}

export const decodeFh = (dec: XdrDecoder) => dec.opaque(NFS3_FHSIZE);
/** Names are bounded generously on the wire; the NAME_MAX check gives NAMETOOLONG, not garbage. */
export const decodeName = (dec: XdrDecoder) => dec.string(PATH_MAX);

export const decodeDirop = (dec: XdrDecoder) => ({ dir: decodeFh(dec), name: decodeName(dec) });

export function proc<A, R>(name: string, p: Omit<Procedure<A, R>, 'name'>): Procedure<A, R> {
  return { name, ...p };
}

export function resolve(st: NfsServerState, fh: Buffer): HandleRef {
  return st.handles.decode(fh);
}

/**
 * The identity each admitted call acts as, set by the program's admission wrapper
 * (nfs3.ts) before any procedure runs (the call's `principal`, a field of the call
 * object rather than a WeakMap entry per call); a procedure reached without one is a bug.
 */
export const admitCall = (call: RpcCall, c: Caller) => void (call.principal = c);
export function callerOf(call: RpcCall): Caller {
  const c = call.principal as Caller | undefined;
  if (!c) throw nfsRefused('SERVERFAULT', 'call reached a procedure without admission');
  return c;
}

/** The attributes of a handle's object (the permission checks need them). */
export async function attrOf(st: NfsServerState, ref: HandleRef): Promise<Attr> {
  return st.fs.getattr(ref.ino, ref.gen);
}

/** A directory's attributes, NOTDIR when it is not one (before any permission check, as the RFC orders it). */
export async function dirAttrOf(st: NfsServerState, ref: HandleRef): Promise<Attr> {
  const a = await st.fs.getattr(ref.ino, ref.gen);
  if (a.type !== 'dir') throw nfsRefused('NOTDIR', 'not a directory');
  return a;
}

export function checkName(name: string): void {
  if (Buffer.byteLength(name, 'utf8') > NAME_MAX) throw nfsRefused('NAMETOOLONG', 'name too long');
  if (name.includes('/') || name.includes('\0')) throw nfsRefused('INVAL', 'name contains / or NUL');
}

/** Attributes for post_op_attr / pre_op_attr: best effort, absent on any error. */
export async function attrsOf(st: NfsServerState, ref: HandleRef | undefined): Promise<Attr | undefined> {
  if (!ref) return undefined;
  try {
    return await st.fs.getattr(ref.ino, ref.gen);
  } catch {
    return undefined;
  }
}

export function tryResolve(st: NfsServerState, fh: Buffer): HandleRef | undefined {
  try {
    return resolve(st, fh);
  } catch {
    return undefined;
  }
}

export function fail(st: NfsServerState, err: unknown): NfsStat3 {
  st.stats.errors++;
  const status = nfsStatusOf(err);
  // Expected failures are the client's business; a fault is ours and goes to the log.
  if (status === NfsStat3.SERVERFAULT || status === NfsStat3.IO) st.log(`nfs: ${(err as Error)?.stack ?? String(err)}`);
  return status === NfsStat3.OK ? NfsStat3.SERVERFAULT : status;
}

/** Encoders bound to this filesystem's fsid, and the wcc bracket every directory-changing call uses. */
export function procKit(st: NfsServerState) {
  const fsid = st.fs.fsid;
  const handles = st.handles;
  return {
    postOp: (enc: XdrEncoder, a: Attr | undefined) => encodePostOpAttr(enc, a, fsid),
    wcc: (enc: XdrEncoder, w: Wcc) => encodeWcc(enc, w, fsid),
    postOpFh: (enc: XdrEncoder, a: Attr) => enc.bool(true).opaque(handles.encode(a.ino, a.generation)),
    /** Directory-changing calls: pre attrs, the operation, post attrs; wcc filled on failure too. */
    async dirOp<T>(dirFh: Buffer, op: (dir: HandleRef, dirAttr: Attr) => Promise<T>): Promise<{ status: NfsStat3; wcc: Wcc; value?: T }> {
      const dir = tryResolve(st, dirFh);
      const before = await attrsOf(st, dir);
      try {
        const ref = resolve(st, dirFh);
        const dirAttr = before ?? (await st.fs.getattr(ref.ino, ref.gen));
        if (dirAttr.type !== 'dir') throw nfsRefused('NOTDIR', 'not a directory');
        const value = await op(ref, dirAttr);
        return { status: NfsStat3.OK, wcc: { before, after: await attrsOf(st, dir) }, value };
      } catch (err) {
        return { status: fail(st, err), wcc: { before, after: await attrsOf(st, dir) } };
      }
    },
  };
}
