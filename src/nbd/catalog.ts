import type { BlockDevice } from '../block/types.ts';
import { capabilitiesOf } from '../block/device.ts';
import {
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
} from './protocol.ts';

export interface NbdExport {
  name: string;
  description?: string;
  device: BlockDevice;
}

export type ExportSource = NbdExport[] | ((name: string) => NbdExport | undefined);

/** Resolves export names for the handshake; the empty name means the default export. */
export class ExportCatalog {
  constructor(
    private readonly source: ExportSource,
    private readonly defaultExport: string | undefined,
    private readonly log: (msg: string) => void,
  ) {}

  find(name: string): NbdExport | undefined {
    const wanted = name === '' ? this.defaultExport : name;
    if (wanted === undefined) return undefined;
    if (typeof this.source !== 'function') return this.source.find((e) => e.name === wanted);
    try {
      return this.source(wanted);
    } catch (err) {
      // A failing lookup must not escape into the socket's data handler: treat it as unknown.
      this.log(`export lookup for ${JSON.stringify(wanted)} failed: ${err instanceof Error ? err.message : String(err)}`);
      return undefined;
    }
  }

  /** What NBD_OPT_LIST shows: a lookup function can only vouch for the default export. */
  list(): NbdExport[] {
    if (typeof this.source !== 'function') return this.source;
    const fallback = this.defaultExport === undefined ? undefined : this.find(this.defaultExport);
    return fallback ? [fallback] : [];
  }
}

/**
 * The catalog as one connection sees it: every export it looks up is recorded,
 * so the server can tell which connections use an export and close them
 * (NbdServer.closeExport).
 */
export class ConnectionCatalog extends ExportCatalog {
  constructor(
    private readonly base: ExportCatalog,
    private readonly record: (name: string) => void,
  ) {
    super([], undefined, () => {});
  }

  override find(name: string): NbdExport | undefined {
    const found = this.base.find(name);
    if (found) this.record(found.name);
    return found;
  }

  override list(): NbdExport[] {
    return this.base.list();
  }
}

/**
 * Transmission flags, derived once per connection from what the device can do
 * (nbdkit asks its plugin's can_* callbacks the same way). DF is offered only
 * with structured replies: we never fragment a read, so honouring it is free.
 */
export function transmissionFlags(device: BlockDevice, structuredReplies: boolean): number {
  let flags = NBD_FLAG_HAS_FLAGS;
  if (device.readOnly) flags |= NBD_FLAG_READ_ONLY;
  else {
    // Only what the device really does: TRIM where it deallocates, WRITE_ZEROES
    // where it zeroes by itself (elsewhere the client writes zeroes, no worse).
    const can = capabilitiesOf(device);
    if (can.flush) flags |= NBD_FLAG_SEND_FLUSH;
    if (can.fua) flags |= NBD_FLAG_SEND_FUA;
    if (can.trim) flags |= NBD_FLAG_SEND_TRIM;
    if (can.zeroes) flags |= NBD_FLAG_SEND_WRITE_ZEROES;
  }
  // Every acknowledged write is visible to every connection, and durable or made
  // durable by any connection's FLUSH (a volume's plain WRITEs wait in the page
  // cache of its one image file, and FLUSH is that file's fdatasync): connections cannot disagree.
  if (device.writeThrough) flags |= NBD_FLAG_CAN_MULTI_CONN;
  if (structuredReplies) flags |= NBD_FLAG_SEND_DF;
  return flags;
}
