/**
 * FSSTAT, FSINFO, PATHCONF: what the filesystem and this server can do.
 */
import type { Attr, FileSystem } from '../fs/types.ts';
import { FSF3_CANSETTIME, FSF3_HOMOGENEOUS, FSF3_LINK, FSF3_SYMLINK, NAME_MAX, NfsStat3 } from './constants.ts';
import { attrsOf, decodeFh, fail, proc, procKit, resolve, tryResolve, type NfsServerState } from './common.ts';

export function fsInfoProcedures(st: NfsServerState) {
  const { postOp } = procKit(st);

  const FSSTAT = proc('NFSPROC3_FSSTAT', {
    decode: decodeFh,
    async handle(fh): Promise<{ status: NfsStat3; attr?: Attr; s?: Awaited<ReturnType<FileSystem['statfs']>> }> {
      try {
        const ref = resolve(st, fh);
        const attr = await st.fs.getattr(ref.ino, ref.gen);
        return { status: NfsStat3.OK, attr, s: await st.fs.statfs() };
      } catch (err) {
        return { status: fail(st, err), attr: await attrsOf(st, tryResolve(st, fh)) };
      }
    },
    encode(enc, r) {
      enc.u32(r.status);
      postOp(enc, r.attr);
      if (r.status !== NfsStat3.OK) return;
      const s = r.s!;
      enc.u64(s.totalBytes).u64(s.freeBytes).u64(s.freeBytes);
      enc.u64(s.totalFiles).u64(s.freeFiles).u64(s.freeFiles);
      enc.u32(0); // invarsec: the numbers may change at any time
    },
  });

  const FSINFO = proc('NFSPROC3_FSINFO', {
    decode: decodeFh,
    async handle(fh): Promise<{ status: NfsStat3; attr?: Attr; maxFileSize?: number }> {
      try {
        const ref = resolve(st, fh);
        const attr = await st.fs.getattr(ref.ino, ref.gen);
        return { status: NfsStat3.OK, attr, maxFileSize: (await st.fs.statfs()).totalBytes };
      } catch (err) {
        return { status: fail(st, err), attr: await attrsOf(st, tryResolve(st, fh)) };
      }
    },
    encode(enc, r) {
      enc.u32(r.status);
      postOp(enc, r.attr);
      if (r.status !== NfsStat3.OK) return;
      const mult = st.fs.blockSize;
      enc.u32(st.rtmax).u32(st.rtmax).u32(mult);
      enc.u32(st.wtmax).u32(st.wtmax).u32(mult);
      enc.u32(64 * 1024); // dtpref
      enc.u64(r.maxFileSize!);
      enc.u32(0).u32(1_000_000); // time_delta: the filesystem keeps milliseconds
      enc.u32(FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME);
    },
  });

  const PATHCONF = proc('NFSPROC3_PATHCONF', {
    decode: decodeFh,
    async handle(fh): Promise<{ status: NfsStat3; attr?: Attr }> {
      try {
        const ref = resolve(st, fh);
        return { status: NfsStat3.OK, attr: await st.fs.getattr(ref.ino, ref.gen) };
      } catch (err) {
        return { status: fail(st, err), attr: await attrsOf(st, tryResolve(st, fh)) };
      }
    },
    encode(enc, r) {
      enc.u32(r.status);
      postOp(enc, r.attr);
      if (r.status !== NfsStat3.OK) return;
      enc.u32(0xffff).u32(NAME_MAX); // linkmax, name_max
      enc.bool(true).bool(true).bool(false).bool(true); // no_trunc, chown_restricted, case_insensitive, case_preserving
    },
  });

  return { FSSTAT, FSINFO, PATHCONF };
}
