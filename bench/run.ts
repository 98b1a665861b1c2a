import { resolve, join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { mkdirSync, writeFileSync } from 'node:fs';
import { blockBench } from './block.ts';
import { nfsBench, databaseBench } from './functions.ts';

/**
 * `npm run bench [-- --quick]`: the evaluation (bench/eval/run.ts).
 * `npm run bench -- SUITE...`: runs the named suites and writes
 * tables, JSON and SVG charts under results/. Benchmarks, not tests: numbers are
 * reported as ratios measured in the same run.
 */
/** A suite that is one script printing a Markdown table: run it in its own process, keep its output. */
function script(name: string): (resultsDir: string) => Promise<void> {
  return async (resultsDir) => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', fileURLToPath(new URL(`./${name}.ts`, import.meta.url))], { maxBuffer: 16 << 20 });
    process.stdout.write(stdout);
    mkdirSync(resultsDir, { recursive: true });
    writeFileSync(join(resultsDir, `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}.md`), stdout);
  };
}

const suites: Record<string, (resultsDir: string) => Promise<void>> = {
  block: blockBench,
  nfs: nfsBench,
  database: databaseBench,
  // heap allocated per 4 KiB read on the request path (counted, not timed)
  alloc: script('alloc'),
  // a quiet guest's latency beside a neighbour that keeps its ring full
  neighbour: script('neighbour'),
  // I/Os and time per 4 KiB write on a volume with a snapshot, and on a clone (counted, then timed)
  snapshots: script('snapshots'),
  // what operating costs: CPU per /status and /metrics scrape, runtime deploy/notify/undeploy, a clean stop
  ops: script('ops'),
  // RBD volumes (controller export, nbd-export guest) against fio's rbd engine on the same image
  rbd: script('rbd'),
  // dedup+compress against a plain volume on the same backend, 0/50/90% duplicates
  dedup: async (resultsDir) => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./dedup.ts', import.meta.url))]);
    process.stdout.write(stdout);
    mkdirSync(resultsDir, { recursive: true });
    writeFileSync(join(resultsDir, `dedup-${new Date().toISOString().replace(/[:.]/g, '-')}.txt`), stdout);
  },
};

const args = process.argv.slice(2);
if (args[0] === '--publish') {
  // Commit a finished run: docs/evaluation/ and the README's headline block.
  const { publish } = await import('./eval/publish.ts');
  const root = fileURLToPath(new URL('..', import.meta.url));
  if (!args[1]) throw new Error('usage: npm run bench -- --publish results/<date>');
  for (const f of publish(resolve(args[1]), { docsDir: join(root, 'docs', 'evaluation'), readme: join(root, 'README.md') })) console.log(`wrote ${f}`);
  process.exit();
}
const wanted = args.filter((a) => !a.startsWith('--'));
if (wanted.length === 0) {
  // No suite named: the whole evaluation (bench/eval/run.ts), or its --quick form.
  const { evaluationMain } = await import('./eval/run.ts');
  await evaluationMain(args);
  process.exit();
}
const names = wanted;
const resultsDir = resolve(process.env.BENCH_RESULTS ?? 'results');
for (const name of names) {
  const suite = suites[name];
  if (!suite) {
    process.stderr.write(`unknown suite '${name}' (have: ${Object.keys(suites).join(', ')})\n`);
    process.exit(2);
  }
  await suite(resultsDir);
}
