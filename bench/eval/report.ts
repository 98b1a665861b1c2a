import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { barChart } from '../lib/chart.ts';
import type { Machine } from './machine.ts';
import { formatValue, type Summary } from './stats.ts';

/** A measured figure, or the reason it could not be measured here. */
export type Cell = { value: Summary } | { skipped: string };

export interface Row {
  name: string;
  unit: string;
  /** Which way is better, for a reader scanning the table. */
  better: 'higher' | 'lower';
  /** The paper's figure, as text taken from the paper. */
  paper?: string;
  cells: Record<string, Cell>;
  /** Shown in the report's headline table. */
  headline?: boolean;
}

export interface Section {
  id: string;
  title: string;
  columns: string[];
  rows: Row[];
  notes: string[];
}

export interface Report {
  date: string;
  quick: boolean;
  seconds: number;
  repeats: number;
  machine: Machine;
  sections: Section[];
}

const PAPER = 'paper (text)';

function cellText(c: Cell | undefined, notes: Map<string, number>): string {
  if (!c) return '';
  if ('skipped' in c) {
    if (!notes.has(c.skipped)) notes.set(c.skipped, notes.size + 1);
    return `n/a [${notes.get(c.skipped)}]`;
  }
  const v = c.value;
  if (!Number.isFinite(v.median)) return '—';
  return v.n > 1 && v.min !== v.max ? `${formatValue(v.median)} (${formatValue(v.min)}–${formatValue(v.max)})` : formatValue(v.median);
}

function table(columns: string[], rows: Row[], withPaper: boolean): { lines: string[]; reasons: Map<string, number> } {
  const reasons = new Map<string, number>();
  const head = ['', ...columns, ...(withPaper ? [PAPER] : [])];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`];
  for (const r of rows) {
    const label = `${r.name} (${r.unit}, ${r.better} is better)`;
    lines.push(`| ${[label, ...columns.map((c) => cellText(r.cells[c], reasons)), ...(withPaper ? [r.paper ?? ''] : [])].join(' | ')} |`);
  }
  return { lines, reasons };
}

/** The rows marked headline, across sections, as one table with its footnotes (no rows: no lines). */
export function renderHeadline(report: Report): string[] {
  const headline = report.sections.flatMap((s) => s.rows.filter((r) => r.headline).map((r) => ({ s, r })));
  if (headline.length === 0) return [];
  // Only columns some headline row fills: the ablation's or the scaling table's columns stay in their own tables.
  const columns = [...new Set(headline.flatMap(({ s }) => s.columns))].filter((c) => headline.some(({ r }) => r.cells[c] !== undefined));
  const { lines, reasons } = table(columns, headline.map(({ r }) => r), true);
  return [...lines, ...(reasons.size ? ['', ...[...reasons].map(([why, n]) => `[${n}] ${why}  `)] : [])];
}

/** One line naming the machine a report was measured on. */
export function machineLine(m: Machine): string {
  return `${m.hostname}, ${m.cores} cores (${m.cpuModel}), ${m.memoryGiB} GiB, ${m.kernel}, disk ${m.disk}, Node ${m.node}, engine ${m.engine}`;
}

export function renderMarkdown(report: Report): string {
  const out: string[] = [
    `# storvisor evaluation${report.quick ? ' (quick)' : ''}`,
    '',
    `${report.date}. Each figure is the median of ${report.repeats} run(s) of ${report.seconds} s, with its spread (min–max) where runs differ. Every ratio compares figures of this one run.`,
    '',
    `Machine: ${machineLine(report.machine)}.`,
    '',
  ];
  const headline = renderHeadline(report);
  if (headline.length > 0) out.push('## Headline', '', ...headline, '');
  for (const s of report.sections) {
    const withPaper = s.rows.some((r) => r.paper);
    const { lines, reasons } = table(s.columns, s.rows, withPaper);
    out.push(`## ${s.title}`, '', ...lines, '');
    for (const [why, n] of reasons) out.push(`[${n}] ${why}  `);
    if (reasons.size) out.push('');
    for (const note of s.notes) out.push(`- ${note}`);
    if (s.notes.length) out.push('');
    for (const c of sectionCharts(s)) out.push(`![${s.title}](${c.file})`);
    out.push('');
  }
  return out.join('\n');
}

/** A section's charts: one per unit among its rows, named `<id>.svg`, then `<id>-2.svg`, ... */
export function sectionCharts(s: Section): Array<{ file: string; svg: string }> {
  const units = [...new Set(s.rows.map((r) => r.unit))];
  return units.map((unit, i) => {
    const rows = s.rows.filter((r) => r.unit === unit);
    const svg = barChart({
      title: units.length > 1 ? `${s.title} (${unit})` : s.title,
      unit,
      groups: rows.map((r) => r.name),
      series: s.columns.map((c) => ({ label: c, values: rows.map((r) => { const x = r.cells[c]; return x && 'value' in x ? x.value.median : NaN; }) })),
    });
    return { file: i === 0 ? `${s.id}.svg` : `${s.id}-${i + 1}.svg`, svg };
  });
}

/** Writes report.md, report.json and a chart per section (SVG, and PNG where rsvg-convert is installed). */
export function writeReport(dir: string, report: Report): string[] {
  mkdirSync(dir, { recursive: true });
  const written = [join(dir, 'report.md'), join(dir, 'report.json')];
  writeFileSync(written[0]!, renderMarkdown(report));
  writeFileSync(written[1]!, JSON.stringify(report, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n');
  const png = spawnSync('sh', ['-c', 'command -v rsvg-convert']).status === 0;
  for (const s of report.sections) {
    for (const c of sectionCharts(s)) {
      const svg = join(dir, c.file);
      writeFileSync(svg, c.svg);
      written.push(svg);
      const pngFile = svg.replace(/\.svg$/, '.png');
      if (png && spawnSync('rsvg-convert', ['-o', pngFile, svg]).status === 0) written.push(pngFile);
    }
  }
  return written;
}
