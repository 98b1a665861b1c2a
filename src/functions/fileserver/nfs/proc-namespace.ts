/**
 * REMOVE, RMDIR, RENAME, LINK: the calls that change names, with wcc_data for every directory touched.
 */
import type { Attr } from '../fs/types.ts';
import type { XdrDecoder } from '../rpc/xdr.ts';
import { NfsStat3 } from './constants.ts';
import { attrsOf, checkName, decodeDirop, decodeFh, fail, proc, procKit, resolve, tryResolve, type NfsServerState } from './common.ts';
import type { Wcc } from './attrs.ts';

export function namespaceProcedures(st: NfsServerState) {
  const { postOp, wcc, dirOp } = procKit(st);

  const removeLike = (name: string, op: 'remove' | 'rmdir') =>
    proc(name, {
      decode: decodeDirop,
      async handle(a): Promise<{ status: NfsStat3; wcc: Wcc }> {
        return dirOp(a.dir, async (dir) => {
          checkName(a.name);
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
    async handle(a): Promise<{ status: NfsStat3; fromWcc: Wcc; toWcc: Wcc }> {
      const fromRef = tryResolve(st, a.from.dir);
      const toRef = tryResolve(st, a.to.dir);
      const [fromBefore, toBefore] = await Promise.all([attrsOf(st, fromRef), attrsOf(st, toRef)]);
      let status = NfsStat3.OK;
      try {
        const from = resolve(st, a.from.dir);
        const to = resolve(st, a.to.dir);
        checkName(a.from.name);
        checkName(a.to.name);
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
    async handle(a): Promise<{ status: NfsStat3; fileAttr?: Attr; wcc: Wcc }> {
      const fileRef = tryResolve(st, a.file);
      const r = await dirOp(a.link.dir, async (dir) => {
        const file = resolve(st, a.file);
        checkName(a.link.name);
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
