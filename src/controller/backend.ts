import { openSync, closeSync, read, write, fdatasync, fstatSync, ftruncate, constants } from 'node:fs';
import { dirname } from 'node:path';
import { allocAligned, directProbeFd, PROBE_BYTES, type AlignedSlab } from './aligned.ts';
import { ioError } from '../util/errors.ts';
import { punchHole } from '../native/libc.ts';

/**
 * The backend I/O engine: one volume's file, opened O_DIRECT (no double caching:
 * the block cache above is the only cache) and O_DSYNC (a completed write is
 * durable, so the sync write path needs no separate flush). Requests run on the
 * libuv thread pool, which the launcher sizes (UV_THREADPOOL_SIZE) so that
 * queue-depth-32 workloads really have 32 requests at the disk.
 *
 * On filesystems without O_DIRECT (tmpfs) it falls back to buffered I/O with
 * O_DSYNC, says so once, and keeps the same durability.
 */
export interface BackendStats {
  reads: number;
  writes: number;
  bytesRead: number;
  bytesWritten: number;
  syncs: number;
  inFlight: number;
  maxInFlight: number;
  errors: number;
}

export class FileBackend {
  readonly stats: BackendStats = {
    reads: 0,
    writes: 0,
    bytesRead: 0,
    bytesWritten: 0,
    syncs: 0,
    inFlight: 0,
    maxInFlight: 0,
    errors: 0,
  };
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly fd: number,
    /** An O_DIRECT descriptor of a probe file when I/O bypasses the page cache (buffers must come from `alloc`). */
    private readonly probeFd: number | undefined,
    readonly readOnly: boolean,
  ) {}

  /** Open an existing file. `direct` false forces buffered I/O. */
  static open(path: string, opts: { direct?: boolean; readOnly?: boolean; log?: (m: string) => void } = {}): FileBackend {
    const base = (opts.readOnly ? constants.O_RDONLY : constants.O_RDWR | constants.O_DSYNC);
    if (opts.direct !== false && constants.O_DIRECT) {
      let fd: number | undefined;
      try {
        fd = openSync(path, base | constants.O_DIRECT);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
      }
      if (fd !== undefined) {
        const probeFd = directProbeFd(dirname(path));
        if (probeFd !== undefined && allocAligned(PROBE_BYTES, probeFd).aligned) {
          return new FileBackend(path, fd, probeFd, opts.readOnly ?? false);
        }
        closeSync(fd);
      }
      opts.log?.(`${path}: O_DIRECT is not available here; using buffered I/O with O_DSYNC`);
    }
    return new FileBackend(path, openSync(path, base), undefined, opts.readOnly ?? false);
  }

  /** Memory usable for I/O on this backend (aligned when direct). */
  alloc(size: number): AlignedSlab {
    return allocAligned(size, this.probeFd);
  }

  get direct(): boolean {
    return this.probeFd !== undefined;
  }

  private begin(): void {
    const s = this.stats;
    if (++s.inFlight > s.maxInFlight) s.maxInFlight = s.inFlight;
  }

  /** Read exactly `length` bytes at `position` into buf[offset..]; bytes past end of file read as zeroes. */
  read(buf: Buffer, offset: number, length: number, position: number): Promise<void> {
    this.begin();
    return new Promise((resolve, reject) => {
      const step = (done: number): void => {
        read(this.fd, buf, offset + done, length - done, position + done, (err, n) => {
          if (err) return this.fail(reject, err, 'read', position, length);
          if (n === 0) buf.fill(0, offset + done, offset + length);
          else if (done + n < length) return step(done + n);
          this.stats.inFlight--;
          this.stats.reads++;
          this.stats.bytesRead += length;
          resolve();
        });
      };
      step(0);
    });
  }

  /** Write exactly `length` bytes; durable when the promise resolves (O_DSYNC). */
  write(buf: Buffer, offset: number, length: number, position: number): Promise<void> {
    this.begin();
    return new Promise((resolve, reject) => {
      const step = (done: number): void => {
        write(this.fd, buf, offset + done, length - done, position + done, (err, n) => {
          if (err) return this.fail(reject, err, 'write', position, length);
          if (n === 0) return this.fail(reject, ioError('short write'), 'write', position, length);
          if (done + n < length) return step(done + n);
          this.stats.inFlight--;
          this.stats.writes++;
          this.stats.bytesWritten += length;
          resolve();
        });
      };
      step(0);
    });
  }

  private fail(reject: (e: unknown) => void, err: unknown, op: string, position: number, length: number): void {
    this.stats.inFlight--;
    this.stats.errors++;
    const code = (err as NodeJS.ErrnoException).code;
    // Keep the errno (ENOSPC must reach the client as ENOSPC) but say where.
    const wrapped = Object.assign(new Error(`${op} ${this.path} [${position}, +${length}): ${(err as Error).message}`), {
      code,
      cause: err,
    });
    reject(wrapped);
  }

  datasync(): Promise<void> {
    this.stats.syncs++;
    return new Promise((resolve, reject) => fdatasync(this.fd, (err) => (err ? reject(err) : resolve())));
  }

  /** Deallocate a range (reads back as zeroes). False when the filesystem cannot punch holes. */
  punchHole(position: number, length: number): boolean {
    return punchHole(this.fd, position, length);
  }

  size(): number {
    return fstatSync(this.fd).size;
  }

  truncate(size: number): Promise<void> {
    return new Promise((resolve, reject) => ftruncate(this.fd, size, (err) => (err ? reject(err) : resolve())));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}
