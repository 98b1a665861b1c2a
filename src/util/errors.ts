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

/** A config file field that is wrong: `path` names it (functions[0].listen.port). */
export class ConfigError extends StorvisorError {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super('SV_ERR_CONFIG', 'EINVAL', `${path}: ${message}`);
    this.name = 'ConfigError';
  }
}

/** A command line the CLI cannot run (usage errors, a missing API). */
export const usage = (message: string) => new StorvisorError('SV_ERR_USAGE', 'EINVAL', message);

/**
 * A filesystem's on-disk structures contradict themselves (a bad magic, a
 * checksum, a pointer out of bounds): the volume needs fsck, not a retry.
 */
export const fsCorrupt = (message: string, cause?: unknown) =>
  new StorvisorError('SV_ERR_FS_CORRUPT', 'EIO', message, { cause });

/** An on-disk record (a manifest, a journal) that cannot be parsed. */
export const badManifest = (message: string, cause?: unknown) =>
  new StorvisorError('SV_ERR_BAD_MANIFEST', 'EIO', message, { cause });

/** A volume the controller knows but cannot serve right now (its provider is down, it failed to open). */
export const volumeUnavailable = (message: string) => new StorvisorError('SV_ERR_VOLUME_UNAVAILABLE', 'EIO', message);

/** The controller's own NBD export is off, and something needs it (gateways). */
export const nbdDisabled = (message: string) => new StorvisorError('SV_ERR_NBD_DISABLED', 'ENOTSUP', message);

/** The NBD peer broke the protocol (handshake or transmission). */
export const nbdProtocol = (message: string) => new StorvisorError('SV_ERR_NBD_PROTOCOL', 'EIO', message);

/** An NBD wire error received by the client: SV_ERR_NBD_<errno>. */
export const nbdWireError = (errno: Errno, message: string) => new StorvisorError(`SV_ERR_NBD_${errno}`, errno, message);

/** A system call on a volume's file failed: SV_ERR_BACKEND_<Node's errno code> (SV_ERR_BACKEND_EIO...). */
export const backendFailure = (systemCode: string, errno: Errno, message: string) =>
  new StorvisorError(`SV_ERR_BACKEND_${systemCode}`, errno, message);

/** The data directory lock could not be taken for a reason other than another controller holding it. */
export const dataDirLock = (message: string, cause?: unknown) =>
  new StorvisorError('SV_ERR_DATA_DIR_LOCK', 'EIO', message, { cause });

/** A deployment (guest, gateway) that exited or stopped before it was ready. */
export const startFailed = (message: string) => new StorvisorError('SV_ERR_START_FAILED', 'EIO', message);

/** Management API: the token file cannot be read or is unsafe. */
export const apiToken = (message: string, cause?: unknown) =>
  new StorvisorError('SV_ERR_API_TOKEN', 'EACCES', message, { cause });
export const bodyTooLarge = (message: string) => new StorvisorError('SV_ERR_BODY_TOO_LARGE', 'EINVAL', message);
export const noRoute = (message: string) => new StorvisorError('SV_ERR_NO_ROUTE', 'ENOENT', message);

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

/** Snapshots and clones (src/storage/snapshots/). */
export const hasClones = (message: string) => new StorvisorError('SV_ERR_HAS_CLONES', 'EBUSY', message);
export const hasSnapshots = (message: string) => new StorvisorError('SV_ERR_HAS_SNAPSHOTS', 'EBUSY', message);
/** Too many snapshots on a volume, or more block-map memory than the store allows. */
export const snapshotLimit = (message: string) => new StorvisorError('SV_ERR_SNAPSHOT_LIMIT', 'ENOSPC', message);
/** Management API: a known path with another method. */
export const methodNotAllowed = (message: string) => new StorvisorError('SV_ERR_METHOD', 'EINVAL', message);

/** A function deployed at runtime that did not start (nothing of it is left behind). */
export const deployFailed = (message: string, cause?: unknown) => new StorvisorError('SV_ERR_DEPLOY_FAILED', 'EIO', message, { cause });

/** The runtime state file (<dataDir>/runtime-state.json) cannot be used. */
export const runtimeStateError = (message: string) => new StorvisorError('SV_ERR_RUNTIME_STATE', 'EIO', message);

