import { openSync, writeSync, closeSync, readFileSync, unlinkSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { StorvisorError } from '../util/errors.ts';

/**
 * One controller per data directory: two would each cache and write the same
 * volumes. The lock is a pid file created exclusively; a lock left by a process
 * that no longer exists (kill -9) is taken over.
 */
export function lockDataDir(dataDir: string): () => void {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, 'controller.pid');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => {
        try {
          if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
        } catch {
          /* already gone */
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
      if (Number.isInteger(pid) && pid !== process.pid && alive(pid)) {
        throw new StorvisorError('SV_ERR_DATA_DIR_BUSY', 'EEXIST', `data directory ${dataDir} is in use by controller pid ${pid}`);
      }
      unlinkSync(path); // stale: its owner is gone
    }
  }
  throw new StorvisorError('SV_ERR_DATA_DIR_BUSY', 'EEXIST', `cannot lock data directory ${dataDir}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
