/**
 * THE error mapper of the NFS front end: any error a FileSystem, the NFS layer
 * or the device beneath it throws becomes one nfsstat3. Filesystem refusals
 * (SV_ERR_FS_<name>, util/errors.ts fsError) and NFS-layer refusals
 * (SV_ERR_NFS_<name>, nfsRefused) carry the nfsstat3 name in their code; other
 * StorvisorErrors map by errno; internal errors and anything else are a server fault.
 */
import { StorvisorError } from '../../../util/errors.ts';
import { NfsStat3 } from './constants.ts';

const STATUS_CODE = /^SV_ERR_(?:FS|NFS)_([A-Z_]+)$/;

export function nfsStatusOf(err: unknown): NfsStat3 {
  if (err instanceof StorvisorError) {
    const named = STATUS_CODE.exec(err.code)?.[1];
    if (named !== undefined && named !== 'OK' && Object.hasOwn(NfsStat3, named)) return NfsStat3[named as keyof typeof NfsStat3];
    if (err.code === 'SV_ERR_INTERNAL') return NfsStat3.SERVERFAULT;
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
