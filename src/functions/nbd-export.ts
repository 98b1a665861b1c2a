import { invalidArgument } from '../util/errors.ts';
import { NbdServer } from '../nbd/server.ts';
import { MAX_STRING_BYTES } from '../nbd/protocol.ts';
import { CONNECTION_LIMIT_KEYS, limitsOf, parseConnectionLimits } from '../net/limits.ts';
import type { ConnectionLimitOptions, FunctionContext, RunningFunction, StorageFunction } from './types.ts';

export interface NbdExportOptions extends ConnectionLimitOptions {
  /** The export's name; the empty name selects it too. */
  exportName: string;
}

function parseOptions(raw: Record<string, unknown>): NbdExportOptions {
  for (const k of Object.keys(raw)) {
    if (k !== 'exportName' && !(CONNECTION_LIMIT_KEYS as readonly string[]).includes(k)) throw invalidArgument(`nbd-export option ${k} is unknown`);
  }
  const exportName = raw.exportName ?? 'export';
  if (typeof exportName !== 'string' || exportName === '' || Buffer.byteLength(exportName) > MAX_STRING_BYTES || exportName.includes('\0')) {
    throw invalidArgument(`nbd-export option exportName must be a non-empty string of at most ${MAX_STRING_BYTES} bytes without NUL`);
  }
  return { exportName, ...parseConnectionLimits(raw, 'nbd-export') };
}

async function start(ctx: FunctionContext<NbdExportOptions>): Promise<RunningFunction> {
  const options = parseOptions((ctx.options ?? {}) as unknown as Record<string, unknown>);
  const { exportName } = options;
  const device = ctx.device;
  const server = new NbdServer({
    exports: [{ name: exportName, description: `storvisor ${ctx.instance}`, device }],
    defaultExport: exportName,
    limits: limitsOf(options),
    log: ctx.log,
  });
  const address = await server.listen(ctx.listen.host, ctx.listen.port);
  ctx.log(`nbd-export: serving ${exportName} (${device.size} bytes) on ${address.host}:${address.port}`);
  return {
    address,
    async stop() {
      await server.close();
      if (!device.readOnly) await device.flush();
    },
    stats() {
      return { ...server.stats() };
    },
  };
}

const nbdExport: StorageFunction<NbdExportOptions> = {
  name: 'nbd-export',
  apiVersion: 1,
  description: 'Serves the volume over NBD (fixed newstyle) to qemu, nbd-client, fio and libnbd tools',
  parseOptions,
  start,
  exportNames: (o) => [o.exportName],
  clientUrl: (a, o) => `nbd://${a.host}:${a.port}/${o.exportName}`,
};

export default nbdExport;
