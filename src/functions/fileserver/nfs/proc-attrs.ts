/**
 * NULL, GETATTR, SETATTR (with its ctime guard), LOOKUP, ACCESS, READLINK: the calls that read or set one object's attributes.
 */
import type { Attr } from '../fs/types.ts';
import type { RpcCall } from '../rpc/server.ts';
import type { XdrDecoder } from '../rpc/xdr.ts';
import { NfsStat3 } from './constants.ts';
import {
  attrsOf,
  callerOf,
  checkName,
  decodeDirop,
  decodeFh,
  dirAttrOf,
  fail,
  proc,
  procKit,
  resolve,
  tryResolve,
  type NfsServerState,
} from './common.ts';
import { decodeSattr, decodeTime, encodeFattr, sameNfsTime, setsClientTime, type Wcc } from './attrs.ts';
import { checkSetattr, grantedAccess, requireRead, requireSearch } from './access.ts';

export function attributeProcedures(st: NfsServerState) {
  const fsid = st.fs.fsid;
  const { postOp, wcc } = procKit(st);

  const NULL = proc<void, void>('NFSPROC3_NULL', { decode: () => undefined, handle: () => undefined, encode: () => {} });

  const GETATTR = proc('NFSPROC3_GETATTR', {
    decode: decodeFh,
    async handle(fh): Promise<{ status: NfsStat3; attr?: Attr }> {
      try {
        const ref = resolve(st, fh);
        return { status: NfsStat3.OK, attr: await st.fs.getattr(ref.ino, ref.gen) };
      } catch (err) {
        return { status: fail(st, err) };
      }
    },
    encode(enc, r) {
      enc.u32(r.status);
      if (r.status === NfsStat3.OK) encodeFattr(enc, r.attr!, fsid);
    },
  });

  const SETATTR = proc('NFSPROC3_SETATTR', {
    decode: (dec: XdrDecoder) => ({
      fh: decodeFh(dec),
      attrs: decodeSattr(dec, st.now),
      guardCtime: dec.bool() ? decodeTime(dec) : undefined,
    }),
    async handle(a, call: RpcCall): Promise<{ status: NfsStat3; wcc: Wcc }> {
      const ref = tryResolve(st, a.fh);
      const before = await attrsOf(st, ref);
      try {
        const r = resolve(st, a.fh);
        const current = before ?? (await st.fs.getattr(r.ino, r.gen));
        if (a.guardCtime !== undefined && !sameNfsTime(current.ctimeMs, a.guardCtime)) {
          return { status: NfsStat3.NOT_SYNC, wcc: { before, after: before } };
        }
        const attrs = checkSetattr(current, a.attrs, callerOf(call), setsClientTime(a.attrs));
        const after = await st.fs.setattr(r.ino, r.gen, attrs);
        return { status: NfsStat3.OK, wcc: { before, after } };
      } catch (err) {
        return { status: fail(st, err), wcc: { before, after: await attrsOf(st, ref) } };
      }
    },
    encode(enc, r) {
      enc.u32(r.status);
      wcc(enc, r.wcc);
    },
  });

  const LOOKUP = proc('NFSPROC3_LOOKUP', {
    decode: decodeDirop,
    async handle(a, call: RpcCall): Promise<{ status: NfsStat3; obj?: Attr; dirAttr?: Attr }> {
      const dirRef = tryResolve(st, a.dir);
      try {
        const dir = resolve(st, a.dir);
        checkName(a.name);
        requireSearch(await dirAttrOf(st, dir), callerOf(call));
        // '..' of the export root is the root: no way above it, whatever the filesystem thinks.
        const obj =
          a.name === '..' && dir.ino === st.fs.rootIno
            ? await st.fs.getattr(dir.ino, dir.gen)
            : await st.fs.lookup(dir.ino, dir.gen, a.name);
        return { status: NfsStat3.OK, obj, dirAttr: await attrsOf(st, dirRef) };
      } catch (err) {
        return { status: fail(st, err), dirAttr: await attrsOf(st, dirRef) };
      }
    },
    encode(enc, r) {
      enc.u32(r.status);
      if (r.status === NfsStat3.OK) {
        enc.opaque(st.handles.encode(r.obj!.ino, r.obj!.generation));
        postOp(enc, r.obj);
      }
      postOp(enc, r.dirAttr);
    },
  });

  const ACCESS = proc('NFSPROC3_ACCESS', {
    decode: (dec: XdrDecoder) => ({ fh: decodeFh(dec), access: dec.u32() }),
    async handle(a, call: RpcCall): Promise<{ status: NfsStat3; attr?: Attr; access: number }> {
      try {
        const ref = resolve(st, a.fh);
        const attr = await st.fs.getattr(ref.ino, ref.gen);
        return { status: NfsStat3.OK, attr, access: grantedAccess(attr, callerOf(call), a.access) };
      } catch (err) {
        return { status: fail(st, err), access: 0 };
      }
    },
    encode(enc, r) {
      enc.u32(r.status);
      postOp(enc, r.attr);
      if (r.status === NfsStat3.OK) enc.u32(r.access);
    },
  });

  const READLINK = proc('NFSPROC3_READLINK', {
    decode: decodeFh,
    async handle(fh, call: RpcCall): Promise<{ status: NfsStat3; attr?: Attr; target?: string }> {
      const ref = tryResolve(st, fh);
      try {
        const r = resolve(st, fh);
        const attr = await st.fs.getattr(r.ino, r.gen);
        if (attr.type === 'symlink') requireRead(attr, callerOf(call), 'read the link');
        const target = await st.fs.readlink(r.ino, r.gen);
        return { status: NfsStat3.OK, attr: await attrsOf(st, ref), target };
      } catch (err) {
        return { status: fail(st, err), attr: await attrsOf(st, ref) };
      }
    },
    encode(enc, r) {
      enc.u32(r.status);
      postOp(enc, r.attr);
      if (r.status === NfsStat3.OK) enc.string(r.target!);
    },
  });

  return { NULL, GETATTR, SETATTR, LOOKUP, ACCESS, READLINK };
}
