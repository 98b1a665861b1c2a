import { TcpService, type TcpConnection, type TcpServiceLimits, type TcpServiceStats } from '../net/tcp-service.ts';
import { ConnectionCatalog, ExportCatalog, type ExportSource } from './catalog.ts';
import { MAX_INFLIGHT_REQUESTS, MAX_UNSENT_REPLY_BYTES, NbdConnection } from './connection.ts';
import { REQUEST_HEADER_BYTES } from './protocol.ts';
import { newStats, type NbdStats } from './stats.ts';
import { ReplyPool } from './reply-pool.ts';

export type { NbdExport } from './catalog.ts';
export type { NbdStats } from './stats.ts';

export interface NbdServerOptions {
  exports: ExportSource;
  /** The export the empty name selects. */
  defaultExport?: string;
  log?: (msg: string) => void;
  /** Largest READ/WRITE payload accepted, advertised as the maximum block size (default 32 MiB). */
  maxRequestBytes?: number;
  /** Connection limits and timeouts (see TcpServiceLimits); the rest follow from maxRequestBytes. */
  limits?: Partial<TcpServiceLimits>;
}

export const DEFAULT_MAX_REQUEST_BYTES = 32 << 20;
/** Room for what arrives while reading pauses (a socket chunk plus the stream's buffer). */
const READ_SLACK_BYTES = 256 << 10;

/**
 * NBD defaults. No idle timeout: block clients (qemu, nbd-client) keep an idle
 * connection for as long as the disk is attached, and many cannot reconnect.
 * Negotiation and half-sent requests are bounded by the request timeout.
 */
export function nbdLimits(maxRequestBytes: number, given: Partial<TcpServiceLimits> = {}): Partial<TcpServiceLimits> {
  const maxInflightBytes = Math.max(64 << 20, 2 * maxRequestBytes);
  return {
    idleTimeoutMs: 0,
    maxInflight: MAX_INFLIGHT_REQUESTS,
    maxInflightBytes,
    maxInflightBytesTotal: Math.max(128 << 20, 2 * maxRequestBytes),
    maxQueuedBytes: MAX_UNSENT_REPLY_BYTES,
    // One request's payload (or its option) plus what arrives before reading pauses.
    maxBufferedBytes: maxRequestBytes + REQUEST_HEADER_BYTES + READ_SLACK_BYTES,
    // Replies exist only for requests taken, so this is never reached by a client that reads.
    maxOutputBytes: MAX_UNSENT_REPLY_BYTES + maxInflightBytes + maxRequestBytes,
    ...given,
  };
}

/** An NBD server (fixed newstyle) over any BlockDevice. */
export class NbdServer {
  private readonly service: TcpService;
  private readonly counters: NbdStats = newStats();
  /** READ reply buffers, reused across this server's connections once written. */
  private readonly replyPool = new ReplyPool();
  /** The export names each open connection has looked up (see closeExport). */
  private readonly exportsOf = new Map<TcpConnection, Set<string>>();

  constructor(opts: NbdServerOptions) {
    const max = opts.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
    if (!Number.isInteger(max) || max < 512 || max > 0xffffffff) {
      throw new RangeError(`maxRequestBytes must be an integer in [512, 2^32), got ${max}`);
    }
    const log = opts.log ?? (() => {});
    const catalog = new ExportCatalog(opts.exports, opts.defaultExport, log);
    this.service = new TcpService({
      name: 'nbd',
      log,
      uncork: 'tick',
      limits: nbdLimits(max, opts.limits),
      handler: (conn) => {
        const names = new Set<string>();
        this.exportsOf.set(conn, names);
        return new NbdConnection(conn, {
          catalog: new ConnectionCatalog(catalog, (n) => names.add(n)),
          maxRequestBytes: max,
          stats: this.counters,
          replyPool: this.replyPool,
          log,
          onClosed: () => this.exportsOf.delete(conn),
        });
      },
    });
  }

  listen(host: string, port: number): Promise<{ host: string; port: number }> {
    return this.service.listen(host, port);
  }

  /** Stop accepting, let in-flight requests finish, close every connection. */
  close(): Promise<void> {
    return this.service.stop();
  }

  /** Open connections that have looked up export `name`. */
  connectionsTo(name: string): number {
    let n = 0;
    for (const names of this.exportsOf.values()) if (names.has(name)) n++;
    return n;
  }

  /**
   * Close every connection that has looked up export `name` (in-flight requests
   * answer first); resolves once they are closed, with how many there were. The
   * caller makes sure the name resolves to nothing any more, or clients reconnect.
   */
  async closeExport(name: string): Promise<number> {
    const doomed = [...this.exportsOf].filter(([, names]) => names.has(name)).map(([conn]) => conn);
    await Promise.all(doomed.map((c) => c.shutdown()));
    return doomed.length;
  }

  stats(): NbdStats & TcpServiceStats {
    return { ...this.counters, ...this.service.stats() };
  }
}
