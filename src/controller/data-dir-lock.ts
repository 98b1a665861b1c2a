import { openSync, closeSync, readFileSync, writeSync, ftruncateSync, mkdirSync, constants } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { dataDirBusy, dataDirLock } from '../util/errors.ts';

/**
 * One controller per data directory: two would each cache and write the same
 * volumes. The lock is flock(2) on `<data>/controller.lock`, held on an open
 * descriptor for as long as the controller runs. The kernel drops it when that
 * descriptor closes, and so when the process dies in any way (kill -9
 * included): no stale lock, and no pid that a zombie or a reused pid could make
 * look alive. The pid inside the file is for the error message only; the lock
 * is the flock, never the file's content or existence. The file is never
 * unlinked (unlinking a lock file lets a third process lock a fresh inode while
 * a second still holds the old one).
 *
 * Node opens files close-on-exec, so child processes (gateways) never inherit
 * the descriptor and cannot keep the lock alive after the controller dies.
 */
const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;
const EWOULDBLOCK = 11;
const EINTR = 4;

type Flock = (fd: number, op: number) => number;
let flockFn: { flock: Flock; errno: () => number } | undefined;

function libc(): { flock: Flock; errno: () => number } {
  if (flockFn) return flockFn;
  try {
    const koffi = createRequire(import.meta.url)('koffi');
    const lib = koffi.load('libc.so.6');
    flockFn = { flock: lib.func('int flock(int, int)') as Flock, errno: () => koffi.errno() as number };
    return flockFn;
  } catch (err) {
    throw dataDirLock(`cannot lock the data directory: flock(2) is unavailable (koffi could not load libc): ${(err as Error).message}`, err);
  }
}

export const LOCK_FILE = 'controller.lock';

/**
 * Take the data directory's lock, or throw SV_ERR_DATA_DIR_BUSY at once (never
 * waits). Returns the release function (idempotent).
 */
export function lockDataDir(dataDir: string): () => void {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, LOCK_FILE);
  const { flock, errno } = libc();
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o644);
  let rc: number;
  do rc = flock(fd, LOCK_EX | LOCK_NB);
  while (rc !== 0 && errno() === EINTR);
  if (rc !== 0) {
    const e = errno();
    closeSync(fd);
    if (e !== EWOULDBLOCK) throw dataDirLock(`cannot lock data directory ${dataDir}: flock failed (errno ${e})`);
    let holder = '';
    try {
      const pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
      if (Number.isInteger(pid) && pid > 0) holder = ` (controller pid ${pid})`;
    } catch {
      /* the message is still clear without the pid */
    }
    throw dataDirBusy(`data directory ${dataDir} is in use by another storvisor process${holder}; stop it first, or use another dataDir`);
  }
  // Ours now: record who holds it, for the next one's error message.
  ftruncateSync(fd, 0);
  writeSync(fd, `${process.pid}\n`, 0);
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    flock(fd, LOCK_UN);
    closeSync(fd);
  };
}
