/**
 * CREATE (UNCHECKED / GUARDED / EXCLUSIVE), MKDIR, SYMLINK, and MKNOD (NOTSUPP).
 */
import type { Attr } from '../fs/types.ts';
import type { RpcCall } from '../rpc/server.ts';
import type { XdrDecoder, XdrEncoder } from '../rpc/xdr.ts';
import { callerIdentity } from '../rpc/auth.ts';
import { CreateMode, Ftype3, NFS3_CREATEVERFSIZE, NfsStat3, PATH_MAX } from './constants.ts';
import { nfsStatusOf } from './errors.ts';
import type { HandleRef } from './handle.ts';
import { attrsOf, checkName, decodeDirop, fail, proc, procKit, resolve, tryResolve, type NfsServerState } from './common.ts';
import { decodeSattr, type Wcc } from './attrs.ts';

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
  const owner = (call: RpcCall, s: { uid?: number; gid?: number }) => {
    const who = callerIdentity(call.cred);
    return { uid: s.uid ?? who.uid, gid: s.gid ?? who.gid };
  };
  /** Apply the sattr3 fields that creation itself did not (times, and size for UNCHECKED). */
  const applyRest = async (obj: Attr, s: ReturnType<typeof decodeSattr>, skip: Array<keyof typeof s>) => {
    const rest = { ...s };
    for (const k of skip) delete rest[k];
    if (Object.keys(rest).length === 0) return obj;
    return st.fs.setattr(obj.ino, obj.generation, rest);
  };

  const CREATE = proc('NFSPROC3_CREATE', {
    decode(dec: XdrDecoder) {
      const where = decodeDirop(dec);
      const mode = dec.enumOf([CreateMode.UNCHECKED, CreateMode.GUARDED, CreateMode.EXCLUSIVE]);
      if (mode === CreateMode.EXCLUSIVE) return { ...where, mode, verifier: Buffer.from(dec.fixed(NFS3_CREATEVERFSIZE)) };
      return { ...where, mode, attrs: decodeSattr(dec, st.now) };
    },
    async handle(a, call): Promise<CreatedResult> {
      const r = await dirOp(a.dir, async (dir) => {
        checkName(a.name);
        if (a.mode === CreateMode.EXCLUSIVE) return createExclusive(dir, a.name, a.verifier!, call);
        const s = a.attrs!;
        const obj = await st.fs.create(dir.ino, dir.gen, a.name, {
          mode: s.mode ?? 0o644,
          ...owner(call, s),
          exclusive: a.mode === CreateMode.GUARDED,
        });
        return applyRest(obj, s, ['mode', 'uid', 'gid']);
      });
      return { status: r.status, obj: r.value, wcc: r.wcc };
    },
    encode: encodeCreated,
  });

  /**
   * EXCLUSIVE create stores the client's verifier in atime/mtime seconds (as
   * knfsd does), so a retransmitted CREATE finds its own file and succeeds.
   */
  async function createExclusive(dir: HandleRef, name: string, verifier: Buffer, call: RpcCall): Promise<Attr> {
    const times = { atimeMs: verifier.readUInt32BE(0) * 1000, mtimeMs: verifier.readUInt32BE(4) * 1000 };
    try {
      const obj = await st.fs.create(dir.ino, dir.gen, name, { mode: 0o644, ...owner(call, {}), exclusive: true });
      return await st.fs.setattr(obj.ino, obj.generation, times);
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
      const r = await dirOp(a.dir, async (dir) => {
        checkName(a.name);
        const obj = await st.fs.mkdir(dir.ino, dir.gen, a.name, { mode: a.attrs.mode ?? 0o755, ...owner(call, a.attrs) });
        return applyRest(obj, a.attrs, ['mode', 'uid', 'gid', 'size']);
      });
      return { status: r.status, obj: r.value, wcc: r.wcc };
    },
    encode: encodeCreated,
  });

  const SYMLINK = proc('NFSPROC3_SYMLINK', {
    decode: (dec: XdrDecoder) => ({ ...decodeDirop(dec), attrs: decodeSattr(dec, st.now), target: dec.string(PATH_MAX) }),
    async handle(a, call): Promise<CreatedResult> {
      const r = await dirOp(a.dir, async (dir) => {
        checkName(a.name);
        return st.fs.symlink(dir.ino, dir.gen, a.name, a.target, { mode: a.attrs.mode ?? 0o777, ...owner(call, a.attrs) });
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
    async handle(a): Promise<CreatedResult> {
      // Device files, sockets and FIFOs do not exist on this filesystem.
      const dir = tryResolve(st, a.dir);
      let status = NfsStat3.NOTSUPP;
      try {
        resolve(st, a.dir);
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
