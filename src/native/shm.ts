import { native, nativeUnavailable, type FdWatch } from './addon.ts';
import { nativeUnavailable as unavailableError } from '../util/errors.ts';

/**
 * Memory and doorbells shared with another process (a process guest).
 *
 * A region is a memfd sealed against shrinking and growing (a guest that could
 * truncate it would turn the controller's next access into a SIGBUS), mapped
 * MAP_SHARED and populated up front, and seen from JavaScript as a plain
 * ArrayBuffer over the mapping: Atomics.load/store/add/compareExchange work on
 * it across processes, Atomics.wait/notify do not (it is not a
 * SharedArrayBuffer). Doorbells are eventfds instead.
 */
export interface SharedRegion {
  fd: number;
  buffer: ArrayBuffer;
  /** Huge pages back the region. */
  huge: boolean;
  /** Why not, when they were asked for and are not ('' otherwise). */
  hugeWhy: string;
  /** mlock succeeded: the region cannot be swapped out. */
  locked: boolean;
}

const unavailable = () => unavailableError(`process guests need the native addon: ${nativeUnavailable}`);

export const sharedMemoryAvailable = (): boolean => native !== null;

/**
 * Create and map a region of `bytes` (controller side). With `hugepages`, a
 * hugetlb memfd is tried first; its pages are reserved at mmap, so a machine
 * without free huge pages fails there and the region falls back to normal
 * pages, with the reason in `hugeWhy`.
 */
export function createSharedRegion(name: string, bytes: number, options: { hugepages: boolean; lock: boolean }): SharedRegion {
  if (!native) throw unavailable();
  let hugeWhy = '';
  if (options.hugepages) {
    const f = native.memfdCreate(name, bytes, true);
    if (f.huge) {
      try {
        const m = native.mapShared(f.fd, bytes, options.lock);
        return { fd: f.fd, buffer: m.buffer, huge: true, hugeWhy: '', locked: m.locked };
      } catch (err) {
        native.closeFd(f.fd);
        hugeWhy = `no free huge pages for ${f.bytes} bytes (${(err as Error).message}; see /proc/sys/vm/nr_hugepages)`;
      }
    } else {
      native.closeFd(f.fd);
      hugeWhy = f.why;
    }
  }
  const f = native.memfdCreate(name, bytes, false);
  try {
    const m = native.mapShared(f.fd, bytes, options.lock);
    return { fd: f.fd, buffer: m.buffer, huge: false, hugeWhy, locked: m.locked };
  } catch (err) {
    native.closeFd(f.fd);
    throw err;
  }
}

/** Map a region handed over as `fd` (guest side); `bytes` is the region size the controller announced. */
export function mapSharedRegion(fd: number, bytes: number): ArrayBuffer {
  if (!native) throw unavailable();
  return native.mapShared(fd, bytes, false).buffer;
}

export function closeFd(fd: number): void {
  native?.closeFd(fd);
}

export function createEventfd(): number {
  if (!native) throw unavailable();
  return native.eventfdCreate();
}

/**
 * One side's view of an eventfd doorbell pair, keyed by the control-block
 * index of the doorbell's counter: `ring` writes the eventfd the other side
 * watches; `wait` sleeps on this side's eventfd through a libuv watch (the
 * thread's event loop keeps running; nothing blocks).
 */
export class EventfdDoorbells {
  private readonly watches = new Map<number, { watch: FdWatch; waiters: Array<(woken: boolean) => void> }>();

  /** ringFds: index → fd to write; waitFds: index → fd to watch. */
  constructor(
    private readonly ringFds: ReadonlyMap<number, number>,
    waitFds: ReadonlyMap<number, number>,
  ) {
    if (!native) throw unavailable();
    for (const [index, fd] of waitFds) {
      const entry = { watch: undefined as unknown as FdWatch, waiters: [] as Array<(woken: boolean) => void> };
      entry.watch = native.fdWatch(fd, () => this.release(entry.waiters, true));
      this.watches.set(index, entry);
    }
  }

  private release(waiters: Array<(woken: boolean) => void>, woken: boolean): void {
    if (waiters.length === 0) return;
    const all = waiters.splice(0);
    for (const w of all) w(woken);
  }

  ring(index: number): void {
    const fd = this.ringFds.get(index);
    if (fd !== undefined) native!.eventfdWrite(fd);
  }

  /** Resolves true when rung (or woken locally), false after timeoutMs. The counter check is the caller's. */
  wait(index: number, timeoutMs: number): Promise<boolean> {
    const entry = this.watches.get(index);
    if (!entry) return new Promise((r) => setTimeout(r, timeoutMs, false));
    return new Promise((resolve) => {
      // The watch is unref'd: this timer keeps the loop alive while we wait.
      const timer = setTimeout(() => {
        const at = entry.waiters.indexOf(done);
        if (at >= 0) entry.waiters.splice(at, 1);
        resolve(false);
      }, timeoutMs);
      const done = (woken: boolean) => {
        clearTimeout(timer);
        resolve(woken);
      };
      entry.waiters.push(done);
    });
  }

  /** Wake this side's own waiter (shutdown), without a system call. */
  wakeLocal(index: number): void {
    const entry = this.watches.get(index);
    if (entry) this.release(entry.waiters, true);
  }

  /** Stop watching; the fds stay the caller's. Pending waits end as woken. */
  close(): void {
    for (const entry of this.watches.values()) {
      native!.watchClose(entry.watch);
      this.release(entry.waiters, true);
    }
    this.watches.clear();
  }
}
