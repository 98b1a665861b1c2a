/**
 * READDIR and READDIRPLUS (RFC 1813 §3.3.16-17). Entries come from the
 * filesystem in cookie order and are packed until the client's byte budgets
 * (count; dircount and maxcount) are spent; '.' and '..' are not listed (the
 * RFC does not require them and they would need cookies of their own).
 *
 * The cookie verifier is constant per filesystem: the filesystem's cookies are
 * stable positions that survive changes to the directory, so there is nothing a
 * verifier would need to invalidate. A verifier from elsewhere is BAD_COOKIE.
 */
import type { Attr, DirEntry } from '../fs/types.ts';
import type { Procedure, RpcCall } from '../rpc/server.ts';
import { xdrOpaqueSize, type XdrDecoder, type XdrEncoder } from '../rpc/xdr.ts';
import { NFS3_COOKIEVERFSIZE, NfsStat3 } from './constants.ts';
import { nfsRefused } from '../../../util/errors.ts';
import { nfsStatusOf } from './errors.ts';
import { HANDLE_SIZE } from './handle.ts';
import { encodePostOpAttr } from './attrs.ts';
import { attrsOf, callerOf, decodeFh, fail, resolve, type NfsServerState } from './common.ts';
import { MAY_EXEC, permits, requireRead } from './access.ts';

const POST_OP_ATTR = 4 + 84;
/** status + dir post_op_attr + cookieverf + list terminator + eof. */
const REPLY_OVERHEAD = 4 + POST_OP_ATTR + NFS3_COOKIEVERFSIZE + 4 + 4;
/** value_follows + fileid + cookie (the name is added per entry). */
const ENTRY_FIXED = 4 + 8 + 8;
const PLUS_EXTRA = POST_OP_ATTR + 4 + 4 + HANDLE_SIZE;
/** Never ask the filesystem for more than this per call. */
const MAX_BATCH = 4096;

interface Listing {
  status: NfsStat3;
  dirAttr?: Attr;
  entries: Array<DirEntry & { attr?: Attr }>;
  eof: boolean;
}

export function readdirProcedures(st: NfsServerState): { READDIR: Procedure; READDIRPLUS: Procedure } {
  const fsid = st.fs.fsid;
  const verifier = Buffer.alloc(NFS3_COOKIEVERFSIZE);
  verifier.writeBigUInt64BE(BigInt.asUintN(64, fsid) ^ 0x5244_4952_5645_5246n, 0);

  const decodeArgs = (dec: XdrDecoder, plus: boolean) => {
    const fh = decodeFh(dec);
    const cookie = dec.u64();
    const cookieverf = Buffer.from(dec.fixed(NFS3_COOKIEVERFSIZE));
    const dircount = plus ? dec.u32() : Infinity;
    const maxcount = dec.u32();
    return { fh, cookie, cookieverf, dircount, maxcount };
  };

  async function list(a: ReturnType<typeof decodeArgs>, plus: boolean, call: RpcCall): Promise<Listing> {
    let dirRef;
    try {
      dirRef = resolve(st, a.fh);
    } catch (err) {
      return { status: nfsStatusOf(err), entries: [], eof: false };
    }
    try {
      if (a.cookie !== 0n && !a.cookieverf.equals(verifier) && a.cookieverf.some((b) => b !== 0)) {
        throw nfsRefused('BAD_COOKIE', 'cookie verifier from elsewhere');
      }
      if (a.cookie > BigInt(Number.MAX_SAFE_INTEGER)) throw nfsRefused('BAD_COOKIE', 'cookie out of range');
      const caller = callerOf(call);
      const dirBefore = await st.fs.getattr(dirRef.ino, dirRef.gen);
      if (dirBefore.type === 'dir') requireRead(dirBefore, caller, 'list the directory');
      const perEntryGuess = ENTRY_FIXED + 12 + (plus ? PLUS_EXTRA : 0);
      const want = Math.max(1, Math.min(MAX_BATCH, Math.floor(a.maxcount / perEntryGuess) + 1));
      const page = await st.fs.readdir(dirRef.ino, dirRef.gen, Number(a.cookie), want);
      const dirAttr = await st.fs.getattr(dirRef.ino, dirRef.gen);
      let reply = REPLY_OVERHEAD;
      let dir = 0;
      const entries: Listing['entries'] = [];
      let eof = page.eof;
      for (const e of page.entries) {
        const nameBytes = xdrOpaqueSize(Buffer.byteLength(e.name, 'utf8'));
        const size = ENTRY_FIXED + nameBytes + (plus ? PLUS_EXTRA : 0);
        if (reply + size > a.maxcount || dir + ENTRY_FIXED + nameBytes > a.dircount) {
          eof = false;
          break;
        }
        reply += size;
        dir += ENTRY_FIXED + nameBytes;
        entries.push(e);
      }
      if (entries.length === 0 && page.entries.length > 0) throw nfsRefused('TOOSMALL', 'count too small for one entry');
      // Attributes and handles are what LOOKUP would give: only to who may search the directory.
      if (plus && permits(dirAttr, caller, MAY_EXEC)) {
        // Attributes and handles via lookup: the entry's generation is not in DirEntry.
        await Promise.all(
          entries.map(async (e) => {
            try {
              e.attr = await st.fs.lookup(dirRef.ino, dirRef.gen, e.name);
            } catch {
              e.attr = undefined; // removed meanwhile: listed without attributes
            }
          }),
        );
      }
      return { status: NfsStat3.OK, dirAttr, entries, eof };
    } catch (err) {
      const status = fail(st, err);
      return { status, dirAttr: await attrsOf(st, dirRef), entries: [], eof: false };
    }
  }

  const encodeListing = (enc: XdrEncoder, r: Listing, plus: boolean) => {
    enc.u32(r.status);
    encodePostOpAttr(enc, r.dirAttr, fsid);
    if (r.status !== NfsStat3.OK) return;
    enc.fixed(verifier);
    for (const e of r.entries) {
      enc.bool(true).u64(e.ino).string(e.name).u64(e.cookie);
      if (!plus) continue;
      encodePostOpAttr(enc, e.attr, fsid);
      enc.bool(e.attr !== undefined);
      if (e.attr) enc.opaque(st.handles.encode(e.attr.ino, e.attr.generation));
    }
    enc.bool(false).bool(r.eof);
  };

  return {
    READDIR: {
      name: 'NFSPROC3_READDIR',
      decode: (dec) => decodeArgs(dec, false),
      handle: (a, call) => list(a, false, call),
      encode: (enc, r) => encodeListing(enc, r, false),
    },
    READDIRPLUS: {
      name: 'NFSPROC3_READDIRPLUS',
      decode: (dec) => decodeArgs(dec, true),
      handle: (a, call) => list(a, true, call),
      encode: (enc, r) => encodeListing(enc, r, true),
    },
  };
}
