/**
 * The file server function: NFSv3 + MOUNT v3 over a filesystem that lives on
 * ctx.device and nowhere else. `createFileServer(open)` is the seam tests use to
 * run the same function over the in-memory filesystem.
 */
import type { BlockDevice } from '../../block/types.ts';
import type { ConnectionLimitOptions, FunctionContext, RunningFunction, StorageFunction } from '../types.ts';
import { randomBytes } from 'node:crypto';
import { CONNECTION_LIMIT_KEYS, limitsOf, parseConnectionLimits } from '../../net/limits.ts';
import type { FileSystem } from './fs/types.ts';
import { startNfsServer } from './nfs/server.ts';
import { parseExportOptions, type ExportOptions } from './nfs/export.ts';
import { HANDLE_KEY_BYTES } from './nfs/handle.ts';
import { invalidArgument } from '../../util/errors.ts';

/** The function's options; the export fields are optional here and defaulted by parseFileServerOptions. */
export interface FileServerOptions extends Partial<ExportOptions>, ConnectionLimitOptions {
  /** The path clients mount (default '/export'). */
  exportPath: string;
  /** Serve portmapper v2 on this port too (0 = any free port). Off when absent. */
  portmapperPort?: number;
  /** µs the server stays awake after a reply for a QD1 client's next call (net/stay-awake.ts); 0 = never. Default 150. */
  stayAwakeUs?: number;
}

/** What the file server asks of a volume it formats (ignored by filesystems that need no formatting). */
export interface FormatOptions {
  /** The secret the NFS handles are keyed with, kept in the superblock. */
  handleKey: Uint8Array;
  /** The export root: 1777 root:root, so squashed root and every user may create there (see README). */
  root: { uid: number; gid: number; mode: number };
}

export type OpenFileSystem = (device: BlockDevice, opts?: { log?: (m: string) => void; mkfs?: FormatOptions }) => Promise<FileSystem>;

/** A spin longer than a scheduler tick would only hold a core another thread needs. */
const MAX_STAY_AWAKE_US = 1000;

/** A fresh volume's export root: world-writable and sticky, like /tmp. */
export const EXPORT_ROOT = Object.freeze({ uid: 0, gid: 0, mode: 0o1777 });

/** The real filesystem, imported lazily so the protocol half loads without it. */
const openOnVolume: OpenFileSystem = async (device, opts) => (await import('./fs/index.ts')).openFileSystem(device, opts);

const KNOWN_OPTIONS = new Set(['exportPath', 'portmapperPort', 'stayAwakeUs', 'clients', 'rootSquash', 'allSquash', 'anonUid', 'anonGid', 'authNone', ...CONNECTION_LIMIT_KEYS]);

export function parseFileServerOptions(raw: Record<string, unknown>): FileServerOptions & ExportOptions {
  for (const k of Object.keys(raw)) {
    // A misspelt security option ("rootsquash") must not silently leave the default in place.
    if (!KNOWN_OPTIONS.has(k)) throw invalidArgument(`fileserver: unknown option ${JSON.stringify(k)} (known: ${[...KNOWN_OPTIONS].join(', ')})`);
  }
  const exportPath = raw.exportPath ?? '/export';
  if (typeof exportPath !== 'string' || !exportPath.startsWith('/') || exportPath.length > 1024) {
    throw invalidArgument(`fileserver: options.exportPath must be an absolute path, got ${JSON.stringify(raw.exportPath)}`);
  }
  const pm = raw.portmapperPort;
  if (pm !== undefined && (typeof pm !== 'number' || !Number.isInteger(pm) || pm < 0 || pm > 65535)) {
    throw invalidArgument(`fileserver: options.portmapperPort must be a port number, got ${JSON.stringify(pm)}`);
  }
  const sa = raw.stayAwakeUs;
  if (sa !== undefined && (typeof sa !== 'number' || !Number.isInteger(sa) || sa < 0 || sa > MAX_STAY_AWAKE_US)) {
    throw invalidArgument(`fileserver: options.stayAwakeUs must be an integer from 0 to ${MAX_STAY_AWAKE_US} (µs), got ${JSON.stringify(sa)}`);
  }
  return {
    exportPath,
    portmapperPort: pm as number | undefined,
    stayAwakeUs: sa as number | undefined,
    ...parseExportOptions(raw),
    ...parseConnectionLimits(raw, 'fileserver'),
  };
}

export function createFileServer(open: OpenFileSystem = openOnVolume): StorageFunction<FileServerOptions> {
  return {
    name: 'fileserver',
    apiVersion: 1,
    description: 'NFSv3 file server over a crash-safe filesystem on the volume',
    parseOptions: parseFileServerOptions,
    clientUrl: (a, o) => `nfs://${a.host}${o.exportPath}?nfsport=${a.port}&mountport=${a.port}&version=3`,
    async start(ctx: FunctionContext<FileServerOptions>): Promise<RunningFunction> {
      const options = parseFileServerOptions(ctx.options as unknown as Record<string, unknown>);
      // Used only if the volume is empty and gets formatted now: the key then lives in its superblock.
      const mkfs: FormatOptions = { handleKey: new Uint8Array(randomBytes(HANDLE_KEY_BYTES)), root: { ...EXPORT_ROOT } };
      const fs = await open(ctx.device, { log: ctx.log, mkfs });
      let server;
      try {
        server = await startNfsServer({
          fs,
          host: ctx.listen.host,
          port: ctx.listen.port,
          exportPath: options.exportPath,
          portmapperPort: options.portmapperPort,
          export: options,
          limits: limitsOf(options),
          stayAwake: options.stayAwakeUs === undefined ? undefined : { budgetUs: options.stayAwakeUs },
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
