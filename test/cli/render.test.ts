import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { renderFunctions, renderStatus, renderTop, renderVolumes, intervalQuantile, table } from '../../src/api/render.ts';
import { before, after } from './fixtures/samples.ts';

/**
 * The CLI's human output, checked against fixed fixtures (test/cli/fixtures/*.txt).
 * After an intended change of the output: UPDATE_FIXTURES=1 and review the diff.
 */
function fixture(name: string, actual: string): void {
  const path = new URL(`./fixtures/${name}`, import.meta.url);
  if (process.env.UPDATE_FIXTURES === '1') writeFileSync(path, actual);
  assert.equal(actual, readFileSync(path, 'utf8'), `${name} differs from its fixture`);
}

test('volume list prints one aligned row per volume with size, space used, state and users', () => {
  fixture('volumes.txt', renderVolumes(after.volumes, after.functions));
});

test('function list prints state, address and restarts, and the reason a function is down', () => {
  fixture('functions.txt', renderFunctions(after.functions));
});

test('status prints the volume and function tables and one line each for cache, poller, engine and NBD', () => {
  fixture('status.txt', renderStatus(after));
});

test('top renders per-function IOPS, MB/s, interval p50/p99, queue depth and restarts, per-volume use and ratios, CPU and poller share from two samples', () => {
  fixture('top.txt', renderTop(before, after, 1));
});

test('top over an interval with no requests shows no latency rather than the latency since start', () => {
  const screen = renderTop(after, after, 1);
  assert.match(screen, /^nbd0 +nbd-export +guest\/adaptive +running +0 +0\.0 +- +- +16 +1$/m);
});

test('empty lists say what to do instead of printing a header alone', () => {
  assert.equal(renderVolumes([], []), 'no volumes (storvisor volume create NAME SIZE)\n');
  assert.equal(renderFunctions([]), 'no functions deployed (storvisor function deploy NAME FUNCTION VOLUME)\n');
});

test('interval quantiles come from the difference of two cumulative histograms', () => {
  const h = (b: Record<number, number>) => {
    const buckets = new Array(32).fill(0) as number[];
    for (const [i, n] of Object.entries(b)) buckets[Number(i)] = n;
    return { buckets, count: buckets.reduce((a, x) => a + x, 0), sumUs: 0 };
  };
  // 1,000 slow requests long ago, then 100 fast ones: the interval's p99 is fast.
  const a = h({ 20: 1000 });
  const b = h({ 20: 1000, 4: 99, 6: 1 });
  assert.equal(intervalQuantile(a, b, 0.5), 16);
  assert.equal(intervalQuantile(a, b, 0.99), 16);
  assert.equal(intervalQuantile(a, b, 1), 64);
  assert.equal(intervalQuantile(b, b, 0.5), undefined);
  assert.equal(table(['A', 'N'], [['x', '1'], ['long', '22']], ['N']), 'A      N\nx      1\nlong  22\n');
});

test('top shows a function without a guest queue with its volume latency over the interval', () => {
  const lat = (n: number) => {
    const read = { buckets: new Array(32).fill(0) as number[], count: n, sumUs: 0 };
    read.buckets[8] = n;
    return { read, write: { buckets: new Array(32).fill(0) as number[], count: 0, sumUs: 0 } };
  };
  const fn = { name: 'i0', function: 'nbd-export', volume: 'db', deploy: 'integrated' as const, state: 'running' as const, address: null, restarts: 0, lastError: null, stats: { fn_requests: 0 } };
  const a = { ...before, functions: [{ ...fn }], volumes: [{ ...before.volumes[0]!, latency: lat(10) }] };
  const b = { ...after, functions: [{ ...fn, stats: { fn_requests: 500 } }], volumes: [{ ...after.volumes[0]!, latency: lat(510) }] };
  assert.match(renderTop(a, b, 1), /^i0 +nbd-export +integrated +running +500 +\S+ +256µs +256µs +- +0$/m);
});
