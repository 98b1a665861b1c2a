/**
 * RPC credentials (RFC 5531 §8.2, Appendix A): AUTH_NONE and AUTH_SYS. Both
 * carry no proof; AUTH_SYS only tells us who the client says it is. Bodies are
 * bounded and must be consumed exactly; anything else is AUTH_BADCRED.
 *
 * What a credential may do is the export's decision, not this module's: see
 * nfs/export.ts (client list, root squash, AUTH_NONE policy) and nfs/access.ts.
 */
import { XdrDecoder } from './xdr.ts';

export const AUTH_NONE = 0;
export const AUTH_SYS = 1;
/** RFC 5531: opaque_auth bodies are at most 400 bytes. */
export const MAX_AUTH_BYTES = 400;
const MAX_MACHINE_NAME = 255;
const MAX_GIDS = 16;

export type Credential =
  | { flavor: typeof AUTH_NONE }
  | { flavor: typeof AUTH_SYS; stamp: number; machineName: string; uid: number; gid: number; gids: number[] };

/** Returns null when the flavor is unknown or the body is malformed. */
export function parseCredential(flavor: number, body: Buffer): Credential | null {
  if (flavor === AUTH_NONE) return { flavor: AUTH_NONE };
  if (flavor !== AUTH_SYS) return null;
  try {
    const dec = new XdrDecoder(body);
    const stamp = dec.u32();
    const machineName = dec.opaque(MAX_MACHINE_NAME).toString('latin1');
    const uid = dec.u32();
    const gid = dec.u32();
    const count = dec.u32();
    if (count > MAX_GIDS) return null;
    const gids: number[] = [];
    for (let i = 0; i < count; i++) gids.push(dec.u32());
    if (dec.remaining !== 0) return null;
    return { flavor: AUTH_SYS, stamp, machineName, uid, gid, gids };
  } catch {
    return null;
  }
}
