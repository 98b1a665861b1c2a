import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fioVerify, nbdUri, startController, waitRunning } from '../helpers/controller.ts';
import { requireTools } from '../helpers/tools.ts';
import { call, startTestApi } from './helpers.ts';
import { prometheus } from '../../src/api/metrics.ts';

/**
 * /metrics follows the Prometheus text format: every family with HELP and
 * TYPE, counters in _total, bytes in _bytes, latencies as histograms with
 * cumulative buckets. promtool (Debian's prometheus package) is the judge.
 */
function promtool(text: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code: code ?? -1, out }));
    p.stdin.end(text);
  });
}

async function liveMetrics(t: { after: (fn: () => unknown) => void }): Promise<string> {
  const c = await startController(t, {
    volumes: [{ name: 'plain', sizeMiB: 8 }, { name: 'g', sizeMiB: 32 }],
    functions: [{ name: 'g0', function: 'nbd-export', volume: 'g', options: { exportName: 'g' } }],
  });
  const api = await startTestApi(t, c);
  const address = await waitRunning(c, 'g0');
  assert.equal((await fioVerify(nbdUri(address, 'g'), 'randwrite', ['--size=4M'])).error, 0);
  const r = await call(api, 'GET', '/metrics', { auth: true });
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return r.text;
}

test('promtool check metrics accepts /metrics of a controller with a guest that has served traffic', async (t) => {
  requireTools('promtool');
  const text = await liveMetrics(t);
  const r = await promtool(text);
  assert.equal(r.code, 0, r.out);
  assert.equal(r.out.trim(), '', `promtool lint findings:\n${r.out}`);
});

test('every family has HELP and TYPE once, counters end in _total, and latency histograms have cumulative buckets ending at +Inf = count', async (t) => {
  const text = await liveMetrics(t);
  const types = new Map<string, string>();
  const helps = new Set<string>();
  for (const line of text.split('\n')) {
    const m = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (m?.[1] === 'TYPE') {
      assert.ok(!types.has(m[2]!), `TYPE twice for ${m[2]}`);
      types.set(m[2]!, m[3]!);
    } else if (m?.[1] === 'HELP') helps.add(m[2]!);
  }
  for (const [name, type] of types) {
    assert.ok(helps.has(name), `${name} has no HELP`);
    if (type === 'counter') assert.match(name, /_total$/, name);
    if (/bytes/.test(name) && type !== 'histogram') assert.match(name, /_bytes(_total)?$/, name);
  }
  assert.equal(types.get('storvisor_queue_latency_seconds'), 'histogram');
  assert.equal(types.get('storvisor_volume_write_latency_seconds'), 'histogram');
  // The guest's write latency: cumulative, non-decreasing, +Inf equal to _count, and the writes fio made.
  const series = '{name="g0",function="nbd-export",deploy="guest",volume="g"';
  const buckets = [...text.matchAll(new RegExp(`^storvisor_queue_latency_seconds_bucket\\${series},le="([^"]+)"\\} (\\d+)$`, 'gm'))].map((m) => [m[1]!, Number(m[2])] as const);
  assert.ok(buckets.length > 10);
  for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i]![1] >= buckets[i - 1]![1], `bucket ${buckets[i]![0]} decreases`);
  assert.equal(buckets.at(-1)![0], '+Inf');
  const count = Number(new RegExp(`^storvisor_queue_latency_seconds_count\\${series}\\} (\\d+)$`, 'm').exec(text)![1]);
  assert.equal(buckets.at(-1)![1], count);
  assert.ok(count >= 1024, `fio wrote 4 MiB in 4 KiB requests through the queue (count ${count})`);
  assert.doesNotMatch(text, /P50Us|P99Us/, 'no quantile gauges: histograms replace them');

  // The Grafana dashboard asks only for families this exposition has (dedup's ratios need a dedup function).
  const dashboard = readFileSync(new URL('../../contrib/grafana/storvisor-dashboard.json', import.meta.url), 'utf8');
  JSON.parse(dashboard);
  const onlyWithDedup = new Set(['storvisor_function_dedup_ratio', 'storvisor_function_compression_ratio', 'storvisor_function_data_reduction_ratio']);
  for (const name of new Set(dashboard.match(/storvisor_[a-z_]+/g))) {
    const family = name.replace(/_bucket$/, '');
    if (onlyWithDedup.has(family)) assert.match(readFileSync(new URL('../../src/api/metrics.ts', import.meta.url), 'utf8'), new RegExp(family.replace('storvisor_function_', "'")));
    else assert.ok(types.has(family), `the dashboard uses ${name}, which /metrics does not have`);
  }
});

test('label values are escaped and non-finite numbers are left out', () => {
  const text = prometheus({
    volumes: [{ name: 'a"b\\c\nd', size: 4096, stats: { reads: NaN } }],
    functions: [],
    cache: {},
    poller: {},
  });
  assert.match(text, /^storvisor_volume_size_bytes\{volume="a\\"b\\\\c\\nd"\} 4096$/m);
  assert.doesNotMatch(text, /NaN/);
});

test("the poller's contention and engine-spin counters are exported", () => {
  const text = prometheus({ volumes: [], functions: [], cache: {}, poller: { contendedSleeps: 3, engineHeldPasses: 5, engineSpinsStopped: 7 } });
  assert.match(text, /^storvisor_poller_contended_sleeps_total 3$/m);
  assert.match(text, /^storvisor_poller_engine_held_passes_total 5$/m);
  assert.match(text, /^storvisor_poller_engine_spins_stopped_total 7$/m);
});