/** A bounded resource is full (functions per controller, ...). */
export const limitReached = (message: string) => new StorvisorError('SV_ERR_LIMIT', 'ENOSPC', message);
/** RBD volumes (src/storage/rbd*.ts). */
/** librbd cannot be used here (not installed, or disabled): the message says how to get it. */
export const rbdUnavailableError = (message: string) => new StorvisorError('SV_ERR_RBD_UNAVAILABLE', 'ENOTSUP', message);
/** A cluster call failed: `what` names the call and the image, `result` is librados' negative errno. */
export const rbdFailed = (what: string, result: number) =>
  new StorvisorError('SV_ERR_RBD', result === -16 ? 'EBUSY' : result === -2 ? 'ENOENT' : result === -17 ? 'EEXIST' : 'EIO', `${what}: ${rbdErrno(result)}`);
/** Another controller holds the image's exclusive lock: the message names it. */
export const rbdLocked = (message: string) => new StorvisorError('SV_ERR_RBD_LOCKED', 'EBUSY', message);

const RBD_ERRNO: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 5: 'EIO', 11: 'EAGAIN', 13: 'EACCES', 16: 'EBUSY', 17: 'EEXIST', 22: 'EINVAL', 28: 'ENOSPC',
  30: 'EROFS', 95: 'EOPNOTSUPP', 108: 'ESHUTDOWN (this client is blocklisted)', 110: 'ETIMEDOUT (the cluster did not answer in time)',
  111: 'ECONNREFUSED', 125: 'ECANCELED',
};
function rbdErrno(result: number): string {
  return `${RBD_ERRNO[-result] ?? 'error'} (${result})`;
}
/** A feature that needs the native addon (process guests: shared memory, eventfds, affinity), which is not built or not loadable. */
export const nativeUnavailable = (message: string) => new StorvisorError('SV_ERR_NATIVE_UNAVAILABLE', 'ENOTSUP', message);

/** A guest broke its side of the control protocol (an overlong or malformed message): it is killed. */
export const guestViolation = (message: string) => new StorvisorError('SV_ERR_GUEST_VIOLATION', 'EIO', message);

/**
 * Function front ends (src/functions/): database, fileserver, dedup.
 */
/** A bug: an invariant the code keeps was found broken. Protocols report it as a server fault (NFS SERVERFAULT, RESP "ERR internal error"). */
export const internalError = (message: string, cause?: unknown) =>
  new StorvisorError('SV_ERR_INTERNAL', 'EIO', message, { cause });
/** database: a logged mutation that does not fit the data (only possible for a corrupt log). */
export const badMutation = (message: string) => new StorvisorError('SV_ERR_DB_BAD_MUTATION', 'EIO', message);
/** fileserver: RPC/XDR arguments that cannot be decoded (the RPC layer answers GARBAGE_ARGS). */
export const garbageArgs = (reason: string) => new StorvisorError('SV_ERR_RPC_GARBAGE_ARGS', 'EINVAL', reason);

const FS_ERRNO: Record<string, Errno> = {
  PERM: 'EACCES', NOENT: 'ENOENT', IO: 'EIO', ACCES: 'EACCES', EXIST: 'EEXIST', INVAL: 'EINVAL', FBIG: 'ERANGE',
  NOSPC: 'ENOSPC', ROFS: 'EROFS', NOTSUPP: 'ENOTSUP', NAMETOOLONG: 'EINVAL', NOTEMPTY: 'EBUSY', MLINK: 'ENOSPC',
};
/**
 * fileserver: a filesystem call refused with an NFS-named status (NOENT, STALE, NOTDIR...):
 * SV_ERR_FS_<status>. The NFS mapper (nfs/errors.ts) turns the name back into the nfsstat3.
 */
export const fsError = (status: string, message: string) =>
  new StorvisorError(`SV_ERR_FS_${status}`, FS_ERRNO[status] ?? 'EINVAL', message);
/** fileserver: a refusal raised by the NFS layer itself (bad handle, bad cookie...): SV_ERR_NFS_<nfsstat3 name>. */
export const nfsRefused = (status: string, message: string) =>
  new StorvisorError(`SV_ERR_NFS_${status}`, FS_ERRNO[status] ?? 'EINVAL', message);
/** database: the append-only log could not be written (the cause is the device's error); RESP answers MISCONF until reopened. */
export const dbLogFailed = (cause: unknown) =>
  new StorvisorError('SV_ERR_DB_LOG_FAILED', errnoOf(cause), cause instanceof Error ? cause.message : String(cause), { cause });
