import { createRequire } from 'node:module';

/**
 * librados and librbd's C API through koffi (no build step; the libraries come
 * with Debian's librbd1/librados2, pulled in by ceph-common or librbd-dev).
 *
 * Two kinds of calls:
 * - the data path (aio submit, poll completions) is called synchronously: each
 *   call only queues work on librbd's threads and returns (about 0.3 µs each).
 *   Completion handles and buffer addresses travel as plain numbers (pointers
 *   fit in 2^53 on x86-64 and arm64 user space), so a request allocates no
 *   pointer object.
 * - management (connect, open, lock, create, resize, close) can wait on the
 *   network: those have an `.async` twin that runs on a worker thread, so the
 *   event loop never waits for the cluster.
 *
 * `rbdLib()` is null when the libraries cannot load, and `rbdUnavailable` says
 * why (an RBD volume then fails with that reason; file volumes are unaffected).
 */
export type Ptr = { readonly __ptr: unique symbol };

type AsyncFn<A extends unknown[], R> = ((...args: A) => R) & { async: (...args: [...A, (err: unknown, res: R) => void]) => void };

export interface RbdLib {
  // librados
  rados_create2: AsyncFn<[Ptr[], string, string, number], number>;
  rados_conf_read_file: AsyncFn<[Ptr, string], number>;
  rados_conf_set: AsyncFn<[Ptr, string, string], number>;
  rados_connect: AsyncFn<[Ptr], number>;
  rados_shutdown: AsyncFn<[Ptr], void>;
  rados_ioctx_create: AsyncFn<[Ptr, string, Ptr[]], number>;
  rados_ioctx_destroy: AsyncFn<[Ptr], void>;
  rados_getaddrs: AsyncFn<[Ptr, BigUint64Array], number>;
  rados_buffer_free: (addr: number) => void;
  rados_blocklist_add: AsyncFn<[Ptr, string, number], number>;
  // librbd: management
  rbd_create2: AsyncFn<[Ptr, string, number, number, number[]], number>;
  rbd_remove: AsyncFn<[Ptr, string], number>;
  rbd_open: AsyncFn<[Ptr, string, Ptr[], null], number>;
  rbd_close: AsyncFn<[Ptr], number>;
  rbd_get_size: AsyncFn<[Ptr, number[]], number>;
  rbd_stat: AsyncFn<[Ptr, Buffer, number], number>;
  rbd_get_features: AsyncFn<[Ptr, number[]], number>;
  rbd_update_features: AsyncFn<[Ptr, number, number], number>;
  rbd_resize: AsyncFn<[Ptr, number], number>;
  rbd_lock_acquire: AsyncFn<[Ptr, number], number>;
  rbd_lock_release: AsyncFn<[Ptr], number>;
  rbd_is_exclusive_lock_owner: AsyncFn<[Ptr, number[]], number>;
  rbd_lock_get_owners: AsyncFn<[Ptr, number[], BigUint64Array, number[]], number>;
  rbd_lock_get_owners_cleanup: (owners: BigUint64Array, count: number) => void;
  rbd_lock_break: AsyncFn<[Ptr, number, string], number>;
  rbd_metadata_get: AsyncFn<[Ptr, string, Buffer, number[]], number>;
  rbd_metadata_set: AsyncFn<[Ptr, string, string], number>;
  rbd_set_image_notification: (image: Ptr, fd: number, type: number) => number;
  // librbd: data path (numbers for completions and addresses)
  rbd_aio_create_completion: (arg: number, cb: null, out: BigUint64Array) => number;
  rbd_aio_read: (image: Ptr, off: number, len: number, addr: number, comp: number) => number;
  rbd_aio_write: (image: Ptr, off: number, len: number, addr: number, comp: number) => number;
  rbd_aio_flush: (image: Ptr, comp: number) => number;
  rbd_aio_discard: (image: Ptr, off: number, len: number, comp: number) => number;
  rbd_aio_write_zeroes: (image: Ptr, off: number, len: number, comp: number, zeroFlags: number, opFlags: number) => number;
  rbd_poll_io_events: (image: Ptr, comps: BigUint64Array, n: number) => number;
  rbd_aio_get_arg: (comp: number) => number;
  rbd_aio_get_return_value: (comp: number) => number;
  rbd_aio_release: (comp: number) => void;
  // libc
  eventfd: (initval: number, flags: number) => number;
  strlen: (addr: number) => number;
  memcpyFrom: (dst: Buffer, src: number, n: number) => unknown;
  /** The address of a buffer's first byte. */
  address: (buf: Uint8Array) => number;
}

export const RBD_LOCK_MODE_EXCLUSIVE = 0;
export const RBD_FEATURE_LAYERING = 1;
export const RBD_FEATURE_EXCLUSIVE_LOCK = 4;
export const EVENT_TYPE_EVENTFD = 2;
export const EFD_CLOEXEC = 0o2000000;

let lib: RbdLib | null | undefined;
let why = '';

