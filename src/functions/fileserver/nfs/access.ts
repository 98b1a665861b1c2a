/**
 * Permission checks with AUTH_SYS semantics (POSIX mode bits, as knfsd applies
 * them): owner / group (primary or auxiliary) / other, root (after squashing)
 * bypasses everything except execute on a file nobody may execute. Every NFSv3
 * procedure calls these before it touches the filesystem; ACCESS3 answers from
 * the same functions, so what it grants is what the procedures allow.
 *
 * Error codes (RFC 1813): NFS3ERR_ACCES when mode bits deny; NFS3ERR_PERM when
 * the caller is not the owner (or root) for an owner-only operation (chmod,
 * chown, times, sticky-directory deletes).
 */
import type { Attr, SetAttr } from '../fs/types.ts';
import {
  ACCESS3_DELETE,
  ACCESS3_EXECUTE,
  ACCESS3_EXTEND,
  ACCESS3_LOOKUP,
  ACCESS3_MODIFY,
  ACCESS3_READ,
  NfsStat3,
} from './constants.ts';
import { nfsRefused } from '../../../util/errors.ts';
import type { Caller } from './export.ts';

export const MAY_READ = 4;
export const MAY_WRITE = 2;
export const MAY_EXEC = 1;

export const S_ISUID = 0o4000;
export const S_ISGID = 0o2000;
export const S_ISVTX = 0o1000;

export const isRoot = (c: Caller) => c.uid === 0;
export const inGroup = (c: Caller, gid: number) => c.gid === gid || c.gids.includes(gid);
const isOwner = (c: Caller, a: Attr) => c.uid === a.uid;

/** May `c` do `want` (MAY_* bits) to `a`? `ownerOverride`: knfsd's rule for READ/WRITE/COMMIT (see requireIo). */
export function permits(a: Attr, c: Caller, want: number, ownerOverride = false): boolean {
  if (want & MAY_WRITE && c.readOnly) return false;
  if (isRoot(c)) {
    // root may execute only what someone may execute; directories are always searchable.
    return !(want & MAY_EXEC) || a.type === 'dir' || (a.mode & 0o111) !== 0;
  }
  if (ownerOverride && isOwner(c, a)) return true;
  const bits = isOwner(c, a) ? (a.mode >> 6) & 7 : inGroup(c, a.gid) ? (a.mode >> 3) & 7 : a.mode & 7;
  return (bits & want) === want;
}

export function requireAccess(a: Attr, c: Caller, want: number, what: string, ownerOverride = false): void {
  if (!permits(a, c, want, ownerOverride)) throw nfsRefused('ACCES', `permission denied: ${what}`);
}

/** Search (x) on a directory: LOOKUP and every step of a MOUNT path. */
export const requireSearch = (dir: Attr, c: Caller) => requireAccess(dir, c, MAY_EXEC, 'search the directory');
export const requireRead = (a: Attr, c: Caller, what: string) => requireAccess(a, c, MAY_READ, what);
/** Write + search on the directory whose entries change (CREATE, MKDIR, REMOVE, RENAME, LINK, ...). */
export const requireDirWrite = (dir: Attr, c: Caller) => requireAccess(dir, c, MAY_WRITE | MAY_EXEC, 'change the directory');

/**
 * READ / WRITE / COMMIT: the mode bits, with knfsd's owner override: NFS clients
 * check permissions at open(); a file created 0444 and then written through that
 * open (git objects, tar extraction) must keep working for its owner.
 */
export const requireIo = (a: Attr, c: Caller, want: number) =>
  requireAccess(a, c, want, want === MAY_READ ? 'read the file' : 'write the file', true);

/**
 * Sticky directories (S_ISVTX): only the owner of the entry, the owner of the
 * directory or root may remove or rename it (NFS3ERR_PERM, as Linux's EPERM).
 */
export function requireStickyOk(dir: Attr, victim: Attr, c: Caller): void {
  if (!(dir.mode & S_ISVTX) || isRoot(c) || isOwner(c, dir) || isOwner(c, victim)) return;
  throw nfsRefused('PERM', 'sticky directory: not the owner of the entry or the directory');
}

/**
 * SETATTR: check what the caller may change and return the attributes to apply
 * (setgid stripped, setuid/setgid cleared as Linux does). Throws PERM / ACCES.
 * `clientTime`: the times are the client's (SET_TO_CLIENT_TIME), not "now".
 */
