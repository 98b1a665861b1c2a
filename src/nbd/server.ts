import { createServer, type Server, type Socket } from 'node:net';
import { ConnectionCatalog, ExportCatalog, type ExportSource } from './catalog.ts';
import { NbdConnection } from './connection.ts';
import { newStats, type NbdStats } from './stats.ts';

export type { NbdExport } from './catalog.ts';
export type { NbdStats } from './stats.ts';

export interface NbdServerOptions {
  exports: ExportSource;
  /** The export the empty name selects. */
  defaultExport?: string;
  log?: (msg: string) => void;
  /** Largest READ/WRITE payload accepted, advertised as the maximum block size (default 32 MiB). */
  maxRequestBytes?: number;
}

export const DEFAULT_MAX_REQUEST_BYTES = 32 << 20;

/** An NBD server (fixed newstyle) over any BlockDevice. */
export class NbdServer {
  private readonly catalog: ExportCatalog;
  private readonly maxRequestBytes: number;
  private readonly log: (msg: string) => void;
  private readonly counters: NbdStats = newStats();
  private readonly connections = new Set<NbdConnection>();
  /** The export names each connection has looked up (see closeExport). */
  private readonly exportsOf = new Map<NbdConnection, Set<string>>();
  private server: Server | null = null;

  constructor(opts: NbdServerOptions) {
    const max = opts.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
    if (!Number.isInteger(max) || max < 512 || max > 0xffffffff) {
      throw new RangeError(`maxRequestBytes must be an integer in [512, 2^32), got ${max}`);
    }
    this.maxRequestBytes = max;
    this.log = opts.log ?? (() => {});
    this.catalog = new ExportCatalog(opts.exports, opts.defaultExport, this.log);
  }

  listen(port: number, host = '127.0.0.1'): Promise<{ host: string; port: number }> {
    if (this.server) return Promise.reject(new Error('NbdServer is already listening'));
    const server = createServer((socket) => this.accept(socket));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        server.on('error', (err) => this.log(`server error: ${err.message}`));
        const addr = server.address();
        if (addr === null || typeof addr === 'string') return reject(new Error('unexpected listen address'));
        resolve({ host: addr.address, port: addr.port });
      });
    });
  }

  /** Stop accepting, let in-flight requests finish, close every connection. */
  async close(): Promise<void> {
    const server = this.server;
    if (server === null) return;
    this.server = null;
    const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
    await Promise.all([...this.connections].map((c) => c.shutdown()));
    await stopped;
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

  stats(): NbdStats {
    return { ...this.counters };
  }

  private accept(socket: Socket): void {
    this.counters.connections++;
    this.counters.activeConnections++;
    const names = new Set<string>();
    const conn = new NbdConnection(socket, {
      catalog: new ConnectionCatalog(this.catalog, (n) => names.add(n)),
      maxRequestBytes: this.maxRequestBytes,
      stats: this.counters,
      log: this.log,
    });
    this.connections.add(conn);
    this.exportsOf.set(conn, names);
    socket.once('close', () => {
      this.connections.delete(conn);
      this.exportsOf.delete(conn);
      this.counters.activeConnections--;
    });
  }
}
