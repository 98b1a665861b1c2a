import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatValue, ratioOf, summarize } from '../../bench/eval/stats.ts';
import { renderMarkdown, sectionCharts, writeReport, type Report, type Section } from '../../bench/eval/report.ts';
import { diskOf, probeMachine } from '../../bench/eval/machine.ts';
import { Progress, clock } from '../../bench/eval/progress.ts';
import { Samples, overheadRow } from '../../bench/eval/context.ts';
import { mergeSections } from '../../bench/eval/run.ts';
import { BEGIN, END, publish, replaceBlock } from '../../bench/eval/publish.ts';
import { parseRedisCsv, parseSockperf } from '../../bench/eval/steps/network.ts';
import { tempDir } from '../helpers/tmp.ts';

test('a summary is the median of its finite samples with their min and max', () => {
  assert.deepEqual(summarize([5, 1, 3]), { median: 3, min: 1, max: 5, n: 3 });
  assert.deepEqual(summarize([4, 1, NaN, 2, 3]), { median: 2.5, min: 1, max: 4, n: 4 });
  assert.equal(summarize([]).n, 0);
  assert.ok(Number.isNaN(summarize([NaN]).median));
});

test('a ratio of summaries divides the medians and bounds the spread by the extremes', () => {
  const r = ratioOf(summarize([8, 10, 12]), summarize([4, 5, 6]));
  assert.equal(r.median, 2);
  assert.equal(r.min, 8 / 6);
  assert.equal(r.max, 12 / 4);
  assert.equal(ratioOf(summarize([1]), summarize([])).n, 0);
});

test('figures print with about three significant digits', () => {
  assert.equal(formatValue(27_812), '27.8K');
  assert.equal(formatValue(123_456), '123K');
  assert.equal(formatValue(165.4), '165');
  assert.equal(formatValue(0.774), '0.77');
  assert.equal(formatValue(NaN), '—');
});

const section: Section = {
  id: 'block-latency',
  title: 'Block sync-write latency',
  columns: ['integrated', 'guest/poll', 'process/poll'],
  rows: [
    {
      name: 'sync write QD1 p50',
      unit: 'µs',
      better: 'lower',
      paper: '~130 µs',
      headline: true,
      cells: { integrated: { value: summarize([330, 334, 340]) }, 'guest/poll': { value: summarize([367]) }, 'process/poll': { skipped: 'no process guests in this build' } },
    },
  ],
  notes: ['a note'],
};
const report: Report = {
  date: '2026-11-30',
  quick: true,
  seconds: 1,
  repeats: 3,
  machine: { hostname: 'h', cores: 2, cpuModel: 'cpu', memoryGiB: 4, kernel: 'Linux 6', disk: 'vda', node: 'v20', engine: 'io_uring' },
  sections: [section],
};

