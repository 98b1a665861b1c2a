import type { WriteFlags } from '../block/types.ts';
import { BlockDeviceBase, type BlockCapabilities } from '../block/device.ts';
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

export class VirtualVolume extends BlockDeviceBase {
  readonly blockSize: number;
  readonly readOnly: boolean;
  readonly writeThrough: boolean;
  /** The provider's, as its first connection offered them (a restarted provider is the same function). */
  readonly capabilities: BlockCapabilities;
  /** Failures while closing the connection (logged by the caller through the thrown error). */
  readonly counters = { reconnects: 0, closeErrors: 0 };
  private connecting: Promise<NbdClient> | undefined;

  private constructor(
    readonly name: string,
    private client: NbdClient,
    private readonly address: { host: string; port: number; exportName: string },
  ) {
    super();
    this.blockSize = client.blockSize;
    this.capabilities = client.capabilities;
    this.readOnly = client.readOnly;
    this.writeThrough = client.writeThrough;
  }

  static async connect(name: string, address: { host: string; port: number; exportName: string }): Promise<VirtualVolume> {
    return new VirtualVolume(name, await NbdClient.connect(address), address);
  }

  get size(): number {
    return this.client.size;
  }

  protected label(): string {
    return `virtual volume ${this.name}`;
  }

  // The client checks too; checking here first refuses a bad request without a round trip or a reconnect.
  async pread(buf: Uint8Array, offset: number): Promise<void> {
    this.checkRead(offset, buf.byteLength);
    return this.retry((c) => c.pread(buf, offset));
  }
  async pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags): Promise<void> {
    this.checkWrite(offset, buf.byteLength);
    return this.retry((c) => c.pwrite(buf, offset, flags));
  }
  async flush(): Promise<void> {
    this.checkOpen();
    return this.retry((c) => c.flush());
  }
  async trim(offset: number, length: number): Promise<void> {
    this.checkWrite(offset, length);
    return this.retry((c) => c.trim(offset, length));
  }
  async zero(offset: number, length: number): Promise<void> {
    this.checkWrite(offset, length);
    return this.retry((c) => c.zero(offset, length));
  }

  /**
   * Close the connection to the provider. A provider already gone is not an
   * error (its data is its own to keep durable); any other failure is counted
   * and thrown for the caller to log.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.client.close();
    } catch (err) {
      if (errnoOf(err) === 'ESHUTDOWN') return;
      this.counters.closeErrors++;
      throw err;
    }
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
            this.counters.reconnects++;
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
