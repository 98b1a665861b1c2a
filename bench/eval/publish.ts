/**
 * Publishing an evaluation: writes a finished run (report.md, report.json and its
 * charts, from its report.json) to docs/evaluation/, where it is committed, and rewrites the README's
 * evaluation block (between the markers below) with the run's headline table, its
 * machine and its charts. A quick run is refused: its figures are smoke, not results.
 *
 *   npm run bench -- --publish results/<date>
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { machineLine, renderHeadline, sectionCharts, writeReport, type Report } from './report.ts';

export const BEGIN = '<!-- evaluation:begin (written by `npm run bench -- --publish`) -->';
export const END = '<!-- evaluation:end -->';

/** The README block for a report whose files live at `docsDir` (a path relative to the README). */
export function readmeBlock(report: Report, docsDir: string): string {
  // The first chart of each section that has a headline row.
  const charts = report.sections
    .filter((s) => s.rows.some((r) => r.headline))
    .flatMap((s) => sectionCharts(s).slice(0, 1).map((c) => ({ title: s.title, file: c.file })));
  return [
    BEGIN,
    `Measured ${report.date} on ${machineLine(report.machine)}; median of ${report.repeats} runs of ${report.seconds} s.`,
    `The whole report, every table with its spread and notes: [${docsDir}/report.md](${docsDir}/report.md).`,
    '',
    ...renderHeadline(report),
    '',
    ...charts.map((c) => `![${c.title}](${docsDir}/${c.file})`),
    END,
  ].join('\n');
}

/** Replaces the text between the markers; a README without them is an error, not a silent append. */
export function replaceBlock(readme: string, block: string): string {
  const a = readme.indexOf(BEGIN);
  const b = readme.indexOf(END);
  if (a < 0 || b < a) throw new Error(`the README has no evaluation block: add the two lines\n${BEGIN}\n${END}\nwhere the headline table belongs`);
  return readme.slice(0, a) + block + readme.slice(b + END.length);
}

export function publish(runDir: string, opts: { docsDir: string; readme: string }): string[] {
  const reportFile = join(runDir, 'report.json');
  if (!existsSync(reportFile)) throw new Error(`${reportFile} does not exist: run \`npm run bench\` first`);
  const report = JSON.parse(readFileSync(reportFile, 'utf8')) as Report;
  if (report.quick) throw new Error(`${runDir} is a --quick run: publish a full run`);
  // The published folder holds one run: the previous one's charts go. The report and
  // its charts are written again from report.json, so they match this renderer.
  rmSync(opts.docsDir, { recursive: true, force: true });
  const written = writeReport(opts.docsDir, report);
  const rel = relative(join(opts.readme, '..'), opts.docsDir) || '.';
  writeFileSync(opts.readme, replaceBlock(readFileSync(opts.readme, 'utf8'), readmeBlock(report, rel)));
  written.push(opts.readme);
  return written;
}
