/**
 * The file server function: NFSv3 + MOUNT v3 over a filesystem that lives on
 * ctx.device and nowhere else. `createFileServer(open)` is the seam tests use to
 * run the same function over the in-memory filesystem.
 */
import type { BlockDevice } from '../../block/types.ts';
import { CONNECTION_LIMIT_KEYS, limitsOf, parseConnectionLimits } from '../../net/limits.ts';
import type { ConnectionLimitOptions, FunctionContext, RunningFunction, StorageFunction } from '../types.ts';
import type { FileSystem } from './fs/types.ts';
import { startNfsServer } from './nfs/server.ts';

export interface FileServerOptions extends ConnectionLimitOptions {
  /** The path clients mount (default '/export'). */
  exportPath: string;
  /** Serve portmapper v2 on this port too (0 = any free port). Off when absent. */
  portmapperPort?: number;
}

export type OpenFileSystem = (device: BlockDevice, opts?: { log?: (m: string) => void }) => Promise<FileSystem>;

/** The real filesystem, imported lazily so the protocol half loads without it. */
const openOnVolume: OpenFileSystem = async (device, opts) => (await import('./fs/index.ts')).openFileSystem(device, opts);

export function parseFileServerOptions(raw: Record<string, unknown>): FileServerOptions {
  const exportPath = raw.exportPath ?? '/export';
  if (typeof exportPath !== 'string' || !exportPath.startsWith('/') || exportPath.length > 1024) {
    throw new Error(`fileserver: options.exportPath must be an absolute path, got ${JSON.stringify(raw.exportPath)}`);
  }
  const pm = raw.portmapperPort;
  if (pm !== undefined && (typeof pm !== 'number' || !Number.isInteger(pm) || pm < 0 || pm > 65535)) {
    throw new Error(`fileserver: options.portmapperPort must be a port number, got ${JSON.stringify(pm)}`);
  }
  return { exportPath, portmapperPort: pm as number | undefined, ...parseConnectionLimits(raw, 'fileserver') };
}

export function createFileServer(open: OpenFileSystem = openOnVolume): StorageFunction<FileServerOptions> {
  return {
    name: 'fileserver',
    apiVersion: 1,
    description: 'NFSv3 file server over a crash-safe filesystem on the volume',
    parseOptions: parseFileServerOptions,
    async start(ctx: FunctionContext<FileServerOptions>): Promise<RunningFunction> {
      const options = parseFileServerOptions(ctx.options as unknown as Record<string, unknown>);
      const fs = await open(ctx.device, { log: ctx.log });
      let server;
      try {
        server = await startNfsServer({
          fs,
          host: ctx.listen.host,
          port: ctx.listen.port,
          exportPath: options.exportPath,
          portmapperPort: options.portmapperPort,
          limits: limitsOf(options),
          log: ctx.log,
        });
      } catch (err) {
        await fs.close();
        throw err;
      }
      const pm = server.portmapperAddress ? `, portmapper on port ${server.portmapperAddress.port}` : '';
      ctx.log(`fileserver ${ctx.instance}: NFSv3+MOUNT on ${server.address.host}:${server.address.port}${options.exportPath}${pm}`);
      let stopping: Promise<void> | undefined;
      return {
        address: server.address,
        stats: () => ({ ...server.stats(), ...prefixed('fs.', fsStats(fs)) }),
        stop: () =>
          (stopping ??= (async () => {
            await server.stop();
            await fs.close();
          })()),
      };
    },
  };
}

/** The filesystem's own counters when it keeps any (the contract does not require them). */
function fsStats(fs: FileSystem): Record<string, number> {
  const stats = (fs as { stats?: () => Record<string, number> }).stats;
  return typeof stats === 'function' ? stats.call(fs) : {};
}

const prefixed = (prefix: string, o: Record<string, number>) =>
  Object.fromEntries(Object.entries(o).map(([k, v]) => [prefix + k, v]));

const fileserver: StorageFunction<FileServerOptions> = createFileServer();
export default fileserver;