export function checkSetattr(a: Attr, s: SetAttr, c: Caller, clientTime: boolean): SetAttr {
  const root = isRoot(c);
  const owner = isOwner(c, a);
  const out: SetAttr = { ...s };
  if (c.readOnly) throw nfsRefused('ACCES', 'read-only caller');
  const uidChanges = s.uid !== undefined && s.uid !== a.uid;
  const gidChanges = s.gid !== undefined && s.gid !== a.gid;
  if (s.uid !== undefined && !root && (uidChanges || !owner)) throw nfsRefused('PERM', 'only root may change the owner');
  if (s.gid !== undefined && !root && (!owner || (gidChanges && !inGroup(c, s.gid)))) {
    throw nfsRefused('PERM', 'only the owner may change the group, and only to a group it is in');
  }
  if (s.mode !== undefined && !root && !owner) throw nfsRefused('PERM', 'only the owner may change the mode');
  const timesSet = s.atimeMs !== undefined || s.mtimeMs !== undefined;
  if (timesSet && !root && !owner) {
    // Arbitrary times are the owner's; "now" is anyone's who may write (utimes(NULL)).
    if (clientTime) throw nfsRefused('PERM', 'only the owner may set arbitrary times');
    requireAccess(a, c, MAY_WRITE, 'set the times to now');
  }
  if (s.size !== undefined) {
    if (a.type === 'dir') throw nfsRefused('ISDIR', 'cannot set the size of a directory');
    // With knfsd's owner override, like WRITE: O_TRUNC through an open the client already allowed.
    requireAccess(a, c, MAY_WRITE, 'change the size', true);
  }
  let mode = s.mode ?? a.mode;
  const gid = s.gid ?? a.gid;
  // A non-root chmod may not give a file a group it cannot act as (Linux: setgid silently dropped).
  if (s.mode !== undefined && !root && a.type !== 'dir' && mode & S_ISGID && !inGroup(c, gid)) mode &= ~S_ISGID;
  // chown of a non-directory clears setuid and setgid-with-group-exec (Linux, also for root).
  if ((uidChanges || gidChanges) && a.type !== 'dir') mode = killSuid(mode);
  // A truncation by anyone but root clears them too (like a write).
  if (s.size !== undefined && !root) mode = killSuid(mode);
  if (mode !== (s.mode ?? a.mode)) out.mode = mode;
  return out;
}

/** S_ISUID always, S_ISGID only with group execute (without it, it means mandatory locking). */
export function killSuid(mode: number): number {
  let m = mode & ~S_ISUID;
  if (m & 0o010) m &= ~S_ISGID;
  return m;
}

/** WRITE by anyone but root clears setuid/setgid: the mode to set, or undefined when nothing changes. */
export function modeAfterWrite(a: Attr, c: Caller): number | undefined {
  if (isRoot(c) || a.type !== 'file') return undefined;
  const m = killSuid(a.mode);
  return m === a.mode ? undefined : m;
}

/**
 * The owner and mode a new object gets: the caller's uid; the directory's group
 * when it is setgid (and setgid inherited by subdirectories), else the caller's.
 * Client-supplied uid/gid are honoured only where a chown would be.
 */
export function newObjectOwner(dir: Attr, c: Caller, s: { uid?: number; gid?: number; mode?: number }, isDir: boolean, mode: number) {
  if (c.readOnly) throw nfsRefused('ACCES', 'read-only caller');
  const root = isRoot(c);
  if (s.uid !== undefined && s.uid !== c.uid && !root) throw nfsRefused('PERM', 'only root may create objects for another owner');
  const inheritGid = (dir.mode & S_ISGID) !== 0;
  const defaultGid = inheritGid ? dir.gid : c.gid;
  if (s.gid !== undefined && s.gid !== defaultGid && !root && !inGroup(c, s.gid)) {
    throw nfsRefused('PERM', 'cannot create objects in a group the caller is not in');
  }
  const uid = s.uid ?? c.uid;
  const gid = s.gid ?? defaultGid;
  let m = mode & 0o7777;
  if (isDir && inheritGid) m |= S_ISGID;
  if (!isDir && m & S_ISGID && !root && !inGroup(c, gid)) m &= ~S_ISGID;
  return { uid, gid, mode: m };
}

/** ACCESS3: the asked-for rights the procedures would grant, from the same checks. */
export function grantedAccess(a: Attr, c: Caller, asked: number): number {
  let granted = 0;
  if (permits(a, c, MAY_READ)) granted |= ACCESS3_READ;
  if (permits(a, c, MAY_WRITE)) {
    granted |= ACCESS3_MODIFY | ACCESS3_EXTEND;
    // Deleting entries of a directory needs write and search on it.
    if (a.type === 'dir' && permits(a, c, MAY_WRITE | MAY_EXEC)) granted |= ACCESS3_DELETE;
  }
  if (a.type === 'dir') {
    if (permits(a, c, MAY_EXEC)) granted |= ACCESS3_LOOKUP;
  } else if (permits(a, c, MAY_EXEC)) granted |= ACCESS3_EXECUTE;
  return granted & asked;
}
