/**
 * READ (clamped to rtmax), WRITE (wtmax enforced, stable levels, the boot verifier) and COMMIT.
 */
import type { Attr } from '../fs/types.ts';
import type { XdrDecoder } from '../rpc/xdr.ts';
import type { RpcCall } from '../rpc/server.ts';
import { NfsStat3, StableHow } from './constants.ts';
import { nfsRefused } from '../../../util/errors.ts';
import { attrsOf, callerOf, decodeFh, fail, proc, procKit, resolve, tryResolve, type NfsServerState } from './common.ts';
import { MAY_READ, MAY_WRITE, modeAfterWrite, requireIo } from './access.ts';
import type { Wcc } from './attrs.ts';

export function ioProcedures(st: NfsServerState) {
  const { postOp, wcc } = procKit(st);
  /** Offsets above this are answered as EOF without a device read (made once, not a BigInt per READ). */
  const lastReadOffset = BigInt(Number.MAX_SAFE_INTEGER - st.rtmax);

  const READ = proc('NFSPROC3_READ', {
    decode: (dec: XdrDecoder) => ({ fh: decodeFh(dec), offset: dec.u64(), count: dec.u32() }),
    async handle(a, call: RpcCall): Promise<{ status: NfsStat3; attr?: Attr; data?: Uint8Array; eof?: boolean }> {
      const ref = tryResolve(st, a.fh);
      try {
        const r = ref ?? resolve(st, a.fh); // resolve again only to throw the precise error
        const caller = callerOf(call);
        // RFC 1813: the server may return fewer bytes than asked; we clamp to rtmax.
        const count = Math.min(a.count, st.rtmax);
        if (a.offset > lastReadOffset) {
          const attr = await st.fs.getattr(r.ino, r.gen);
          if (attr.type === 'file') requireIo(attr, caller, MAY_READ);
          if (attr.type !== 'file') throw nfsRefused(attr.type === 'dir' ? 'ISDIR' : 'INVAL', 'not a file');
          return { status: NfsStat3.OK, attr, data: new Uint8Array(0), eof: true };
        }
        // One filesystem call: the read returns the attributes it ran under (else one
        // getattr). The access check comes before any byte leaves; a denied read
        // costs only the device read.
        const res = await st.fs.read(r.ino, r.gen, Number(a.offset), count);
        const attr = res.attr ?? (await st.fs.getattr(r.ino, r.gen));
        requireIo(attr, caller, MAY_READ);
        st.stats.reads++;
        st.stats.readBytes += res.data.byteLength;
        return { status: NfsStat3.OK, attr, data: res.data, eof: res.eof };
      } catch (err) {
        return { status: fail(st, err), attr: await attrsOf(st, ref) };
      }
    },
    encode(enc, r) {
      enc.u32(r.status);
      postOp(enc, r.attr);
      if (r.status !== NfsStat3.OK) return;
      // The data goes out from the buffer it was read into: no copy into the reply.
      enc.u32(r.data!.byteLength).bool(r.eof!).opaqueTail(r.data!);
    },
  });

  const WRITE = proc('NFSPROC3_WRITE', {
    decode: (dec: XdrDecoder) => ({
      fh: decodeFh(dec),
      offset: dec.u64(),
      count: dec.u32(),
      stable: dec.enumOf([StableHow.UNSTABLE, StableHow.DATA_SYNC, StableHow.FILE_SYNC]),
      // Bounded only by the record size: an oversized WRITE must reach handle() to get INVAL.
      data: dec.opaque(0x7fffffff),
    }),
    async handle(a, call: RpcCall): Promise<{ status: NfsStat3; wcc: Wcc; count?: number; committed?: StableHow }> {
      const ref = tryResolve(st, a.fh);
      const before = await attrsOf(st, ref);
      try {
        const r = resolve(st, a.fh);
        const current = before ?? (await st.fs.getattr(r.ino, r.gen));
        const caller = callerOf(call);
        if (current.type === 'file') requireIo(current, caller, MAY_WRITE);
        if (a.count > st.wtmax) throw nfsRefused('INVAL', `WRITE of ${a.count} bytes exceeds wtmax ${st.wtmax}`);
        if (a.data.byteLength < a.count) throw nfsRefused('INVAL', 'WRITE count exceeds the data sent');
        if (a.offset + BigInt(a.count) > BigInt(Number.MAX_SAFE_INTEGER)) throw nfsRefused('FBIG', 'offset too large');
        const stable = a.stable !== StableHow.UNSTABLE;
        // A write by anyone but root drops setuid/setgid first, as Linux does.
        const killed = modeAfterWrite(current, caller);
        if (killed !== undefined) await st.fs.setattr(r.ino, r.gen, { mode: killed });
        const after = await st.fs.write(r.ino, r.gen, Number(a.offset), a.data.subarray(0, a.count), stable);
        st.stats.writes++;
        st.stats.writeBytes += a.count;
        // A stable write is answered with the level asked for, which is what was done: the data and
        // everything needed to read it back (block map, size) are durable before the reply. An
        // in-place overwrite's new mtime/ctime rides on the next journal commit (fs/README.md:
        // "The write path"), as ext4's fdatasync leaves them.
        return { status: NfsStat3.OK, wcc: { before, after }, count: a.count, committed: stable ? a.stable : StableHow.UNSTABLE };
      } catch (err) {
        return { status: fail(st, err), wcc: { before, after: await attrsOf(st, ref) } };
      }
    },
    encode(enc, r) {
      enc.u32(r.status);
      wcc(enc, r.wcc);
      if (r.status === NfsStat3.OK) enc.u32(r.count!).u32(r.committed!).fixed(st.writeVerifier);
    },
  });

  const COMMIT = proc('NFSPROC3_COMMIT', {
    decode: (dec: XdrDecoder) => ({ fh: decodeFh(dec), offset: dec.u64(), count: dec.u32() }),
    async handle(a, call: RpcCall): Promise<{ status: NfsStat3; wcc: Wcc }> {
      const ref = tryResolve(st, a.fh);
      const before = await attrsOf(st, ref);
      try {
        const r = resolve(st, a.fh);
        const current = before ?? (await st.fs.getattr(r.ino, r.gen));
        if (current.type === 'file') requireIo(current, callerOf(call), MAY_WRITE);
        // Offset/count are hints; committing the whole file is always correct.
        await st.fs.commit(r.ino, r.gen);
        return { status: NfsStat3.OK, wcc: { before, after: await attrsOf(st, ref) } };
      } catch (err) {
        return { status: fail(st, err), wcc: { before, after: await attrsOf(st, ref) } };
      }
    },
    encode(enc, r) {
      enc.u32(r.status);
      wcc(enc, r.wcc);
      if (r.status === NfsStat3.OK) enc.fixed(st.writeVerifier);
    },
  });

  return { READ, WRITE, COMMIT };
}
