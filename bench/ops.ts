/**
 * What operating the controller costs, counted rather than raced:
 * - a /status and a /metrics scrape: controller CPU per scrape (all threads),
 *   wall time, bytes, with N guests running (a scrape asks every guest for its
 *   stats over its message port);
 * - a runtime deploy, notification change and undeploy of an nbd-export guest;
 * - a clean stop (what SIGTERM runs) with the guests running.
 *
 *   npm run bench -- ops              (BENCH_SECONDS=4: scrapes for that long)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { request } from 'node:http';
import { parseConfig } from '../src/config/config.ts';
import { Controller } from '../src/controller/controller.ts';
import { startApi } from '../src/api/server.ts';
import { loadOrCreateToken } from '../src/api/token.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const GUESTS = [1, 4, 8];

function get(port: number, token: string, path: string, method = 'GET', body?: unknown): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      { host: '127.0.0.1', port, path, method, headers: { authorization: `Bearer ${token}`, ...(text ? { 'content-type': 'application/json' } : {}) } },
      (res) => {
        let bytes = 0;
        res.on('data', (d: Buffer) => (bytes += d.length));
        res.on('end', () => resolve({ status: res.statusCode!, bytes }));
      },
    );
    req.on('error', reject);
    req.end(text);
  });
}

function cpuUs(): number {
  const c = process.cpuUsage();
  return c.user + c.system;
}

interface Row {
  guests: number;
  statusCpuUs: number;
  statusMs: number;
  statusBytes: number;
  metricsCpuUs: number;
  metricsMs: number;
  metricsBytes: number;
  deployMs: number;
  notifyMs: number;
  undeployMs: number;
  stopMs: number;
}

async function measure(guests: number): Promise<Row> {
  const dataDir = mkdtempSync(join(tmpdir(), 'storvisor-ops-bench-'));
  try {
    const volumes = Array.from({ length: guests + 1 }, (_, i) => ({ name: `v${i}`, sizeMiB: 16 }));
    const functions = Array.from({ length: guests }, (_, i) => ({ name: `g${i}`, function: 'nbd-export', volume: `v${i}` }));
    const c = await Controller.start(parseConfig({ dataDir, cacheMiB: 16, api: null, nbd: null, volumes, functions }, dataDir, {}));
    const token = loadOrCreateToken(dataDir);
    const { server, address } = await startApi(c, { host: '127.0.0.1', port: 0, token });
    const scrape = async (path: string) => {
      for (let i = 0; i < 20; i++) await get(address.port, token, path); // warm up
      let n = 0;
      let bytes = 0;
      const cpu0 = cpuUs();
      const t0 = performance.now();
      while (performance.now() - t0 < (SECONDS * 1000) / 2) {
        bytes = (await get(address.port, token, path)).bytes;
        n++;
      }
      // CPU of the whole process: the client side of these requests is counted too (an upper bound).
      return { cpuUs: (cpuUs() - cpu0) / n, ms: (performance.now() - t0) / n, bytes };
    };
    const status = await scrape('/status');
    const metrics = await scrape('/metrics');
    let t = performance.now();
    const dep = await get(address.port, token, '/functions', 'POST', { name: 'rt', function: 'nbd-export', volume: `v${guests}` });
    if (dep.status !== 201) throw new Error(`deploy answered ${dep.status}`);
    const deployMs = performance.now() - t;
    t = performance.now();
    await get(address.port, token, '/functions/rt/notify', 'POST', { notify: 'poll' });
    const notifyMs = performance.now() - t;
    t = performance.now();
    await get(address.port, token, '/functions/rt', 'DELETE', {});
    const undeployMs = performance.now() - t;
    await new Promise<void>((r) => server.close(() => r()));
    t = performance.now();
    await c.stop();
    const stopMs = performance.now() - t;
    return {
      guests,
      statusCpuUs: status.cpuUs,
      statusMs: status.ms,
      statusBytes: status.bytes,
      metricsCpuUs: metrics.cpuUs,
      metricsMs: metrics.ms,
      metricsBytes: metrics.bytes,
      deployMs,
      notifyMs,
      undeployMs,
      stopMs,
    };
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const rows: Row[] = [];
for (const g of GUESTS) rows.push(await measure(g));
const f = (x: number, d = 0) => x.toFixed(d);
console.log('## Operating costs (nbd-export thread guests, adaptive)\n');
console.log('| guests | /status CPU µs | /status ms | /status KiB | /metrics CPU µs | /metrics ms | /metrics KiB | deploy ms | notify ms | undeploy ms | stop ms |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.guests} | ${f(r.statusCpuUs)} | ${f(r.statusMs, 2)} | ${f(r.statusBytes / 1024, 1)} | ${f(r.metricsCpuUs)} | ${f(r.metricsMs, 2)} | ${f(r.metricsBytes / 1024, 1)} | ${f(r.deployMs)} | ${f(r.notifyMs)} | ${f(r.undeployMs)} | ${f(r.stopMs)} |`,
  );
}
console.log('\nCPU per scrape is the whole process (client side included): an upper bound. stop = Controller.stop(), what SIGTERM runs.');
