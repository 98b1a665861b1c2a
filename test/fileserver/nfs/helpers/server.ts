/** Start the NFS server over a MemoryFileSystem on 127.0.0.1:0 for one test file. */
import { MemoryFileSystem, type MemoryFsOptions } from '../../../../src/functions/fileserver/nfs/memory-fs.ts';
import { startNfsServer, type NfsServer } from '../../../../src/functions/fileserver/nfs/server.ts';
import { DEFAULT_EXPORT, type ExportOptions } from '../../../../src/functions/fileserver/nfs/export.ts';
import type { StayAwakeOptions } from '../../../../src/net/stay-awake.ts';

/**
 * The protocol tests act as root and check what root may do (chown, any mode):
 * they run without root squash unless they pass `export`. The default export
 * itself (squashing root) is what test/fileserver/nfs/access-*.test.ts cover.
 */
export const PROTOCOL_TEST_EXPORT: ExportOptions = { ...DEFAULT_EXPORT, clients: [...DEFAULT_EXPORT.clients], rootSquash: false };

export async function startMemoryServer(
  opts: MemoryFsOptions & { ioMax?: number; portmapperPort?: number; exportPath?: string; export?: ExportOptions; handleKey?: Uint8Array; stayAwake?: Partial<StayAwakeOptions> | false } = {},
): Promise<{
  server: NfsServer;
  fs: MemoryFileSystem;
  port: number;
  logs: string[];
}> {
  const fs = new MemoryFileSystem(opts);
  const logs: string[] = [];
  const server = await startNfsServer({
    fs,
    host: '127.0.0.1',
    port: 0,
    ioMax: opts.ioMax,
    portmapperPort: opts.portmapperPort,
    exportPath: opts.exportPath,
    export: opts.export ?? PROTOCOL_TEST_EXPORT,
    handleKey: opts.handleKey,
    stayAwake: opts.stayAwake,
    log: (m) => logs.push(m),
  });
  return { server, fs, port: server.address.port, logs };
}