function load(): RbdLib | null {
  if (lib !== undefined) return lib;
  if (process.env.STORVISOR_RBD === '0') {
    why = 'RBD is disabled by STORVISOR_RBD=0';
    return (lib = null);
  }
  let koffi: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  try {
    koffi = createRequire(import.meta.url)('koffi');
  } catch (err) {
    why = `RBD needs koffi, which failed to load: ${(err as Error).message}`;
    return (lib = null);
  }
  let rados: any, rbd: any, libc: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  try {
    rados = koffi.load('librados.so.2');
    rbd = koffi.load('librbd.so.1');
    libc = koffi.load('libc.so.6');
  } catch (err) {
    why = `librbd is not installed (${(err as Error).message}); install librbd1 (Debian: apt-get install librbd1, or ceph-common)`;
    return (lib = null);
  }
  const r = (sig: string) => rados.func(sig);
  const b = (sig: string) => rbd.func(sig);
  const c = (sig: string) => libc.func(sig);
  lib = {
    rados_create2: r('int rados_create2(_Out_ void **cluster, const char *cluster_name, const char *user_name, uint64_t flags)'),
    rados_conf_read_file: r('int rados_conf_read_file(void *cluster, const char *path)'),
    rados_conf_set: r('int rados_conf_set(void *cluster, const char *option, const char *value)'),
    rados_connect: r('int rados_connect(void *cluster)'),
    rados_shutdown: r('void rados_shutdown(void *cluster)'),
    rados_ioctx_create: r('int rados_ioctx_create(void *cluster, const char *pool, _Out_ void **ioctx)'),
    rados_ioctx_destroy: r('void rados_ioctx_destroy(void *ioctx)'),
    rados_getaddrs: r('int rados_getaddrs(void *cluster, uint64_t *addrs)'),
    rados_buffer_free: r('void rados_buffer_free(uint64_t buf)'),
    rados_blocklist_add: r('int rados_blocklist_add(void *cluster, const char *client_address, uint32_t expire_seconds)'),
    rbd_create2: b('int rbd_create2(void *io, const char *name, uint64_t size, uint64_t features, _Inout_ int *order)'),
    rbd_remove: b('int rbd_remove(void *io, const char *name)'),
    rbd_open: b('int rbd_open(void *io, const char *name, _Out_ void **image, const char *snap_name)'),
    rbd_close: b('int rbd_close(void *image)'),
    rbd_get_size: b('int rbd_get_size(void *image, _Out_ uint64_t *size)'),
    rbd_stat: b('int rbd_stat(void *image, uint8_t *info, size_t infosize)'),
    rbd_get_features: b('int rbd_get_features(void *image, _Out_ uint64_t *features)'),
    rbd_update_features: b('int rbd_update_features(void *image, uint64_t features, uint8_t enabled)'),
    rbd_resize: b('int rbd_resize(void *image, uint64_t size)'),
    rbd_lock_acquire: b('int rbd_lock_acquire(void *image, int lock_mode)'),
    rbd_lock_release: b('int rbd_lock_release(void *image)'),
    rbd_is_exclusive_lock_owner: b('int rbd_is_exclusive_lock_owner(void *image, _Out_ int *is_owner)'),
    rbd_lock_get_owners: b('int rbd_lock_get_owners(void *image, _Out_ int *lock_mode, uint64_t *lock_owners, _Inout_ size_t *max_lock_owners)'),
    rbd_lock_get_owners_cleanup: b('void rbd_lock_get_owners_cleanup(uint64_t *lock_owners, size_t lock_owner_count)'),
    rbd_lock_break: b('int rbd_lock_break(void *image, int lock_mode, const char *lock_owner)'),
    rbd_metadata_get: b('int rbd_metadata_get(void *image, const char *key, uint8_t *value, _Inout_ size_t *val_len)'),
    rbd_metadata_set: b('int rbd_metadata_set(void *image, const char *key, const char *value)'),
    rbd_set_image_notification: b('int rbd_set_image_notification(void *image, int fd, int type)'),
    rbd_aio_create_completion: b('int rbd_aio_create_completion(intptr_t cb_arg, void *complete_cb, uint64_t *c)'),
    rbd_aio_read: b('int rbd_aio_read(void *image, uint64_t off, size_t len, uint64_t buf, uint64_t c)'),
    rbd_aio_write: b('int rbd_aio_write(void *image, uint64_t off, size_t len, uint64_t buf, uint64_t c)'),
    rbd_aio_flush: b('int rbd_aio_flush(void *image, uint64_t c)'),
    rbd_aio_discard: b('int rbd_aio_discard(void *image, uint64_t off, uint64_t len, uint64_t c)'),
    rbd_aio_write_zeroes: b('int rbd_aio_write_zeroes(void *image, uint64_t off, size_t len, uint64_t c, int zero_flags, int op_flags)'),
    rbd_poll_io_events: b('int rbd_poll_io_events(void *image, uint64_t *comps, int numcomp)'),
    rbd_aio_get_arg: b('intptr_t rbd_aio_get_arg(uint64_t c)'),
    rbd_aio_get_return_value: b('int64_t rbd_aio_get_return_value(uint64_t c)'),
    rbd_aio_release: b('void rbd_aio_release(uint64_t c)'),
    eventfd: c('int eventfd(unsigned int initval, int flags)'),
    strlen: c('size_t strlen(uint64_t s)'),
    memcpyFrom: c('void *memcpy(uint8_t *dst, uint64_t src, size_t n)'),
    address: (buf: Uint8Array) => Number(koffi.address(buf)),
  } as RbdLib;
  return lib;
}

/** librbd through koffi, or null (see rbdUnavailable). */
export function rbdLib(): RbdLib | null {
  return load();
}

/** Why RBD is unavailable ('' when it is available). */
export function rbdUnavailable(): string {
  load();
  return why;
}

/** A C string at `addr` (owned by the library) as a JS string. */
export function cString(l: RbdLib, addr: number): string {
  const n = l.strlen(addr);
  const out = Buffer.allocUnsafe(n);
  if (n > 0) l.memcpyFrom(out, addr, n);
  return out.toString('utf8');
}

/** Run a management call on a worker thread: resolves with its result. */
export function offThread<A extends unknown[], R>(fn: AsyncFn<A, R>, ...args: A): Promise<R> {
  return new Promise((resolve, reject) => fn.async(...args, (err: unknown, res: R) => (err ? reject(err) : resolve(res))));
}
