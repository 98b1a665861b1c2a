/**
 * CREATE (UNCHECKED / GUARDED / EXCLUSIVE), MKDIR, SYMLINK, and MKNOD (NOTSUPP).
 */
import type { Attr } from '../fs/types.ts';
import type { RpcCall } from '../rpc/server.ts';
import type { XdrDecoder, XdrEncoder } from '../rpc/xdr.ts';
import { CreateMode, Ftype3, NFS3_CREATEVERFSIZE, NfsStat3, PATH_MAX } from './constants.ts';
import { nfsStatusOf } from './errors.ts';
import type { HandleRef } from './handle.ts';
import { attrsOf, callerOf, checkName, decodeDirop, dirAttrOf, fail, proc, procKit, resolve, tryResolve, type NfsServerState } from './common.ts';
import { decodeSattr, setsClientTime, type Wcc } from './attrs.ts';
import { checkSetattr, newObjectOwner, requireDirWrite } from './access.ts';
import type { Caller } from './export.ts';

/** The EXCLUSIVE create verifier as stored: atime seconds, then mtime seconds. */
const verifierOf = (a: Attr) => {
  const v = Buffer.alloc(NFS3_CREATEVERFSIZE);
  v.writeUInt32BE(Math.floor(a.atimeMs / 1000) >>> 0, 0);
  v.writeUInt32BE(Math.floor(a.mtimeMs / 1000) >>> 0, 4);
  return v;
};

