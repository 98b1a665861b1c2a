import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startDeployment } from '../../lib/deployment.ts';
import { hasGanesha, startGanesha } from '../../lib/ganesha.ts';
import { unsupportedDeploy } from '../../lib/targets.ts';
import { Samples, asDeployment, type Deployment, type EvalContext } from '../context.ts';
import type { Section } from '../report.ts';

const run = promisify(execFile);
const loadGen = fileURLToPath(new URL('../../fileserver.ts', import.meta.url));
const READ = '4K random READ';
const WRITE = '4K random WRITE FILE_SYNC';

/**
 * Rows 1 and 2: the file server, 4 KiB random READs that miss the controller's
 * cache and FILE_SYNC WRITEs, 32 in flight, in each deployment and against
 * nfs-ganesha; and how READ IOPS scale with the cores given to a process guest.
 */
export async function fileserverStep(ctx: EvalContext): Promise<Section[]> {
  const fileMiB = ctx.quick ? 64 : 256;
  const s = new Samples();
  const columns = [...ctx.deployments.map((d) => d.label), 'nfs-ganesha'];
  const rows = [`${READ} IOPS`, `${READ} p50`, `${READ} p99`, `${WRITE} IOPS`];
  const drive = async (label: string, target: string, exportPath?: string) => {
    const args = ['--import', 'tsx', loadGen, '--json', '--target', target, '--file-mib', String(fileMiB), '--seconds', String(ctx.seconds)];
    const { stdout } = await run(process.execPath, exportPath ? [...args, '--export', exportPath] : args, { timeout: 900_000 });
    const out = JSON.parse(stdout.trim().split('\n').pop()!) as { results: Array<{ workload: string; iops: number; p50us: number; p99us: number }> };
    for (const r of out.results) {
      s.add(`${r.workload} IOPS`, label, r.iops);
      if (r.workload === READ) {
        s.add(`${READ} p50`, label, r.p50us);
        s.add(`${READ} p99`, label, r.p99us);
      }
    }
    ctx.progress.step(`fileserver ${label}: ${out.results.map((r) => `${r.workload} ${r.iops}/s`).join(', ')}`, ctx.seconds * 2);
  };
  const deployed = async (d: Deployment, label = d.label) => {
    const dep = await startDeployment(asDeployment(d), { function: 'fileserver', options: { exportPath: '/export' }, volumeMiB: fileMiB * 2 + 256, cacheMiB: 16 });
    try {
      await drive(label, `${dep.host}:${dep.port}`);
    } finally {
      await dep.stop();
    }
  };
  const scaling = ['1 core', '2 cores'];
  const coresOf = (n: number): Deployment => ({ label: `process/poll, ${n} core(s)`, fields: { deploy: 'guest', kind: 'process', standby: false, notify: 'poll', cores: n === 1 ? [1] : [0, 1] } });
  const scalingUnsupported = unsupportedDeploy(coresOf(1).fields);
  for (let rep = 0; rep < ctx.repeats; rep++) {
    for (const d of ctx.deployments) {
      if (d.unsupported) rows.forEach((r) => s.skip(r, d.label, d.unsupported!));
      else await deployed(d);
    }
    if (hasGanesha()) {
      const g = await startGanesha();
      try {
        await drive('nfs-ganesha', `${g.host}:${g.nfsPort}:${g.mountPort}`, g.exportPath);
      } finally {
        await g.stop();
      }
    } else rows.forEach((r) => s.skip(r, 'nfs-ganesha', 'nfs-ganesha is not installed (apt-get install nfs-ganesha nfs-ganesha-vfs rpcbind)'));
    for (const [i, n] of [1, 2].entries()) {
      if (scalingUnsupported) s.skip('READ IOPS by guest cores', scaling[i]!, scalingUnsupported);
      else {
        const before = s.values(`${READ} IOPS`, coresOf(n).label).length;
        await deployed(coresOf(n));
        s.add('READ IOPS by guest cores', scaling[i]!, s.values(`${READ} IOPS`, coresOf(n).label)[before]!);
      }
    }
  }
  return [
    {
      id: 'fileserver',
      title: 'File server: 4 KiB NFS READ (cache miss) and FILE_SYNC WRITE',
      columns,
      rows: [
        { name: `${READ} IOPS`, unit: 'IOPS', better: 'higher', cells: s.cells(`${READ} IOPS`, columns), paper: 'guest = bare metal', headline: true },
        { name: `${READ} p50`, unit: 'µs', better: 'lower', cells: s.cells(`${READ} p50`, columns) },
        { name: `${READ} p99`, unit: 'µs', better: 'lower', cells: s.cells(`${READ} p99`, columns) },
        { name: `${WRITE} IOPS`, unit: 'IOPS', better: 'higher', cells: s.cells(`${WRITE} IOPS`, columns), headline: true },
      ],
      notes: [
        `NFSv3 over loopback TCP, 32 in flight over 4 connections, a ${fileMiB} MiB file; the controller cache is 16 MiB, so our READs miss it.`,
        'nfs-ganesha (VFS) serves a local directory through the kernel page cache: its READs are page-cache hits unless evicted.',
      ],
    },
    {
      id: 'fileserver-scaling',
      title: 'File server READ IOPS by the cores given to a process guest',
      columns: scaling,
      rows: [{ name: 'READ IOPS by guest cores', unit: 'IOPS', better: 'higher', cells: s.cells('READ IOPS by guest cores', scaling) }],
      notes: ['The same READ load; the guest process pinned to one core, then to two.'],
    },
  ];
}
