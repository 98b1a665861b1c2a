/** Start the NFS server over a MemoryFileSystem on 127.0.0.1:0 for one test file. */
import { MemoryFileSystem, type MemoryFsOptions } from '../../../../src/functions/fileserver/nfs/memory-fs.ts';
import { startNfsServer, type NfsServer } from '../../../../src/functions/fileserver/nfs/server.ts';

export async function startMemoryServer(opts: MemoryFsOptions & { ioMax?: number; portmapperPort?: number; exportPath?: string } = {}): Promise<{
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
    log: (m) => logs.push(m),
  });
  return { server, fs, port: server.address.port, logs };
}
