import type { FunctionConfig } from '../../src/config/config.ts';
import type { Progress } from './progress.ts';
import type { Cell, Row, Section } from './report.ts';
import { ratioOf, summarize } from './stats.ts';
import { unsupportedDeploy } from '../lib/targets.ts';
import type { DeploymentUnderTest } from '../lib/deployment.ts';

/** What every step of the evaluation shares: its settings and its progress line. */
export interface EvalContext {
  quick: boolean;
  seconds: number;
  repeats: number;
  /** Where volumes and peers put their files (BENCH_DIR, else the OS temp dir). */
  dir: string;
  progress: Progress;
  /** Deployment columns to run (all unless narrowed with BENCH_COLUMNS). */
  deployments: Deployment[];
}

/** One column of the results table: a way to deploy a function. */
export interface Deployment {
  label: string;
  fields: Partial<FunctionConfig> & Pick<FunctionConfig, 'deploy'>;
  /** Why it cannot run here, or undefined. */
  unsupported?: string;
}

/** The shape bench/lib/deployment.ts starts: deploy and notify, the rest of the fields as extra config. */
export function asDeployment(d: Deployment): DeploymentUnderTest {
  const { deploy, notify, ...extra } = d.fields;
  return { label: d.label, deploy, ...(notify ? { notify } : {}), extra };
}

export function deployments(only?: string): Deployment[] {
  const all: Deployment[] = [
    { label: 'integrated', fields: { deploy: 'integrated' } },
    { label: 'guest/poll', fields: { deploy: 'guest', notify: 'poll' } },
    { label: 'guest/adaptive', fields: { deploy: 'guest', notify: 'adaptive' } },
    { label: 'guest/notify', fields: { deploy: 'guest', notify: 'notify' } },
    { label: 'gateway', fields: { deploy: 'gateway' } },
    { label: 'process/poll', fields: { deploy: 'guest', kind: 'process', standby: false, notify: 'poll' } },
  ];
  const picked = only ? all.filter((d) => only.split(',').some((p) => d.label === p.trim())) : all;
  return picked.map((d) => ({ ...d, unsupported: unsupportedDeploy(d.fields) }));
}

/** Samples per (row, column), summarized into a section's cells at the end. */
export class Samples {
  private readonly data = new Map<string, Map<string, number[]>>();
  private readonly skips = new Map<string, Map<string, string>>();

  add(row: string, column: string, value: number): void {
    if (!this.data.has(row)) this.data.set(row, new Map());
    const m = this.data.get(row)!;
    m.set(column, [...(m.get(column) ?? []), value]);
  }

  skip(row: string, column: string, why: string): void {
    if (!this.skips.has(row)) this.skips.set(row, new Map());
    this.skips.get(row)!.set(column, why);
  }

  values(row: string, column: string): number[] {
    return this.data.get(row)?.get(column) ?? [];
  }

  cells(row: string, columns: string[]): Record<string, Cell> {
    return Object.fromEntries(
      columns.map((c): [string, Cell] => {
        const why = this.skips.get(row)?.get(c);
        return [c, why !== undefined ? { skipped: why } : { value: summarize(this.values(row, c)) }];
      }),
    );
  }
}

export type Step = (ctx: EvalContext) => Promise<Section[]>;

/**
 * A row of each column's overhead over integrated, in percent: (median ÷
 * integrated median − 1) × 100. Columns with no samples keep their reason.
 */
export function overheadRow(s: Samples, from: string, columns: string[], name: string, paper?: string): Row {
  const base = summarize(s.values(from, 'integrated'));
  const cells: Record<string, Cell> = {};
  for (const c of columns) {
    const own = s.cells(from, [c])[c]!;
    if ('skipped' in own) cells[c] = own;
    else {
      const r = ratioOf(own.value, base);
      cells[c] = { value: { median: (r.median - 1) * 100, min: (r.min - 1) * 100, max: (r.max - 1) * 100, n: r.n } };
    }
  }
  return { name, unit: '%', better: 'lower', cells, ...(paper ? { paper, headline: true } : {}) };
}
