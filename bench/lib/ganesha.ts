import { spawn, spawnSync } from 'node:child_process';
import { freePort } from './net.ts';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { NfsClient } from '../../test/fileserver/nfs/helpers/nfs-client.ts';

/**
 * nfs-ganesha (VFS FSAL on a local directory) as the NFS peer for the benchmark,
 * when it is installed (apt-get install nfs-ganesha nfs-ganesha-vfs rpcbind).
 * It needs rpcbind running; it exports the directory by its path for NFSv3.
 */
export const hasGanesha = () => ['ganesha.nfsd', 'rpcbind'].every((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0);

export interface Ganesha {
  host: string;
  nfsPort: number;
  mountPort: number;
  /** The exported directory on this machine (files a client creates at the export root are here). */
  exportPath: string;
  /** The daemon's process id, for its CPU time (bench/lib/cpu.ts). */
  pid: number;
  stop(): Promise<void>;
}

export async function startGanesha(): Promise<Ganesha> {
  if (spawnSync('sh', ['-c', 'pgrep -x rpcbind']).status !== 0) spawnSync('rpcbind', ['-w']);
  const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'storvisor-ganesha-'));
  const exportPath = join(dir, 'export');
  mkdirSync(exportPath);
  const [nfsPort, mountPort] = [await freePort(), await freePort()];
  const conf = join(dir, 'ganesha.conf');
  writeFileSync(
    conf,
    `NFS_CORE_PARAM { NFS_Port = ${nfsPort}; MNT_Port = ${mountPort}; Protocols = 3; Enable_NLM = false; Enable_RQUOTA = false; }
EXPORT { Export_Id = 1; Path = ${exportPath}; Pseudo = /export; Access_Type = RW; Squash = No_Root_Squash; SecType = sys; FSAL { Name = VFS; } }
LOG { Default_Log_Level = WARN; }
`,
  );
  const child = spawn('ganesha.nfsd', ['-F', '-f', conf, '-L', join(dir, 'log'), '-p', join(dir, 'pid')], { stdio: 'ignore' });
  const stop = async () => {
    child.kill('SIGTERM');
    if (child.exitCode === null) await once(child, 'exit');
    rmSync(dir, { recursive: true, force: true });
  };
  // Ganesha takes a few seconds (grace period setup) before MOUNT answers.
  for (let attempt = 0; attempt < 60; attempt++) {
    try {
      const c = await NfsClient.connect(mountPort, '127.0.0.1');
      try {
        await c.root(exportPath);
        return { host: '127.0.0.1', nfsPort, mountPort, exportPath, pid: child.pid ?? 0, stop };
      } finally {
        await c.close();
      }
    } catch {
      await new Promise((r) => setTimeout(r, 500)); // waiting for an external daemon to come up
    }
  }
  await stop();
  throw new Error('nfs-ganesha did not start serving MOUNT within 30 s');
}

/**
 * Drop a file's pages from the kernel page cache, so the next reads of it reach
 * the disk: its dirty pages are written first (fdatasync), then
 * posix_fadvise(POSIX_FADV_DONTNEED) over the whole file, which GNU dd does for
 * `iflag=nocache count=0`. Needs no privileges (unlike vm.drop_caches).
 */
export async function evictFromPageCache(path: string): Promise<void> {
  const { open } = await import('node:fs/promises');
  const fh = await open(path, 'r+');
  try {
    await fh.datasync();
  } finally {
    await fh.close();
  }
  const r = spawnSync('dd', [`if=${path}`, 'iflag=nocache', 'count=0', 'status=none']);
  if (r.status !== 0) throw new Error(`dd iflag=nocache on ${path} failed: ${r.stderr?.toString() ?? r.status}`);
}
