import type { BlockDevice, WriteFlags } from '../block/types.ts';
import { NbdClient } from '../nbd/client.ts';
import { errnoOf, shutDown } from '../util/errors.ts';

/**
 * A virtual volume: the block device a data-path function (a dedup/compress
 * volume, an NBD re-export) exports over NBD from its guest, consumed by the
 * controller and handed to other functions and NBD clients like any volume.
 *
 * The provider may crash and be restarted on the same port; a request that finds
 * the connection gone reconnects and is sent once more. That is safe because
 * every block request is idempotent (the same bytes to the same place), and a
 * write is acknowledged to the consumer only after the provider acknowledged it.
 */
const RECONNECT_ATTEMPTS = 50;
const RECONNECT_DELAY_MS = 100;

export class VirtualVolume implements BlockDevice {
  readonly blockSize: number;
  readonly readOnly: boolean;
  readonly writeThrough: boolean;
  private connecting: Promise<NbdClient> | undefined;
  private closed = false;

  private constructor(
    readonly name: string,
    private client: NbdClient,
    private readonly address: { host: string; port: number; exportName: string },
  ) {
    this.blockSize = client.blockSize;
    this.readOnly = client.readOnly;
    this.writeThrough = client.writeThrough;
  }

  static async connect(name: string, address: { host: string; port: number; exportName: string }): Promise<VirtualVolume> {
    return new VirtualVolume(name, await NbdClient.connect(address), address);
  }

  get size(): number {
    return this.client.size;
  }

  pread(buf: Uint8Array, offset: number): Promise<void> {
    return this.retry((c) => c.pread(buf, offset));
  }
  pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags): Promise<void> {
    return this.retry((c) => c.pwrite(buf, offset, flags));
  }
  flush(): Promise<void> {
    return this.retry((c) => c.flush());
  }
  trim(offset: number, length: number): Promise<void> {
    return this.retry((c) => c.trim(offset, length));
  }
  zero(offset: number, length: number): Promise<void> {
    return this.retry((c) => c.zero(offset, length));
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.client.close().catch(() => {});
  }

  private async retry(op: (c: NbdClient) => Promise<void>): Promise<void> {
    const client = this.client;
    try {
      return await op(client);
    } catch (err) {
      if (this.closed || errnoOf(err) !== 'ESHUTDOWN') throw err;
      return op(await this.reconnect(client));
    }
  }

  /** One reconnection shared by every request that saw `dead` fail. */
  private reconnect(dead: NbdClient): Promise<NbdClient> {
    if (this.client !== dead) return Promise.resolve(this.client);
    this.connecting ??= (async () => {
      try {
        for (let i = 0; i < RECONNECT_ATTEMPTS && !this.closed; i++) {
          try {
            this.client = await NbdClient.connect(this.address);
            return this.client;
          } catch {
            // The provider is restarting: its guest needs a moment to listen again.
            await new Promise((r) => setTimeout(r, RECONNECT_DELAY_MS));
          }
        }
        throw shutDown(`virtual volume ${this.name} (provider at ${this.address.host}:${this.address.port} is gone)`);
      } finally {
        this.connecting = undefined;
      }
    })();
    return this.connecting;
  }
}
