import { execFile, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { DEPLOYMENTS, startDeployment } from './lib/deployment.ts';
import { median } from './lib/fio.ts';
import { barChart } from './lib/chart.ts';
import { hasGanesha, startGanesha } from './lib/ganesha.ts';

/**
 * The function benchmarks of issues #3 and #4, every deployment in one run:
 *   nfs       4 KiB random NFS READ (data set larger than the controller cache) and
 *             4 KiB FILE_SYNC WRITE, load generator in its own process
 *   database  see bench/database.ts
 */
const run = promisify(execFile);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const progress = (suite: string, m: string) => process.stderr.write(`[${suite}] ${m}\n`);
const loadGen = fileURLToPath(new URL('./fileserver.ts', import.meta.url));

interface Cell {
  value: number;
  p50Us: number;
  runs: number[];
}

function report(suite: string, resultsDir: string, unit: string, columns: string[], rows: Map<string, Map<string, Cell[]>>, notes: string[]): void {
  const med = (cells: Cell[] | undefined): Cell => ({
    value: median((cells ?? []).map((c) => c.value)),
    p50Us: median((cells ?? []).map((c) => c.p50Us)),
    runs: (cells ?? []).map((c) => Math.round(c.value)),
  });
  const table = [...rows].map(([label, cols]) => ({ label, cols: Object.fromEntries(columns.map((c) => [c, med(cols.get(c))])) }));
  const base = table.find((r) => r.label === 'integrated');
  const lines = [`# ${suite} bench: median of ${REPEATS} runs of ${SECONDS} s (${unit})`, ''];
  lines.push(`| deployment | ${columns.map((c) => `${c} | p50 µs | vs integrated`).join(' | ')} |`);
  lines.push(`|---|${columns.map(() => '---:|---:|---:').join('|')}|`);
  for (const r of table) {
    lines.push(
      `| ${r.label} | ${columns
        .map((c) => {
          const x = r.cols[c]!;
          const ratio = base ? x.value / base.cols[c]!.value : NaN;
          return `${Math.round(x.value)} | ${Number.isFinite(x.p50Us) ? Math.round(x.p50Us) : '-'} | ${ratio.toFixed(2)}`;
        })
        .join(' | ')} |`,
    );
  }
  lines.push('', ...notes);
  const text = lines.join('\n') + '\n';
  process.stdout.write(text);
  mkdirSync(resultsDir, { recursive: true });
  const stem = join(resultsDir, `${suite}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  writeFileSync(`${stem}.json`, JSON.stringify({ seconds: SECONDS, repeats: REPEATS, unit, table }, null, 2));
  writeFileSync(`${stem}.md`, text);
  writeFileSync(
    `${stem}.svg`,
    barChart({ title: `${suite}: ${unit} by deployment (median of ${REPEATS})`, unit, groups: columns, series: table.map((r) => ({ label: r.label, values: columns.map((c) => r.cols[c]!.value) })) }),
  );
  progress(suite, `wrote ${stem}.json, .md and .svg`);
}

function add(rows: Map<string, Map<string, Cell[]>>, label: string, col: string, cell: Cell): void {
  if (!rows.has(label)) rows.set(label, new Map());
  const m = rows.get(label)!;
  m.set(col, [...(m.get(col) ?? []), cell]);
}

export async function nfsBench(resultsDir: string): Promise<void> {
  const fileMiB = Number(process.env.BENCH_NFS_FILE_MIB ?? 256);
  const cacheMiB = 16;
  const rows = new Map<string, Map<string, Cell[]>>();
  const columns = ['4K random READ', '4K random WRITE FILE_SYNC'];
  for (let r = 0; r < REPEATS; r++) {
    for (const d of DEPLOYMENTS) {
      const dep = await startDeployment(d, { function: 'fileserver', options: { exportPath: '/export' }, volumeMiB: fileMiB * 2 + 256, cacheMiB });
      try {
        const { stdout } = await run(process.execPath, ['--import', 'tsx', loadGen, '--json', '--target', `${dep.host}:${dep.port}`, '--file-mib', String(fileMiB), '--seconds', String(SECONDS)], { timeout: 600_000 });
        const out = JSON.parse(stdout.trim().split('\n').pop()!);
        for (const res of out.results) add(rows, d.label, res.workload, { value: res.iops, p50Us: res.p50us, runs: [] });
        progress('nfs', `${r + 1}/${REPEATS} ${d.label.padEnd(15)} ${out.results.map((x: any) => `${x.workload}: ${x.iops} IOPS`).join(', ')}`);
      } finally {
        await dep.stop();
      }
    }
  }
  const notes: string[] = [];
  if (hasGanesha()) {
    for (let r = 0; r < REPEATS; r++) {
      const g = await startGanesha();
      try {
        const { stdout } = await run(process.execPath, ['--import', 'tsx', loadGen, '--json', '--target', `${g.host}:${g.nfsPort}:${g.mountPort}`, '--export', g.exportPath, '--file-mib', String(fileMiB), '--seconds', String(SECONDS)], { timeout: 600_000 });
        const out = JSON.parse(stdout.trim().split('\n').pop()!);
        for (const res of out.results) add(rows, 'nfs-ganesha (VFS)', res.workload, { value: res.iops, p50Us: res.p50us, runs: [] });
        progress('nfs', `${r + 1}/${REPEATS} nfs-ganesha     ${out.results.map((x: any) => `${x.workload}: ${x.iops} IOPS`).join(', ')}`);
      } finally {
        await g.stop();
      }
    }
    notes.push('nfs-ganesha serves a local directory through the kernel page cache: its READs are page-cache hits, not cache misses.');
  } else notes.push('nfs-ganesha is not installed (apt-get install nfs-ganesha nfs-ganesha-vfs rpcbind): no peer row.');
  report('nfs', resultsDir, 'IOPS', columns, rows, [
    ...notes,
    `4 KiB ops, 32 in flight over 4 connections, file ${fileMiB} MiB, controller read cache ${cacheMiB} MiB; load generator: bench/fileserver.ts in its own process.`,
  ]);
}

/** The database suite lives in bench/database.ts (SET/GET against redis-server, CPU per command, compaction latency). */
export { databaseSuite as databaseBench } from './database.ts';
