import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { freePort } from './net.ts';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { connect } from 'node:net';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { NfsClient } from '../../test/fileserver/nfs/helpers/nfs-client.ts';

/**
 * nfs-ganesha (VFS FSAL on a local directory) as the NFS peer for the benchmark
 * (apt-get install nfs-ganesha nfs-ganesha-vfs rpcbind). ganesha.nfsd registers
 * its programs with rpcbind at start and exits ("Cannot register NFS V3 on UDP")
 * when none answers, so an rpcbind is started first when none is listening, as
 * our own foreground child, and stopped with ganesha. Clients reach ganesha on
 * its NFS and MOUNT ports directly (libnfs: ?nfsport=&mountport=), not via rpcbind.
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

/** Something accepts TCP connections on 127.0.0.1:port (a zombie rpcbind in the process table does not). */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function stopChild(child: ChildProcess | null): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** rpcbind on port 111: the one already running, or our own child (returned, to stop). */
async function ensureRpcbind(): Promise<ChildProcess | null> {
  if (await listening(111)) return null;
  const child = spawn('rpcbind', ['-f', '-w'], { stdio: 'ignore' });
  const failed = once(child, 'exit').then(([code]) => code);
  for (let i = 0; i < 100; i++) {
    if (await listening(111)) return child;
    if (child.exitCode !== null) break;
    await Promise.race([failed, new Promise((r) => setTimeout(r, 50))]); // an external daemon coming up
  }
  await stopChild(child);
  throw new Error(`rpcbind did not start listening on port 111 (exit ${child.exitCode})`);
}

export async function startGanesha(): Promise<Ganesha> {
  if (!hasGanesha()) throw new Error('nfs-ganesha is not installed (apt-get install nfs-ganesha nfs-ganesha-vfs rpcbind)');
  const rpcbind = await ensureRpcbind();
  const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'storvisor-ganesha-'));
  const exportPath = join(dir, 'export');
  mkdirSync(exportPath);
  const [nfsPort, mountPort] = [await freePort(), await freePort()];
  const conf = join(dir, 'ganesha.conf');
  const log = join(dir, 'log');
  writeFileSync(
    conf,
    `NFS_CORE_PARAM { NFS_Port = ${nfsPort}; MNT_Port = ${mountPort}; Protocols = 3; Enable_NLM = false; Enable_RQUOTA = false; }
EXPORT { Export_Id = 1; Path = ${exportPath}; Pseudo = /export; Access_Type = RW; Squash = No_Root_Squash; SecType = sys; FSAL { Name = VFS; } }
LOG { Default_Log_Level = WARN; }
`,
  );
  const child = spawn('ganesha.nfsd', ['-F', '-f', conf, '-L', log, '-p', join(dir, 'pid')], { stdio: 'ignore' });
  const stop = async () => {
    await stopChild(child);
    await stopChild(rpcbind);
    rmSync(dir, { recursive: true, force: true });
  };
  const logTail = () => {
    try {
      return readFileSync(log, 'utf8').split('\n').filter((l) => /CRIT|MAJ|FATAL/.test(l) && !/DBUS/.test(l)).slice(-3).join(' | ');
    } catch {
      return 'no log';
    }
  };
  // Ganesha takes a few seconds (grace period setup) before MOUNT answers.
  for (let attempt = 0; attempt < 60 && child.exitCode === null; attempt++) {
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
  const why = child.exitCode !== null ? `exited with ${child.exitCode}` : 'did not serve MOUNT within 30 s';
  const detail = logTail();
  await stop();
  throw new Error(`nfs-ganesha ${why}: ${detail}`);
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
