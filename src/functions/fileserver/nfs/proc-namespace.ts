/**
 * REMOVE, RMDIR, RENAME, LINK: the calls that change names, with wcc_data for every directory touched.
 */
import type { Attr } from '../fs/types.ts';
import type { XdrDecoder } from '../rpc/xdr.ts';
import type { RpcCall } from '../rpc/server.ts';
import { NfsStat3 } from './constants.ts';
import { nfsStatusOf } from './errors.ts';
import { nfsRefused } from '../../../util/errors.ts';
import type { HandleRef } from './handle.ts';
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
import type { Wcc } from './attrs.ts';
import { isRoot, MAY_READ, MAY_WRITE, permits, requireAccess, requireDirWrite, requireStickyOk } from './access.ts';
import type { Caller } from './export.ts';

export function namespaceProcedures(st: NfsServerState) {
  const { postOp, wcc, dirOp } = procKit(st);

  /** The entry `name` of a directory, or undefined when there is none ('.' and '..' are the filesystem's to refuse). */
  const entryOf = async (dir: HandleRef, name: string): Promise<Attr | undefined> => {
    if (name === '.' || name === '..') return undefined;
    try {
      return await st.fs.lookup(dir.ino, dir.gen, name);
    } catch (err) {
      if (nfsStatusOf(err) === NfsStat3.NOENT) return undefined;
      throw err;
    }
  };

  /** Write+search on the directory, and the sticky-bit rule for the entry being removed or replaced. */
  const mayUnlink = async (dir: HandleRef, dirAttr: Attr, name: string, c: Caller): Promise<Attr | undefined> => {
    requireDirWrite(dirAttr, c);
    const victim = await entryOf(dir, name);
    if (victim) requireStickyOk(dirAttr, victim, c);
    return victim;
  };

  const removeLike = (name: string, op: 'remove' | 'rmdir') =>
    proc(name, {
      decode: decodeDirop,
      async handle(a, call: RpcCall): Promise<{ status: NfsStat3; wcc: Wcc }> {
        return dirOp(a.dir, async (dir, dirAttr) => {
          checkName(a.name);
          await mayUnlink(dir, dirAttr, a.name, callerOf(call));
          await st.fs[op](dir.ino, dir.gen, a.name);
        });
      },
      encode(enc, r) {
        enc.u32(r.status);
        wcc(enc, r.wcc);
      },
    });

  const RENAME = proc('NFSPROC3_RENAME', {
    decode: (dec: XdrDecoder) => ({ from: decodeDirop(dec), to: decodeDirop(dec) }),
    async handle(a, call: RpcCall): Promise<{ status: NfsStat3; fromWcc: Wcc; toWcc: Wcc }> {
      const fromRef = tryResolve(st, a.from.dir);
      const toRef = tryResolve(st, a.to.dir);
      const [fromBefore, toBefore] = await Promise.all([attrsOf(st, fromRef), attrsOf(st, toRef)]);
      let status = NfsStat3.OK;
      try {
        const from = resolve(st, a.from.dir);
        const to = resolve(st, a.to.dir);
        checkName(a.from.name);
        checkName(a.to.name);
        const c = callerOf(call);
        const [fromDir, toDir] = await Promise.all([dirAttrOf(st, from), dirAttrOf(st, to)]);
        const moving = await mayUnlink(from, fromDir, a.from.name, c);
        await mayUnlink(to, toDir, a.to.name, c);
        // A directory that changes parent has its '..' rewritten: that needs write on it too (Linux).
        if (moving?.type === 'dir' && from.ino !== to.ino) requireAccess(moving, c, MAY_WRITE, 'move the directory');
        await st.fs.rename(from.ino, from.gen, a.from.name, to.ino, to.gen, a.to.name);
      } catch (err) {
        status = fail(st, err);
      }
      const [fromAfter, toAfter] = await Promise.all([attrsOf(st, fromRef), attrsOf(st, toRef)]);
      return { status, fromWcc: { before: fromBefore, after: fromAfter }, toWcc: { before: toBefore, after: toAfter } };
    },
    encode(enc, r) {
      enc.u32(r.status);
      wcc(enc, r.fromWcc);
      wcc(enc, r.toWcc);
    },
  });

  const LINK = proc('NFSPROC3_LINK', {
    decode: (dec: XdrDecoder) => ({ file: decodeFh(dec), link: decodeDirop(dec) }),
    async handle(a, call: RpcCall): Promise<{ status: NfsStat3; fileAttr?: Attr; wcc: Wcc }> {
      const fileRef = tryResolve(st, a.file);
      const r = await dirOp(a.link.dir, async (dir, dirAttr) => {
        const file = resolve(st, a.file);
        checkName(a.link.name);
        const c = callerOf(call);
        requireDirWrite(dirAttr, c);
        // protected_hardlinks (Linux's default): link only what you own or may read and write.
        const target = await st.fs.getattr(file.ino, file.gen);
        if (!isRoot(c) && target.uid !== c.uid && !permits(target, c, MAY_READ | MAY_WRITE)) {
          throw nfsRefused('PERM', 'may not link a file the caller neither owns nor may read and write');
        }
        return st.fs.link(file.ino, file.gen, dir.ino, dir.gen, a.link.name);
      });
      return { status: r.status, fileAttr: r.value ?? (await attrsOf(st, fileRef)), wcc: r.wcc };
    },
    encode(enc, r) {
      enc.u32(r.status);
      postOp(enc, r.fileAttr);
      wcc(enc, r.wcc);
    },
  });

  return { REMOVE: removeLike('NFSPROC3_REMOVE', 'remove'), RMDIR: removeLike('NFSPROC3_RMDIR', 'rmdir'), RENAME, LINK };
}
