/**
 * THE error mapper of the NFS front end: any error a FileSystem (or the device
 * beneath it) throws becomes one nfsstat3. FsError codes map one-to-one; block
 * device errnos map by meaning; anything else is a server fault.
 */
import { FsError } from '../fs/types.ts';
import { StorvisorError } from '../../../util/errors.ts';
import { NfsStat3 } from './constants.ts';

/** A protocol-level failure raised by the NFS layer itself (bad handle, bad cookie, ...). */
export class NfsError extends Error {
  constructor(readonly status: NfsStat3, message: string) {
    super(message);
    this.name = 'NfsError';
  }
}

export function nfsStatusOf(err: unknown): NfsStat3 {
  if (err instanceof NfsError) return err.status;
  if (err instanceof FsError) return NfsStat3[err.code];
  if (err instanceof StorvisorError) {
    switch (err.errno) {
      case 'ENOSPC':
        return NfsStat3.NOSPC;
      case 'EROFS':
        return NfsStat3.ROFS;
      case 'ENOENT':
        return NfsStat3.NOENT;
      case 'EEXIST':
        return NfsStat3.EXIST;
      case 'EINVAL':
      case 'ERANGE':
        return NfsStat3.INVAL;
      case 'ENOTSUP':
        return NfsStat3.NOTSUPP;
      case 'EIO':
      case 'ESHUTDOWN':
        return NfsStat3.IO;
    }
  }
  return NfsStat3.SERVERFAULT;
}
