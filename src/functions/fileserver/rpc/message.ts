/**
 * ONC RPC v2 messages (RFC 5531 §9): parsing a CALL header and encoding the
 * reply headers. Wire constants live here and nowhere else.
 */
import { isGarbageArgs, type XdrDecoder, type XdrEncoder } from './xdr.ts';
import { parseCredential, type Credential, AUTH_NONE, MAX_AUTH_BYTES } from './auth.ts';

export const RPC_VERSION = 2;
export const MSG_CALL = 0;
export const MSG_REPLY = 1;

export const MSG_ACCEPTED = 0;
export const MSG_DENIED = 1;

export enum AcceptStat {
  SUCCESS = 0,
  PROG_UNAVAIL = 1,
  PROG_MISMATCH = 2,
  PROC_UNAVAIL = 3,
  GARBAGE_ARGS = 4,
  SYSTEM_ERR = 5,
}

export enum RejectStat {
  RPC_MISMATCH = 0,
  AUTH_ERROR = 1,
}

export enum AuthStat {
  AUTH_OK = 0,
  AUTH_BADCRED = 1,
  AUTH_REJECTEDCRED = 2,
  AUTH_BADVERF = 3,
  AUTH_REJECTEDVERF = 4,
  AUTH_TOOWEAK = 5,
}

export interface CallHeader {
  xid: number;
  rpcvers: number;
  prog: number;
  vers: number;
  proc: number;
}

export type ParsedCall =
  | { kind: 'call'; header: CallHeader; cred: Credential }
  /** The header parsed but the credential or verifier did not: answer AUTH_ERROR. */
  | { kind: 'badcred'; header: CallHeader; stat: AuthStat }
  /** Not a call at all (a REPLY, or too short to hold an xid and type): drop it. */
  | { kind: 'ignore'; reason: string };

/** Parse up to the procedure arguments; the decoder is left at the first argument byte. */
export function parseCall(dec: XdrDecoder): ParsedCall {
  let xid: number;
  let type: number;
  try {
    xid = dec.u32();
    type = dec.u32();
  } catch {
    return { kind: 'ignore', reason: 'record shorter than an RPC header' };
  }
  if (type !== MSG_CALL) return { kind: 'ignore', reason: `message type ${type} is not CALL` };
  let header: CallHeader;
  try {
    header = { xid, rpcvers: dec.u32(), prog: dec.u32(), vers: dec.u32(), proc: dec.u32() };
  } catch {
    return { kind: 'ignore', reason: 'truncated call header' };
  }
  // RPC_MISMATCH is decided before the credential is looked at (RFC 5531 §9).
  if (header.rpcvers !== RPC_VERSION) return { kind: 'call', header, cred: { flavor: AUTH_NONE } };
  try {
    const cred = parseCredential(dec.u32(), dec.opaque(MAX_AUTH_BYTES));
    if (!cred) return { kind: 'badcred', header, stat: AuthStat.AUTH_BADCRED };
    const verfFlavor = dec.u32();
    dec.opaque(MAX_AUTH_BYTES);
    // We only ever accept verifiers of AUTH_NONE: the credentials we take carry no proof.
    if (verfFlavor !== AUTH_NONE) return { kind: 'badcred', header, stat: AuthStat.AUTH_BADVERF };
    return { kind: 'call', header, cred };
  } catch (err) {
    if (isGarbageArgs(err)) return { kind: 'badcred', header, stat: AuthStat.AUTH_BADCRED };
    throw err;
  }
}

function replyHead(enc: XdrEncoder, xid: number): void {
  enc.u32(xid).u32(MSG_REPLY);
}

/** MSG_ACCEPTED with an AUTH_NONE verifier and the given accept_stat; results follow for SUCCESS. */
export function encodeAccepted(enc: XdrEncoder, xid: number, stat: AcceptStat): void {
  replyHead(enc, xid);
  enc.u32(MSG_ACCEPTED).u32(AUTH_NONE).u32(0).u32(stat);
}

export function encodeProgMismatch(enc: XdrEncoder, xid: number, low: number, high: number): void {
  encodeAccepted(enc, xid, AcceptStat.PROG_MISMATCH);
  enc.u32(low).u32(high);
}

export function encodeRpcMismatch(enc: XdrEncoder, xid: number): void {
  replyHead(enc, xid);
  enc.u32(MSG_DENIED).u32(RejectStat.RPC_MISMATCH).u32(RPC_VERSION).u32(RPC_VERSION);
}

export function encodeAuthError(enc: XdrEncoder, xid: number, stat: AuthStat): void {
  replyHead(enc, xid);
  enc.u32(MSG_DENIED).u32(RejectStat.AUTH_ERROR).u32(stat);
}
