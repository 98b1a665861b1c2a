import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { engineDescription } from '../../src/storage/engine.ts';
import { deployments, type EvalContext, type Step } from './context.ts';
import { probeMachine } from './machine.ts';
import { Progress, clock } from './progress.ts';
import { writeReport, type Report, type Section } from './report.ts';
import { ablationStep } from './steps/ablation.ts';
import { blockStep } from './steps/block.ts';
import { databaseStep } from './steps/database.ts';
import { dedupStep } from './steps/dedup.ts';
import { fileserverStep } from './steps/fileserver.ts';
import { idleStep } from './steps/idle.ts';
import { networkStep } from './steps/network.ts';

/**
 * The evaluation: the paper's results table regenerated on this machine, in
 * one run, as results/<date>[-quick]/report.md, report.json and charts.
 *
 *   npm run bench                 the whole evaluation (3 repeats of 3 s)
 *   npm run bench -- --quick      a reduced run (1 repeat of 1 s, smaller data sets)
 *
 * BENCH_SECONDS, BENCH_REPEATS override the durations; BENCH_COLUMNS
 * (comma-separated deployment labels) narrows the columns; BENCH_DIR holds the
 * scratch files; BENCH_RESULTS is the results root.
 */
interface PlannedStep {
  name: string;
  run: Step;
  /** Measured steps and their seconds of load, for the progress line's estimate. */
  plan(ctx: Omit<EvalContext, 'progress'>): { steps: number; seconds: number };
}

const STEPS: PlannedStep[] = [
  { name: 'block', run: blockStep, plan: (c) => ({ steps: c.repeats * (3 + c.deployments.length) * 10, seconds: c.repeats * (3 + c.deployments.length) * 10 * c.seconds }) },
  { name: 'idle', run: idleStep, plan: (c) => ({ steps: c.repeats * c.deployments.length, seconds: c.repeats * c.deployments.length * (c.quick ? 2 : 10) }) },
  { name: 'network', run: networkStep, plan: (c) => ({ steps: c.repeats * (2 * c.deployments.length + 3), seconds: c.repeats * (2 * c.deployments.length + 3) * c.seconds }) },
  { name: 'fileserver', run: fileserverStep, plan: (c) => ({ steps: c.repeats * (c.deployments.length + 3), seconds: c.repeats * (c.deployments.length + 3) * 2 * c.seconds }) },
  { name: 'database', run: databaseStep, plan: (c) => ({ steps: c.repeats * (c.deployments.length + 1) * 2, seconds: c.repeats * (c.deployments.length + 1) * 4 * c.seconds }) },
  { name: 'ablation', run: ablationStep, plan: (c) => ({ steps: c.repeats * 14, seconds: c.repeats * 14 * c.seconds }) },
  { name: 'dedup', run: dedupStep, plan: (c) => ({ steps: c.repeats * 6, seconds: c.repeats * 6 * c.seconds }) },
];

/** Sections with one id (two steps may fill one table) become one, rows in step order. */
export function mergeSections(sections: Section[]): Section[] {
  const byId = new Map<string, Section>();
  for (const s of sections) {
    const had = byId.get(s.id);
    if (!had) byId.set(s.id, { ...s, columns: [...s.columns], rows: [...s.rows], notes: [...s.notes] });
    else {
      for (const c of s.columns) if (!had.columns.includes(c)) had.columns.push(c);
      had.rows.push(...s.rows);
      had.notes.push(...s.notes);
    }
  }
  return [...byId.values()];
}

export async function runEvaluation(opts: { quick: boolean; only?: string[] }): Promise<{ dir: string; report: Report; failures: string[] }> {
  const base = {
    quick: opts.quick,
    seconds: Number(process.env.BENCH_SECONDS ?? (opts.quick ? 1 : 3)),
    repeats: Number(process.env.BENCH_REPEATS ?? (opts.quick ? 1 : 3)),
    dir: process.env.BENCH_DIR ?? tmpdir(),
    deployments: deployments(process.env.BENCH_COLUMNS),
  };
  const steps = STEPS.filter((s) => !opts.only?.length || opts.only.includes(s.name));
  const planned = steps.map((s) => s.plan(base));
  const progress = new Progress(planned.reduce((a, p) => a + p.steps, 0), planned.reduce((a, p) => a + p.seconds, 0));
  const ctx: EvalContext = { ...base, progress };
  const sections: Section[] = [];
  const failures: string[] = [];
  for (const step of steps) {
    process.stderr.write(`[eval] ${step.name} ...\n`);
    try {
      sections.push(...(await step.run(ctx)));
    } catch (err) {
      // A step that breaks still shows in the report: a section that says why.
      failures.push(`${step.name}: ${(err as Error).stack ?? err}`);
      sections.push({ id: step.name, title: `${step.name}: FAILED`, columns: [], rows: [], notes: [`the step failed: ${(err as Error).message}`] });
    }
  }
  const date = new Date().toISOString().slice(0, 10);
  const report: Report = { date, quick: opts.quick, seconds: base.seconds, repeats: base.repeats, machine: probeMachine(base.dir, engineDescription()), sections: mergeSections(sections) };
  const dir = join(resolve(process.env.BENCH_RESULTS ?? 'results'), `${date}${opts.quick ? '-quick' : ''}`);
  const files = writeReport(dir, report);
  process.stderr.write(`[eval] wrote ${files.join(', ')}\n`);
  return { dir, report, failures };
}

export async function evaluationMain(args: string[]): Promise<void> {
  const started = Date.now();
  const quick = args.includes('--quick');
  const only = args.filter((a) => a.startsWith('--only=')).flatMap((a) => a.slice(7).split(','));
  const { failures } = await runEvaluation({ quick, only });
  process.stderr.write(`[eval] done in ${clock((Date.now() - started) / 1000)}\n`);
  if (failures.length) {
    for (const f of failures) process.stderr.write(`[eval] step failed: ${f}\n`);
    process.exitCode = 1;
  }
}
