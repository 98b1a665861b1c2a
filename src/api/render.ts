import { formatBytes } from '../util/size.ts';
import type { DeploymentStatus } from '../deploy/types.ts';
import { HISTOGRAM_BUCKETS } from '../util/histogram.ts';

/**
 * What the CLI prints for people: pure functions from API answers to text, so
 * their output is checked against fixed fixtures (test/cli/fixtures/). No
 * colours and no terminal control here; `storvisor top` adds the screen
 * clearing around renderTop().
 */

/** The /status volume entry as the controller reports it. */
export interface VolumeInfo {
  name: string;
  size: number;
  usedBytes?: number;
  open?: boolean;
  virtual?: boolean;
  provider?: string;
  stats?: Record<string, number>;
  latency?: { read: HistogramInfo; write: HistogramInfo };
}

export interface HistogramInfo {
  buckets: number[];
  count: number;
  sumUs: number;
}

export interface StatusInfo {
  volumes: VolumeInfo[];
  functions: DeploymentStatus[];
  cache: Record<string, number>;
  poller: Record<string, number>;
  engine?: Record<string, unknown>;
  nbd?: ({ address?: { host: string; port: number } } & Record<string, unknown>) | null;
  process?: Record<string, number>;
}

/** Columns separated by two spaces; a column is right-aligned when its name is in `right`. */
export function table(headers: string[], rows: string[][], right: string[] = []): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (right.includes(headers[i]!) ? c.padStart(widths[i]!) : i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

function usersOf(name: string, functions: DeploymentStatus[]): string {
  const users = functions.filter((f) => f.volume === name).map((f) => f.name);
  return users.length ? users.join(',') : '-';
}

function volumeState(v: VolumeInfo): string {
  if (v.virtual) return `virtual (${v.provider ?? '?'})`;
  return v.open ? 'open' : 'closed';
}

export function renderVolumes(volumes: VolumeInfo[], functions: DeploymentStatus[]): string {
  if (volumes.length === 0) return 'no volumes (storvisor volume create NAME SIZE)\n';
  return table(
    ['NAME', 'SIZE', 'USED', 'STATE', 'USED BY'],
    volumes.map((v) => [v.name, formatBytes(v.size), v.usedBytes === undefined ? '-' : formatBytes(v.usedBytes), volumeState(v), usersOf(v.name, functions)]),
    ['SIZE', 'USED'],
  );
}

function address(f: DeploymentStatus): string {
  return f.address ? `${f.address.host}:${f.address.port}` : '-';
}

export function renderFunctions(functions: DeploymentStatus[]): string {
  if (functions.length === 0) return 'no functions deployed (storvisor function deploy NAME FUNCTION VOLUME)\n';
  const rows = functions.map((f) => [f.name, f.function, f.deploy, f.notify ?? '-', f.volume, f.state, address(f), String(f.restarts)]);
  let out = table(['NAME', 'FUNCTION', 'DEPLOY', 'NOTIFY', 'VOLUME', 'STATE', 'ADDRESS', 'RESTARTS'], rows, ['RESTARTS']);
  for (const f of functions) if (f.lastError && f.state !== 'running') out += `${f.name}: ${f.lastError}\n`;
  return out;
}

/** `storvisor status`: the tables, then one line each for the poller, the cache, the engine and the NBD export. */
export function renderStatus(s: StatusInfo): string {
  const lines: string[] = [];
  lines.push('VOLUMES', renderVolumes(s.volumes, s.functions));
  lines.push('FUNCTIONS', renderFunctions(s.functions));
  const c = s.cache;
  const lookups = (c.hits ?? 0) + (c.misses ?? 0);
  lines.push(`cache    ${formatBytes((c.usedBlocks ?? 0) * 4096)} of ${formatBytes((c.capacityBlocks ?? 0) * 4096)} used, hit ratio ${lookups ? pct(c.hits! / lookups) : '-'} (${c.hits ?? 0} hits, ${c.misses ?? 0} misses)`);
  const p = s.poller;
  lines.push(`poller   ${p.spinning ?? 0} queue(s) spinning, ${p.requests ?? 0} requests, ${p.sleeps ?? 0} sleeps, ${p.wakeups ?? 0} wake-ups`);
  if (s.engine) lines.push(`engine   ${String(s.engine.description ?? s.engine.engine)}, ${s.engine.inFlight ?? 0} in flight`);
  if (s.nbd?.address) lines.push(`nbd      nbd://${s.nbd.address.host}:${s.nbd.address.port}/  ${s.nbd.activeConnections ?? 0} connection(s)`);
  return lines.join('\n') + '\n';
}

// ---- storvisor top -------------------------------------------------------

function pct(x: number): string {
  return `${(x * 100).toFixed(x >= 0.995 || x === 0 ? 0 : 1)}%`;
}

function us(x: number): string {
  if (x < 1000) return `${Math.round(x)}µs`;
  if (x < 1e6) return `${(x / 1000).toFixed(x < 1e4 ? 1 : 0)}ms`;
  return `${(x / 1e6).toFixed(1)}s`;
}

function rate(x: number): string {
  if (x >= 1e6) return `${(x / 1e6).toFixed(1)}M`;
  if (x >= 1e4) return `${(x / 1e3).toFixed(0)}k`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)}k`;
  return x.toFixed(0);
}

function mbps(bytesPerSecond: number): string {
  return (bytesPerSecond / 1e6).toFixed(1);
}

/** Upper bound (µs) of the bucket holding quantile q of the requests between two cumulative histograms. */
export function intervalQuantile(prev: HistogramInfo | undefined, cur: HistogramInfo | undefined, q: number): number | undefined {
  if (!cur) return undefined;
  const count = cur.count - (prev?.count ?? 0);
  if (count <= 0) return undefined;
  const target = q * count;
  let seen = 0;
  for (let i = 0; i < HISTOGRAM_BUCKETS; i++) {
    seen += (cur.buckets[i] ?? 0) - (prev?.buckets[i] ?? 0);
    if (seen >= target) return 2 ** i;
  }
  return 2 ** (HISTOGRAM_BUCKETS - 1);
}

function delta(prev: Record<string, number> | undefined, cur: Record<string, number> | undefined, key: string): number {
  return Math.max(0, (cur?.[key] ?? 0) - (prev?.[key] ?? 0));
}

/** A function's request and byte counters: its guest queue's if it has one, else what the function counts. */
function ioKeys(f: DeploymentStatus): { requests: string; read: string; written: string; depth: string } {
  return f.stats.queue_requests !== undefined
    ? { requests: 'queue_requests', read: 'queue_bytesRead', written: 'queue_bytesWritten', depth: 'queue_inFlight' }
    : { requests: 'fn_requests', read: 'fn_bytesRead', written: 'fn_bytesWritten', depth: 'fn_inflightRequests' };
}

/** One histogram of a volume's reads and writes together. */
function merged(l: { read: HistogramInfo; write: HistogramInfo } | undefined): HistogramInfo | undefined {
  if (!l) return undefined;
  return { buckets: l.read.buckets.map((n, i) => n + (l.write.buckets[i] ?? 0)), count: l.read.count + l.write.count, sumUs: l.read.sumUs + l.write.sumUs };
}

function ratio(x: number | undefined): string {
  return x === undefined || !Number.isFinite(x) ? '-' : `${x.toFixed(2)}x`;
}

/**
 * One screen of `storvisor top` from two /status samples `seconds` apart:
 * rates and latency quantiles are over that interval (quantiles from the
 * difference of the cumulative histograms), never since start.
 */
export function renderTop(prev: StatusInfo, cur: StatusInfo, seconds: number): string {
  const dt = seconds > 0 ? seconds : 1;
  const out: string[] = [];
  const pp = prev.process ?? {};
  const cp = cur.process ?? {};
  const cpu = (delta(pp, cp, 'cpuUserSeconds') + delta(pp, cp, 'cpuSystemSeconds')) / dt;
  const active = delta(pp, cp, 'eventLoopActiveMs');
  const idle = delta(pp, cp, 'eventLoopIdleMs');
  const busy = delta(prev.poller, cur.poller, 'busyPasses');
  const idlePasses = delta(prev.poller, cur.poller, 'idlePasses');
  const uptime = Math.floor(cp.uptimeSeconds ?? 0);
  const up = `${Math.floor(uptime / 3600)}h${String(Math.floor((uptime % 3600) / 60)).padStart(2, '0')}m${String(uptime % 60).padStart(2, '0')}s`;
  out.push(`storvisor top — pid ${cp.pid ?? '?'}, up ${up}, every ${dt.toFixed(1)} s`);
  out.push(
    `cpu ${pct(cpu)} of a core (user ${pct(delta(pp, cp, 'cpuUserSeconds') / dt)}, system ${pct(delta(pp, cp, 'cpuSystemSeconds') / dt)}), rss ${formatBytes(cp.residentBytes ?? 0)}`,
  );
  out.push(
    `poller awake ${active + idle > 0 ? pct(active / (active + idle)) : '-'} (spinning or working), asleep ${active + idle > 0 ? pct(idle / (active + idle)) : '-'}; ` +
      `passes with work ${busy + idlePasses > 0 ? pct(busy / (busy + idlePasses)) : '-'}; ${cur.poller.spinning ?? 0} queue(s) spinning`,
  );
  const hits = delta(prev.cache, cur.cache, 'hits');
  const misses = delta(prev.cache, cur.cache, 'misses');
  out.push(`cache hit ${hits + misses > 0 ? pct(hits / (hits + misses)) : '-'}, ${formatBytes((cur.cache.usedBlocks ?? 0) * 4096)} of ${formatBytes((cur.cache.capacityBlocks ?? 0) * 4096)}`);
  out.push('');

  const before = new Map(prev.functions.map((f) => [f.name, f]));
  const volBefore = new Map(prev.volumes.map((v) => [v.name, v]));
  const volNow = new Map(cur.volumes.map((v) => [v.name, v]));
  const frows = cur.functions.map((f) => {
    const p = before.get(f.name);
    const k = ioKeys(f);
    const iops = delta(p?.stats, f.stats, k.requests) / dt;
    const bytes = (delta(p?.stats, f.stats, k.read) + delta(p?.stats, f.stats, k.written)) / dt;
    // A guest's queue latency; without a queue (integrated, gateway), its volume's reads and writes.
    const lat0 = f.latency ? p?.latency : merged(volBefore.get(f.volume)?.latency);
    const lat1 = f.latency ?? merged(volNow.get(f.volume)?.latency);
    const p50 = intervalQuantile(lat0, lat1, 0.5);
    const p99 = intervalQuantile(lat0, lat1, 0.99);
    return [
      f.name,
      f.function,
      f.deploy === 'guest' ? `guest/${f.notify ?? '?'}` : f.deploy,
      f.state,
      rate(iops),
      mbps(bytes),
      p50 === undefined ? '-' : us(p50),
      p99 === undefined ? '-' : us(p99),
      String(f.stats[k.depth] ?? '-'),
      String(f.restarts),
    ];
  });
  out.push(cur.functions.length ? table(['FUNCTION', 'KIND', 'DEPLOY', 'STATE', 'IOPS', 'MB/s', 'P50', 'P99', 'QD', 'RESTARTS'], frows, ['IOPS', 'MB/s', 'P50', 'P99', 'QD', 'RESTARTS']) : 'no functions\n');

  const vbefore = new Map(prev.volumes.map((v) => [v.name, v]));
  const vrows = cur.volumes.map((v) => {
    const p = vbefore.get(v.name);
    const iops = (delta(p?.stats, v.stats, 'reads') + delta(p?.stats, v.stats, 'writes')) / dt;
    const bytes = (delta(p?.stats, v.stats, 'bytesRead') + delta(p?.stats, v.stats, 'bytesWritten')) / dt;
    // Data reduction is reported by the function that stores on this volume (dedup, compression).
    const reducer = cur.functions.find((f) => f.volume === v.name && (f.stats.fn_dedupRatio !== undefined || f.stats.fn_compressionRatio !== undefined));
    return [
      v.name,
      formatBytes(v.size),
      v.usedBytes === undefined ? '-' : formatBytes(v.usedBytes),
      v.usedBytes === undefined || v.size === 0 ? '-' : pct(v.usedBytes / v.size),
      v.stats ? rate(iops) : '-',
      v.stats ? mbps(bytes) : '-',
      ratio(reducer?.stats.fn_dedupRatio),
      ratio(reducer?.stats.fn_compressionRatio),
    ];
  });
  out.push(cur.volumes.length ? table(['VOLUME', 'SIZE', 'USED', 'USE%', 'IOPS', 'MB/s', 'DEDUP', 'COMPR'], vrows, ['SIZE', 'USED', 'USE%', 'IOPS', 'MB/s', 'DEDUP', 'COMPR']) : 'no volumes\n');
  return out.join('\n');
}
