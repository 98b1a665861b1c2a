import { errnoOf, StorvisorError, type Errno, nbdWireError } from '../util/errors.ts';
import {
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOMEM,
  NBD_ENOSPC,
  NBD_ENOTSUP,
  NBD_EOVERFLOW,
  NBD_EPERM,
  NBD_ESHUTDOWN,
} from './protocol.ts';

/**
 * The one place a storvisor failure becomes an NBD wire error (server side).
 * ERANGE only reaches here if a device disagrees with our own range check;
 * the spec's closest answer is EINVAL.
 */
export function nbdErrorOf(err: unknown): number {
  switch (errnoOf(err)) {
    case 'EROFS':
      return NBD_EPERM;
    case 'ENOSPC':
      return NBD_ENOSPC;
    case 'EINVAL':
    case 'ERANGE':
      return NBD_EINVAL;
    case 'ENOTSUP':
      return NBD_ENOTSUP;
    case 'ESHUTDOWN':
      return NBD_ESHUTDOWN;
    default:
      return NBD_EIO;
  }
}

/** Absolute host paths (and file: URLs) inside a message: anything from a '/' that starts a word up to a delimiter. */
const HOST_PATH = /(^|[\s'"(=:,[])(?:file:\/\/)?\/[^\s'"),\]]*/g;

/**
 * What a wire error message may say: never a host path (a backend's error
 * names its file). The structured error path runs every message through this.
 */
export function redactHostPaths(message: string): string {
  return message.replace(HOST_PATH, '$1<path>');
}

/** A wire-safe message for a failure: its text without host paths (for the structured error chunk). */
export function nbdErrorMessage(err: unknown): string {
  return redactHostPaths(err instanceof Error ? err.message : String(err));
}

const errnoByWire: Record<number, Errno> = {
  [NBD_EPERM]: 'EROFS',
  [NBD_EIO]: 'EIO',
  [NBD_ENOMEM]: 'EIO',
  [NBD_EINVAL]: 'EINVAL',
  [NBD_ENOSPC]: 'ENOSPC',
  [NBD_EOVERFLOW]: 'EINVAL',
  [NBD_ENOTSUP]: 'ENOTSUP',
  [NBD_ESHUTDOWN]: 'ESHUTDOWN',
};

/** The reverse mapping (client side): a wire error becomes a StorvisorError. */
export function errorFromNbd(wireError: number, what: string): StorvisorError {
  const errno = errnoByWire[wireError] ?? 'EIO';
  return nbdWireError(errno, `${what} failed: NBD server returned error ${wireError}`);
}
