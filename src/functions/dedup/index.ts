/**
 * The 'dedup' storage function: opens a DedupVolume on ctx.device (formatting it when
 * blank) and serves the virtual volume over NBD. The running function also exposes the
 * volume as a plain BlockDevice (`device`), so the controller can hand it to other guests.
 */
import type { StorageFunction, RunningFunction } from '../types.ts';
import type { BlockDevice } from '../../block/types.ts';
import { NbdServer } from '../../nbd/server.ts';
import { CONNECTION_LIMIT_KEYS, limitsOf, parseConnectionLimits, type ConnectionLimitOptions } from '../../net/limits.ts';
import { invalidArgument } from '../../util/errors.ts';
import { COMPRESSION, type Compression } from './format.ts';
import { DedupVolume } from './volume.ts';

export { DedupVolume } from './volume.ts';
export type { DedupVolumeOptions, CheckResult } from './volume.ts';

export interface DedupFunctionOptions extends ConnectionLimitOptions {
  /** Virtual volume size in bytes; default: the backing volume's size rounded down to 4 KiB. */
  logicalSize?: number;
  compression: Compression;
  dedup: boolean;
  cacheBytes?: number;
  /** Compression worker threads: the cores given to the function, less the request thread's (default from os.availableParallelism(), at least 1); 0 = inline. */
  workers?: number;
  /** NBD export name (default 'dedup'). */
  exportName: string;
}

export interface RunningDedup extends RunningFunction {
  /** The virtual volume, usable like any other BlockDevice. */
  readonly device: BlockDevice;
}

export function parseDedupOptions(raw: Record<string, unknown>): DedupFunctionOptions {
  const known = new Set(['logicalSize', 'compression', 'dedup', 'cacheBytes', 'workers', 'exportName', ...CONNECTION_LIMIT_KEYS]);
  for (const k of Object.keys(raw)) if (!known.has(k)) throw invalidArgument(`dedup: unknown option '${k}'`);
  const { logicalSize, compression = 'lz4', dedup = true, cacheBytes, workers, exportName = 'dedup' } = raw;
  if (logicalSize !== undefined && (!Number.isSafeInteger(logicalSize) || (logicalSize as number) <= 0 || (logicalSize as number) % 4096 !== 0)) {
    throw invalidArgument(`dedup: option 'logicalSize' must be a positive multiple of 4096, got ${String(logicalSize)}`);
  }
  if (typeof compression !== 'string' || !(COMPRESSION as readonly string[]).includes(compression)) {
    throw invalidArgument(`dedup: option 'compression' must be one of ${COMPRESSION.join(', ')}, got ${String(compression)}`);
  }
  if (typeof dedup !== 'boolean') throw invalidArgument(`dedup: option 'dedup' must be a boolean, got ${String(dedup)}`);
  if (cacheBytes !== undefined && (!Number.isSafeInteger(cacheBytes) || (cacheBytes as number) < 1 << 20)) {
    throw invalidArgument(`dedup: option 'cacheBytes' must be an integer >= 1048576, got ${String(cacheBytes)}`);
  }
  if (workers !== undefined && (!Number.isSafeInteger(workers) || (workers as number) < 0 || (workers as number) > 64)) {
    throw invalidArgument(`dedup: option 'workers' must be an integer from 0 to 64, got ${String(workers)}`);
  }
  if (typeof exportName !== 'string' || exportName.length === 0 || Buffer.byteLength(exportName) > 4096) {
    throw invalidArgument(`dedup: option 'exportName' must be a non-empty string of at most 4096 bytes`);
  }
  return {
    ...(logicalSize !== undefined ? { logicalSize: logicalSize as number } : {}),
    compression: compression as Compression,
    dedup,
    ...(cacheBytes !== undefined ? { cacheBytes: cacheBytes as number } : {}),
    ...(workers !== undefined ? { workers: workers as number } : {}),
    exportName,
    ...parseConnectionLimits(raw, 'dedup'),
  };
}

const dedupFunction: StorageFunction<DedupFunctionOptions> = {
  name: 'dedup',
  apiVersion: 1,
  description: 'inline deduplication and compression volume, exported over NBD',
  parseOptions: parseDedupOptions,
  exportNames: (o) => [o.exportName],
  clientUrl: (a, o) => `nbd://${a.host}:${a.port}/${o.exportName}`,
  async start(ctx): Promise<RunningDedup> {
    // Parsing again is idempotent, and covers callers that skip parseOptions.
    const opts = parseDedupOptions({ ...ctx.options });
    const volume = await DedupVolume.open(ctx.device, {
      logicalSize: opts.logicalSize ?? Math.floor(ctx.device.size / 4096) * 4096,
      compression: opts.compression,
      dedup: opts.dedup,
      ...(opts.cacheBytes !== undefined ? { cacheBytes: opts.cacheBytes } : {}),
      ...(opts.workers !== undefined ? { workers: opts.workers } : {}),
      log: (msg) => ctx.log(msg),
    });
    const server = new NbdServer({
      exports: [{ name: opts.exportName, description: 'storvisor dedup volume', device: volume }],
      defaultExport: opts.exportName,
      limits: limitsOf(opts),
      log: (msg) => ctx.log(msg),
    });
    let address: { host: string; port: number };
    try {
      address = await server.listen(ctx.listen.host, ctx.listen.port);
    } catch (err) {
      await volume.close();
      throw err;
    }
    return {
      address,
      device: volume,
      async stop() {
        await server.close();
        await volume.close();
      },
      stats: () => ({ ...server.stats(), ...volume.stats() }),
    };
  },
};

export default dedupFunction;