test('the report shows medians with their spread, skipped cells with their reason, and the paper column', () => {
  const md = renderMarkdown(report);
  assert.match(md, /\| sync write QD1 p50 \(µs, lower is better\) \| 334 \(330–340\) \| 367 \| n\/a \[1\] \| ~130 µs \|/);
  assert.match(md, /\[1\] no process guests in this build/);
  assert.match(md, /## Headline/);
  assert.match(md, /Machine: h, 2 cores \(cpu\)/);
  assert.match(md, /!\[Block sync-write latency\]\(block-latency\.svg\)/);
});

test('the report writer leaves markdown, JSON without NaN, and one SVG chart per section', (t) => {
  const dir = tempDir(t, 'storvisor-eval-report-');
  const nan: Report = { ...report, sections: [{ ...section, rows: [{ ...section.rows[0]!, cells: { integrated: { value: summarize([]) } } }] }] };
  const files = writeReport(dir, nan);
  assert.ok(files.includes(join(dir, 'report.md')));
  const json = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8'));
  assert.equal(json.sections[0].rows[0].cells.integrated.value.median, null);
  const svg = readFileSync(join(dir, 'block-latency.svg'), 'utf8');
  assert.match(svg, /^<svg /);
});

test('a section gets one chart per unit, with one bar group per row and one series per column', () => {
  const two = sectionCharts({ ...section, rows: [...section.rows, { ...section.rows[0]!, name: 'rate', unit: 'IOPS' }] });
  assert.deepEqual(two.map((c) => c.file), ['block-latency.svg', 'block-latency-2.svg']);
  assert.match(two[1]!.svg, /rate/);
  const svg = sectionCharts(section)[0]!.svg;
  assert.match(svg, /sync write QD1 p50/);
  for (const c of section.columns) assert.ok(svg.includes(c), c);
  assert.match(svg, /334 µs/);
});

test('the machine probe names the cores, the kernel and the disk under a directory', () => {
  const m = probeMachine(process.cwd(), 'io_uring engine');
  assert.ok(m.cores >= 1);
  assert.match(m.kernel, /Linux/);
  assert.ok(m.node.startsWith('v'));
  assert.doesNotMatch(diskOf(process.cwd()), /^unknown/);
});

test('the progress line says how far the run is and how long is left', () => {
  const lines: string[] = [];
  const p = new Progress(4, 40, (l) => lines.push(l));
  p.step('block integrated read miss QD1', 10);
  assert.match(lines[0]!, /^\[eval\] 1\/4  25% .* elapsed, ~\S+ left  block integrated read miss QD1$/);
  assert.equal(clock(75), '1m15s');
  assert.equal(clock(3700), '1h01m');
});

test('two steps filling one section merge into one table', () => {
  const a: Section = { id: 'cost', title: 'Cost', columns: ['x'], rows: [{ name: 'r1', unit: 'u', better: 'lower', cells: {} }], notes: ['n1'] };
  const b: Section = { id: 'cost', title: 'Cost', columns: ['x', 'y'], rows: [{ name: 'r2', unit: 'u', better: 'lower', cells: {} }], notes: ['n2'] };
  const [m] = mergeSections([a, b]);
  assert.deepEqual(m!.columns, ['x', 'y']);
  assert.deepEqual(m!.rows.map((r) => r.name), ['r1', 'r2']);
  assert.equal(a.rows.length, 1, 'the inputs are not changed');
});

test('overhead over integrated is a percentage, and a skipped column keeps its reason', () => {
  const s = new Samples();
  s.add('p50', 'integrated', 100);
  s.add('p50', 'guest/poll', 105);
  s.skip('p50', 'process/poll', 'not here');
  const row = overheadRow(s, 'p50', ['integrated', 'guest/poll', 'process/poll'], 'overhead');
  const g = row.cells['guest/poll']!;
  assert.ok('value' in g && Math.abs(g.value.median - 5) < 1e-9);
  assert.deepEqual(row.cells['process/poll'], { skipped: 'not here' });
});

test('redis-benchmark CSV and sockperf output are read', () => {
  const csv = '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"\n"PING_MBULK","9803.92","0.097","0.040","0.095","0.135","0.175","0.615"\n';
  assert.deepEqual(parseRedisCsv(csv), { rps: 9803.92, p50Us: 95 });
  assert.throws(() => parseRedisCsv('ERROR'), /cannot read redis-benchmark/);
  assert.deepEqual(parseSockperf('sockperf: ---> percentile 50.000 =   21.250\n'), { rttUs: 42.5 });
});

test('publishing a full run copies it to the docs folder and rewrites only the README block', (t) => {
  const root = tempDir(t, 'storvisor-eval-publish-');
  const run = join(root, 'results', '2026-11-30');
  writeReport(run, { ...report, quick: false });
  const readme = join(root, 'README.md');
  writeFileSync(readme, `# x\n\nbefore\n\n${BEGIN}\nold table\n${END}\n\nafter\n`);
  const written = publish(run, { docsDir: join(root, 'docs', 'evaluation'), readme });
  assert.ok(written.includes(join(root, 'docs', 'evaluation', 'report.md')));
  assert.ok(existsSync(join(root, 'docs', 'evaluation', 'block-latency.svg')));
  const text = readFileSync(readme, 'utf8');
  assert.doesNotMatch(text, /old table/);
  assert.match(text, /^# x\n\nbefore\n\n/);
  assert.match(text, /\n\nafter\n$/);
  assert.match(text, /Measured 2026-11-30 on h, 2 cores/);
  assert.match(text, /\| sync write QD1 p50 \(µs, lower is better\) \| 334 \(330–340\) \| 367 \| n\/a \[1\] \| ~130 µs \|/);
  assert.match(text, /!\[Block sync-write latency\]\(docs\/evaluation\/block-latency\.svg\)/);
  // Publishing again replaces the block instead of adding a second one.
  publish(run, { docsDir: join(root, 'docs', 'evaluation'), readme });
  assert.equal(readFileSync(readme, 'utf8').split(BEGIN).length, 2);
});

test('publishing refuses a quick run and a README without the block', (t) => {
  const root = tempDir(t, 'storvisor-eval-publish-');
  const quick = join(root, 'quick');
  writeReport(quick, report);
  const readme = join(root, 'README.md');
  writeFileSync(readme, `${BEGIN}\n${END}\n`);
  assert.throws(() => publish(quick, { docsDir: join(root, 'docs'), readme }), /--quick run/);
  assert.throws(() => replaceBlock('# no block\n', 'x'), /no evaluation block/);
});

test('the headline table has only the columns its rows fill', () => {
  const other: Section = { id: 'ablation', title: 'Ablation', columns: ['all on', 'polling off'], rows: [{ name: 'gain', unit: 'x', better: 'higher', cells: { 'all on': { value: summarize([1]) } } }], notes: [] };
  const md = renderMarkdown({ ...report, sections: [section, other] });
  const head = md.split('## Headline')[1]!.split('\n## ')[0]!;
  assert.match(head, /\| {2}\| integrated \| guest\/poll \| process\/poll \| paper \(text\) \|/);
  assert.doesNotMatch(head, /all on/);
});
