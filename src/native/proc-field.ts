import { closeSync, openSync, readSync } from 'node:fs';

/**
 * One decimal field of a /proc file kept open: read whole from offset 0 with
 * one pread per sample and parsed from the bytes, so a meter sampling it every
 * few ms makes no string. Where the file cannot be opened or read, `read()`
 * gives -1 and the file is closed (the meters then keep their last verdict).
 */
export class ProcField {
  private fd: number;
  private readonly buf: Buffer;

  /**
   * The field after the `spaces`-th space of `path`; with `terminator`, the
   * digits must be followed by that byte (e.g. the '/' of loadavg's "R/T").
   */
  constructor(
    path: string,
    private readonly spaces: number,
    private readonly terminator = -1,
    bytes = 128,
  ) {
    this.buf = Buffer.alloc(bytes);
    try {
      this.fd = openSync(path, 'r');
    } catch {
      this.fd = -1;
    }
  }

  get open(): boolean {
    return this.fd >= 0;
  }

  /** The field's value now, or -1. */
  read(): number {
    if (this.fd < 0) return -1;
    let n: number;
    try {
      n = readSync(this.fd, this.buf, 0, this.buf.length, 0);
    } catch {
      this.close();
      return -1;
    }
    const b = this.buf;
    let i = 0;
    for (let seen = 0; i < n && seen < this.spaces; i++) if (b[i] === 0x20) seen++;
    let v = 0;
    let digits = 0;
    for (; i < n; i++) {
      const c = b[i]!;
      if (c < 0x30 || c > 0x39) break;
      v = v * 10 + (c - 0x30);
      digits++;
    }
    if (digits === 0 || (this.terminator >= 0 && b[i] !== this.terminator)) return -1;
    return v;
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}
