/**
 * ACCESS3 (RFC 1813 §3.3.4): which of the asked-for rights the caller would get
 * from the mode bits. Advisory, like every NFSv3 server's: clients use it to
 * decide what to attempt; the filesystem enforces nothing beyond it.
 */
import type { Attr } from '../fs/types.ts';
import {
  ACCESS3_DELETE,
  ACCESS3_EXECUTE,
  ACCESS3_EXTEND,
  ACCESS3_LOOKUP,
  ACCESS3_MODIFY,
  ACCESS3_READ,
} from './constants.ts';

export function grantedAccess(a: Attr, who: { uid: number; gid: number; gids: number[] }, asked: number): number {
  let bits: number;
  if (who.uid === 0) bits = 0o7;
  else if (who.uid === a.uid) bits = (a.mode >> 6) & 7;
  else if (who.gid === a.gid || who.gids.includes(a.gid)) bits = (a.mode >> 3) & 7;
  else bits = a.mode & 7;
  // root may execute only what someone may execute.
  const anyExec = (a.mode & 0o111) !== 0;
  let granted = 0;
  if (bits & 4) granted |= ACCESS3_READ;
  if (bits & 2) granted |= ACCESS3_MODIFY | ACCESS3_EXTEND | (a.type === 'dir' ? ACCESS3_DELETE : 0);
  if (bits & 1) {
    if (a.type === 'dir') granted |= ACCESS3_LOOKUP;
    else if (who.uid !== 0 || anyExec) granted |= ACCESS3_EXECUTE;
  }
  return granted & asked;
}