export function createProcedures(st: NfsServerState) {
  const { postOp, wcc, postOpFh, dirOp } = procKit(st);

  type CreatedResult = { status: NfsStat3; obj?: Attr; wcc: Wcc };
  const encodeCreated = (enc: XdrEncoder, r: CreatedResult) => {
    enc.u32(r.status);
    if (r.status === NfsStat3.OK) {
      postOpFh(enc, r.obj!);
      postOp(enc, r.obj);
    }
    wcc(enc, r.wcc);
  };
  /**
   * Apply the sattr3 fields that creation itself did not (times, and size for
   * UNCHECKED), checked like a SETATTR by the same caller: for a new object it is
   * the owner; for an existing one (UNCHECKED over a file) it may not be.
   */
  const applyRest = async (obj: Attr, s: ReturnType<typeof decodeSattr>, skip: Array<keyof typeof s>, caller: Caller) => {
    const rest = { ...s };
    for (const k of skip) delete rest[k];
    // Truncating a file to the size it has is nothing (a new file, O_CREAT|O_TRUNC with mode 0444).
    if (rest.size === obj.size) delete rest.size;
    if (Object.keys(rest).length === 0) return obj;
    return st.fs.setattr(obj.ino, obj.generation, checkSetattr(obj, rest, caller, setsClientTime(s)));
  };

  const CREATE = proc('NFSPROC3_CREATE', {
    decode(dec: XdrDecoder) {
      const where = decodeDirop(dec);
      const mode = dec.enumOf([CreateMode.UNCHECKED, CreateMode.GUARDED, CreateMode.EXCLUSIVE]);
      if (mode === CreateMode.EXCLUSIVE) return { ...where, mode, verifier: Buffer.from(dec.fixed(NFS3_CREATEVERFSIZE)) };
      return { ...where, mode, attrs: decodeSattr(dec, st.now) };
    },
    async handle(a, call): Promise<CreatedResult> {
      const r = await dirOp(a.dir, async (dir, dirAttr) => {
        checkName(a.name);
        const caller = callerOf(call);
        requireDirWrite(dirAttr, caller);
        if (a.mode === CreateMode.EXCLUSIVE) return createExclusive(dir, dirAttr, a.name, a.verifier!, caller);
        const s = a.attrs!;
        const owned = newObjectOwner(dirAttr, caller, s, false, s.mode ?? 0o644);
        const obj = await st.fs.create(dir.ino, dir.gen, a.name, { ...owned, exclusive: a.mode === CreateMode.GUARDED });
        // UNCHECKED may have returned an existing file: whatever else it asks (a truncation) is a SETATTR on it.
        return applyRest(obj, s, ['mode', 'uid', 'gid'], caller);
      });
      return { status: r.status, obj: r.value, wcc: r.wcc };
    },
    encode: encodeCreated,
  });

  /**
   * EXCLUSIVE create stores the client's verifier in atime/mtime seconds (as
   * knfsd does), so a retransmitted CREATE finds its own file and succeeds. The
   * times are set in the same transaction as the name: a crash leaves either no
   * file or a file with its verifier, so a CREATE retried after a server restart
   * succeeds. RFC 1813 (3.3.8): until the client's SETATTR after a successful
   * exclusive create, the file's attributes are the server's to overload; that
   * SETATTR replaces the times, and no retransmission can follow it.
   */
  async function createExclusive(dir: HandleRef, dirAttr: Attr, name: string, verifier: Buffer, caller: Caller): Promise<Attr> {
    const times = { atimeMs: verifier.readUInt32BE(0) * 1000, mtimeMs: verifier.readUInt32BE(4) * 1000 };
    try {
      const owned = newObjectOwner(dirAttr, caller, {}, false, 0o644);
      return await st.fs.create(dir.ino, dir.gen, name, { ...owned, exclusive: true, times });
    } catch (err) {
      if (nfsStatusOf(err) !== NfsStat3.EXIST) throw err;
      const existing = await st.fs.lookup(dir.ino, dir.gen, name);
      if (existing.type === 'file' && verifierOf(existing).equals(verifier)) return existing;
      throw err;
    }
  }

  const MKDIR = proc('NFSPROC3_MKDIR', {
    decode: (dec: XdrDecoder) => ({ ...decodeDirop(dec), attrs: decodeSattr(dec, st.now) }),
    async handle(a, call): Promise<CreatedResult> {
      const r = await dirOp(a.dir, async (dir, dirAttr) => {
        checkName(a.name);
        const caller = callerOf(call);
        requireDirWrite(dirAttr, caller);
        const owned = newObjectOwner(dirAttr, caller, a.attrs, true, a.attrs.mode ?? 0o755);
        const obj = await st.fs.mkdir(dir.ino, dir.gen, a.name, owned);
        return applyRest(obj, a.attrs, ['mode', 'uid', 'gid', 'size'], caller);
      });
      return { status: r.status, obj: r.value, wcc: r.wcc };
    },
    encode: encodeCreated,
  });

  const SYMLINK = proc('NFSPROC3_SYMLINK', {
    decode: (dec: XdrDecoder) => ({ ...decodeDirop(dec), attrs: decodeSattr(dec, st.now), target: dec.string(PATH_MAX) }),
    async handle(a, call): Promise<CreatedResult> {
      const r = await dirOp(a.dir, async (dir, dirAttr) => {
        checkName(a.name);
        const caller = callerOf(call);
        requireDirWrite(dirAttr, caller);
        const owned = newObjectOwner(dirAttr, caller, a.attrs, false, a.attrs.mode ?? 0o777);
        return st.fs.symlink(dir.ino, dir.gen, a.name, a.target, owned);
      });
      return { status: r.status, obj: r.value, wcc: r.wcc };
    },
    encode: encodeCreated,
  });

  const MKNOD = proc('NFSPROC3_MKNOD', {
    decode(dec: XdrDecoder) {
      const where = decodeDirop(dec);
      const type = dec.enumOf([Ftype3.REG, Ftype3.DIR, Ftype3.BLK, Ftype3.CHR, Ftype3.LNK, Ftype3.SOCK, Ftype3.FIFO]);
      if (type === Ftype3.CHR || type === Ftype3.BLK) {
        decodeSattr(dec, st.now);
        dec.u32();
        dec.u32();
      } else if (type === Ftype3.SOCK || type === Ftype3.FIFO) decodeSattr(dec, st.now);
      return where;
    },
    async handle(a, call: RpcCall): Promise<CreatedResult> {
      // Device files, sockets and FIFOs do not exist on this filesystem; who may not create anything hears that first.
      const dir = tryResolve(st, a.dir);
      let status = NfsStat3.NOTSUPP;
      try {
        requireDirWrite(await dirAttrOf(st, resolve(st, a.dir)), callerOf(call));
      } catch (err) {
        status = fail(st, err);
      }
      const attr = await attrsOf(st, dir);
      return { status, wcc: { before: attr, after: attr } };
    },
    encode: encodeCreated,
  });

  return { CREATE, MKDIR, SYMLINK, MKNOD };
}
