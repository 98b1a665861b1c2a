/**
 * Every failure storvisor reports, in one place (after undici's lib/core/errors.js).
 * Each error has a stable `code` for programs and an `errno` name that the
 * protocol front ends (NBD, virtio-blk, NFS, RESP) map to their own wire codes.
 */
export type Errno =
  | 'EIO'
  | 'ENOSPC'
  | 'EINVAL'
  | 'ERANGE'
  | 'EROFS'
  | 'ENOTSUP'
  | 'ESHUTDOWN'
  | 'ENOENT'
  | 'EEXIST'
  | 'EBUSY'
  | 'EACCES';

export class StorvisorError extends Error {
  readonly code: string;
  readonly errno: Errno;
  constructor(code: string, errno: Errno, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StorvisorError';
    this.code = code;
    this.errno = errno;
  }
}

/** A request that falls outside the device or volume. */
export const outOfRange = (offset: number, length: number, size: number) =>
  new StorvisorError(
    'SV_ERR_OUT_OF_RANGE',
    'ERANGE',
    `request [${offset}, +${length}) is outside the device (size ${size})`,
  );

export const readOnly = (what: string) =>
  new StorvisorError('SV_ERR_READ_ONLY', 'EROFS', `${what} is read-only`);

export const invalidArgument = (message: string) =>
  new StorvisorError('SV_ERR_INVALID_ARGUMENT', 'EINVAL', message);

export const noSpace = (message: string) => new StorvisorError('SV_ERR_NO_SPACE', 'ENOSPC', message);

export const ioError = (message: string, cause?: unknown) =>
  new StorvisorError('SV_ERR_IO', 'EIO', message, { cause });

export const notSupported = (message: string) =>
  new StorvisorError('SV_ERR_NOT_SUPPORTED', 'ENOTSUP', message);

export const shutDown = (what: string) =>
  new StorvisorError('SV_ERR_SHUT_DOWN', 'ESHUTDOWN', `${what} is shut down`);

export const notFound = (what: string) => new StorvisorError('SV_ERR_NOT_FOUND', 'ENOENT', `${what} not found`);

export const alreadyExists = (what: string) =>
  new StorvisorError('SV_ERR_EXISTS', 'EEXIST', `${what} already exists`);

/** A volume (or the data directory) that something is using: the operation would pull it from under its user. */
export const inUse = (message: string) => new StorvisorError('SV_ERR_IN_USE', 'EBUSY', message);

export const dataDirBusy = (message: string) => new StorvisorError('SV_ERR_DATA_DIR_BUSY', 'EBUSY', message);

/** Creating or growing thin volumes beyond what the filesystem can back (see VolumeStore's overcommit). */
export const overcommitted = (message: string) => new StorvisorError('SV_ERR_OVERCOMMIT', 'ENOSPC', message);

/** Management API refusals: each has its own stable code and HTTP status (src/api/server.ts). */
export const unauthorized = (message: string) => new StorvisorError('SV_ERR_UNAUTHORIZED', 'EACCES', message);
export const misdirected = (message: string) => new StorvisorError('SV_ERR_MISDIRECTED', 'EACCES', message);
export const unsupportedMediaType = (message: string) => new StorvisorError('SV_ERR_MEDIA_TYPE', 'EINVAL', message);

/** Map any thrown value (a Node fs error, a StorvisorError, anything) to an errno name. */
export function errnoOf(err: unknown): Errno {
  if (err instanceof StorvisorError) return err.errno;
  const code = (err as { code?: unknown } | null)?.code;
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return 'ENOSPC';
    case 'EINVAL':
      return 'EINVAL';
    case 'EROFS':
    case 'EPERM':
    case 'EACCES':
      return 'EROFS';
    case 'ENOENT':
      return 'ENOENT';
    case 'EEXIST':
      return 'EEXIST';
    case 'EBUSY':
      return 'EBUSY';
    default:
      return 'EIO';
  }
}

/** A feature that needs the native addon (process guests: shared memory, eventfds, affinity), which is not built or not loadable. */
export const nativeUnavailable = (message: string) => new StorvisorError('SV_ERR_NATIVE_UNAVAILABLE', 'ENOTSUP', message);
