/**
 * The NFS server: NFSv3 and MOUNT v3 on one TCP port (libnfs takes
 * nfsport=N&mountport=N, so no portmapper is needed), plus portmapper v2 on a
 * second port when asked for.
 */
import { randomBytes } from 'node:crypto';
import type { FileSystem } from '../fs/types.ts';
import type { TcpServiceLimits } from '../../../net/tcp-service.ts';
import { RpcServer } from '../rpc/server.ts';
import { nfsProgram, type NfsServerState } from './nfs3.ts';
import { mountProgram } from './mount.ts';
import { portmapProgram } from './portmap.ts';
import { rootAttr } from './root.ts';
import { HandleCodec, handleKeyFor } from './handle.ts';
import { DEFAULT_EXPORT, ExportPolicy, type ExportOptions } from './export.ts';
import type { StayAwakeOptions, StayAwakeStats } from '../../../net/stay-awake.ts';

/** 1 MiB READ/WRITE payloads; records get room for the RPC and NFS headers on top. */
export const DEFAULT_IO_MAX = 1 << 20;
const RECORD_HEADROOM = 64 * 1024;

export interface NfsServerOptions {
  fs: FileSystem;
  host: string;
  port: number;
  exportPath?: string;
  /** Also serve portmapper v2 here (0 = any free port); undefined = off. */
  portmapperPort?: number;
  ioMax?: number;
  /** Client list, squashing, AUTH_NONE policy; DEFAULT_EXPORT (loopback, root squash, AUTH_NONE refused) when absent. */
  export?: ExportOptions;
  /** The handle MAC key; by default the filesystem's own (handleKeyFor). */
  handleKey?: Uint8Array;
  /** Connection limits and timeouts for the RPC service (maxConnections, idleTimeoutMs, ...). */
  limits?: Partial<TcpServiceLimits>;
  /** Stay awake after replies for a QD1 client's next call (net/stay-awake.ts); on by default, false = off. */
  stayAwake?: Partial<StayAwakeOptions> | false;
  log?: (msg: string) => void;
}

export interface NfsServer {
  address: { host: string; port: number };
  portmapperAddress?: { host: string; port: number };
  stats(): Record<string, number>;
  /** Stop accepting, finish in-flight calls, commit unstable data. Does not close the filesystem. */
  stop(): Promise<void>;
}

export async function startNfsServer(opts: NfsServerOptions): Promise<NfsServer> {
  const ioMax = opts.ioMax ?? DEFAULT_IO_MAX;
  // Fail early on a filesystem whose root we cannot reach, not on the first MNT.
  await rootAttr(opts.fs);
  const handles = new HandleCodec(opts.fs.fsid, opts.handleKey ?? handleKeyFor(opts.fs));
  const policy = new ExportPolicy(opts.export ?? DEFAULT_EXPORT);
  const state: NfsServerState = {
    fs: opts.fs,
    handles,
    policy,
    writeVerifier: randomBytes(8),
    rtmax: ioMax,
    wtmax: ioMax,
    now: Date.now,
    log: opts.log ?? (() => {}),
    stats: { reads: 0, writes: 0, readBytes: 0, writeBytes: 0, errors: 0, denied: 0 },
  };
  const ports = { rpc: 0, portmap: undefined as number | undefined };
  const mount = mountProgram({ fs: opts.fs, exportPath: opts.exportPath ?? '/export', handles, policy });
  const rpc = new RpcServer({
    programs: [nfsProgram(state), mount, portmapProgram(() => ports)],
    // Twice the payload: an oversized WRITE up to that size still reaches the handler and gets INVAL.
    maxRecordSize: 2 * ioMax + RECORD_HEADROOM,
    limits: opts.limits,
    stayAwake: opts.stayAwake,
    log: opts.log,
  });
  const address = await rpc.listen(opts.host, opts.port);
  ports.rpc = address.port;
  let portmapperAddress: { host: string; port: number } | undefined;
  if (opts.portmapperPort !== undefined) {
    try {
      portmapperAddress = await rpc.listen(opts.host, opts.portmapperPort);
    } catch (err) {
      await rpc.close(); // do not leave the NFS port open behind a failed start
      throw err;
    }
    ports.portmap = portmapperAddress.port;
  }
  return {
    address,
    portmapperAddress,
    stats: () => ({ ...rpc.stats, ...state.stats, mounts: mount.mounts.length, ...awakeStats(rpc.awakeStats()) }),
    async stop() {
      await rpc.close();
      await opts.fs.commit();
    },
  };
}

/** The stay-awake counters as flat stats keys (awakeSpins, awakeHits, ...). */
function awakeStats(s: StayAwakeStats): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(s)) out[`awake${k[0]!.toUpperCase()}${k.slice(1)}`] = v;
  return out;
}
