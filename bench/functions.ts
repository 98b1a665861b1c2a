import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEPLOYMENTS, startDeployment } from './lib/deployment.ts';
import { median } from './lib/fio.ts';
import { barChart } from './lib/chart.ts';
import { benchDatabase, redisTarget, type BenchTarget } from './database.ts';

/**
 * The function benchmarks of issues #3 and #4, every deployment in one run:
 *   nfs       bench/fileserver.ts's compare mode: storvisor (integrated, guest/adaptive)
 *             and nfs-ganesha, cached and uncached, load generator in its own process
 *   database  redis-benchmark SET/GET, 50 clients, -P 1 and 16, 100 B and 4 KiB values,
 *             beside redis-server (appendonly yes, appendfsync always / everysec)
 */
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

/**
 * `npm run bench -- nfs`: bench/fileserver.ts's compare mode in its own process
 * (storvisor integrated and guest/adaptive beside nfs-ganesha, cached and
 * uncached, fio on the raw file, the volume's sequential write), written to resultsDir.
 */
export async function nfsBench(resultsDir: string): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', loadGen, '--out', resultsDir], { stdio: ['ignore', 'inherit', 'inherit'] });
  const [code] = await once(child, 'exit');
  if (code !== 0) throw new Error(`nfs bench (bench/fileserver.ts) exited with ${code}`);
}

export async function databaseBench(resultsDir: string): Promise<void> {
  if (spawnSync('sh', ['-c', 'command -v redis-benchmark']).status !== 0) throw new Error('redis-benchmark is not installed (apt-get install redis-tools)');
  const requests = Number(process.env.BENCH_DB_REQUESTS ?? 20000);
  const targets: BenchTarget[] = DEPLOYMENTS.map((d) => ({
    name: d.label,
    start: async () => {
      const dep = await startDeployment(d, { function: 'database', options: { appendfsync: 'always' }, volumeMiB: 512, cacheMiB: 64 });
      return { port: dep.port, stop: dep.stop };
    },
  }));
  if (spawnSync('sh', ['-c', 'command -v redis-server']).status === 0) targets.push(redisTarget('always'), redisTarget('everysec'));
  const rows = new Map<string, Map<string, Cell[]>>();
  const columns = new Set<string>();
  for (let r = 0; r < REPEATS; r++) {
    for (const row of await benchDatabase(targets, requests)) {
      const col = `${row.test} -P${row.pipeline} ${row.size}B`;
      columns.add(col);
      add(rows, row.target, col, { value: row.rps, p50Us: row.p50 * 1000, runs: [] });
    }
    progress('database', `repeat ${r + 1}/${REPEATS} done`);
  }
  report('database', resultsDir, 'requests/s', [...columns], rows, [
    `redis-benchmark -c 50 -n ${requests} -r 10000; storvisor database with appendfsync always (a reply only after the write is durable on the volume).`,
  ]);
}
