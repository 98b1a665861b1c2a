import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import type { Report } from '../../bench/eval/report.ts';
import { tempDir } from '../helpers/tmp.ts';

const runner = fileURLToPath(new URL('../../bench/run.ts', import.meta.url));

// The evaluation's --quick form with tiny durations and two columns: it must
// produce a well-formed report with every section and row. Nothing about speed.
test('npm run bench -- --quick writes a report with every row of the table', { timeout: 600_000 }, async (t) => {
  const dir = tempDir(t, 'storvisor-eval-quick-');
  await promisify(execFile)(process.execPath, ['--import', 'tsx', runner, '--quick'], {
    env: { ...process.env, BENCH_SECONDS: '1', BENCH_REPEATS: '1', BENCH_COLUMNS: 'integrated,guest/poll', BENCH_RESULTS: join(dir, 'results'), BENCH_DIR: dir },
    maxBuffer: 16 << 20,
    timeout: 590_000,
  });
  const day = new Date().toISOString().slice(0, 10);
  const out = join(dir, 'results', `${day}-quick`);
  const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as Report;
  const ids = report.sections.map((s) => s.id);
  for (const id of ['block-throughput', 'block-latency', 'cost', 'ablation', 'network', 'stream', 'fileserver', 'fileserver-scaling', 'database', 'dedup']) assert.ok(ids.includes(id), `section ${id} in ${ids.join(', ')}`);
  for (const s of report.sections) {
    assert.doesNotMatch(s.title, /FAILED/, s.notes.join('\n'));
    assert.ok(s.rows.length > 0, `${s.id} has rows`);
    for (const r of s.rows) {
      assert.ok(Object.keys(r.cells).length > 0, `${s.id} / ${r.name} has cells`);
      for (const c of s.columns) {
        const cell = r.cells[c];
        // Every deployment column has a figure or a reason; a peer may be blank on a row about deployments.
        if (['integrated', 'guest/poll'].includes(c)) assert.ok(cell, `${s.id} / ${r.name} / ${c} has a cell`);
        if (!cell) continue;
        // A tool that CI installs must run: only a missing mechanism or peer outside CI's list may skip.
        if ('skipped' in cell) assert.doesNotMatch(cell.skipped, /is not installed \(apt-get install (sockperf|iperf3|nfs-ganesha)/);
      }
    }
  }
  assert.match(readFileSync(join(out, 'report.md'), 'utf8'), /## Headline/);
  assert.match(readFileSync(join(out, 'block-throughput.svg'), 'utf8'), /^<svg /);
});
