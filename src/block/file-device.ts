import { open, type FileHandle } from 'node:fs/promises';
import type { WriteFlags } from './types.ts';
import { BlockDeviceBase, PLAIN_CAPABILITIES } from './device.ts';
import { ioError } from '../util/errors.ts';

/**
 * A BlockDevice on a plain file, through the page cache: writes are durable
 * after `flush` (fdatasync) or when written with `fua`. The simplest durable
 * device, for function tests (crash tests included) and tools; controller
 * volumes use the O_DIRECT engine and block cache instead.
 */
export class FileBlockDevice extends BlockDeviceBase {
  readonly blockSize = 4096;
  readonly writeThrough = false;
  /** Trim and zero write zero buffers here (no hole punching), so neither is offered as the device's own. */
  readonly capabilities = PLAIN_CAPABILITIES;
  private constructor(
    private readonly fh: FileHandle,
    readonly size: number,
    readonly readOnly: boolean,
  ) {
    super();
  }

  protected label(): string {
    return 'file device';
  }

  /** Open (creating a sparse file of `size` bytes if it does not exist). */
  static async open(path: string, size: number, options: { readOnly?: boolean } = {}): Promise<FileBlockDevice> {
    const ro = options.readOnly ?? false;
    const fh = await open(path, ro ? 'r' : 'a+').then(async (h) => {
      await h.close();
      return open(path, ro ? 'r' : 'r+');
    });
    const st = await fh.stat();
    if (!ro && st.size < size) await fh.truncate(size);
    return new FileBlockDevice(fh, size, ro);
  }

  async pread(buf: Uint8Array, offset: number): Promise<void> {
    this.checkRead(offset, buf.byteLength);
    let done = 0;
    while (done < buf.byteLength) {
      const { bytesRead } = await this.fh.read(buf, done, buf.byteLength - done, offset + done);
      if (bytesRead === 0) {
        buf.fill(0, done); // past EOF of a sparse file reads as zeroes
        return;
      }
      done += bytesRead;
    }
  }

  async pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags): Promise<void> {
    this.checkWrite(offset, buf.byteLength);
    let done = 0;
    while (done < buf.byteLength) {
      const { bytesWritten } = await this.fh.write(buf, done, buf.byteLength - done, offset + done);
      if (bytesWritten === 0) throw ioError('short write');
      done += bytesWritten;
    }
    if (flags?.fua) await this.fh.datasync();
  }

  async flush(): Promise<void> {
    this.checkOpen();
    await this.fh.datasync();
  }

  async trim(offset: number, length: number): Promise<void> {
    await this.zero(offset, length);
  }

  async zero(offset: number, length: number): Promise<void> {
    this.checkWrite(offset, length);
    const chunk = new Uint8Array(Math.min(length, 1 << 20));
    for (let done = 0; done < length; done += chunk.byteLength) {
      const n = Math.min(chunk.byteLength, length - done);
      await this.pwrite(n === chunk.byteLength ? chunk : chunk.subarray(0, n), offset + done);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }
}
