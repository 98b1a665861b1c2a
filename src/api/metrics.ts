import type { DeploymentStatus } from '../deploy/types.ts';
import type { VolumeInfo } from './render.ts';
import { HISTOGRAM_BUCKETS } from '../util/histogram.ts';

/**
 * /status rendered as Prometheus text exposition (format 0.0.4), to its
 * specification: every family once, with # HELP and # TYPE before its
 * samples; counters end in `_total`, byte counts in `_bytes`, durations are in
 * seconds; latencies are histograms (`_bucket{le=…}` cumulative, `_sum`,
 * `_count`), so they can be summed across volumes and functions and turned
 * into any quantile with histogram_quantile(). `promtool check metrics` passes
 * on the output (test/api/metrics.test.ts).
 *
 * Label values are escaped (\\, \", \n). Statistics a function reports that
 * have no family of their own here go to `storvisor_function_stat{stat=…}` as
 * gauges, so a new function statistic never produces an unlinted name.
 */
type Type = 'counter' | 'gauge' | 'histogram';
type Labels = Record<string, string>;
/** The /status volume entry (the CLI's tables read the same shape). */
type VolumeStatus = VolumeInfo;
export interface HistogramData {
  buckets: ArrayLike<number>;
  count: number;
  sumUs: number;
}

/** Histogram bucket i holds [2^(i-1), 2^i) µs; exposed up to 2^HIGHEST_LE µs (about 16.8 s), the rest in +Inf. */
const HIGHEST_LE = 24;

class Exposition {
  private readonly families = new Map<string, { type: Type; help: string; lines: string[] }>();

  private family(name: string, type: Type, help: string): string[] {
    let f = this.families.get(name);
    if (!f) this.families.set(name, (f = { type, help, lines: [] }));
    return f.lines;
  }

  add(name: string, type: 'counter' | 'gauge', help: string, labels: Labels | string, value: unknown): void {
    if (typeof value !== 'number' || !Number.isFinite(value)) return;
    this.family(name, type, help).push(`${name}${typeof labels === 'string' ? labels : labelText(labels)} ${value}`);
  }

  histogram(name: string, help: string, labels: Labels, h: HistogramData | undefined): void {
    if (!h) return;
    const lines = this.family(name, 'histogram', help);
    const inner = labelText(labels).slice(1, -1);
    const prefix = `${name}_bucket{${inner ? `${inner},` : ''}le="`;
    let cumulative = 0;
    for (let i = 0; i < HISTOGRAM_BUCKETS && i <= HIGHEST_LE; i++) {
      cumulative += h.buckets[i] ?? 0;
      lines.push(`${prefix}${LE[i]}"} ${cumulative}`);
    }
    lines.push(`${prefix}+Inf"} ${h.count}`);
    lines.push(`${name}_sum${labelText(labels)} ${h.sumUs / 1e6}`);
    lines.push(`${name}_count${labelText(labels)} ${h.count}`);
  }

  text(): string {
    const out: string[] = [];
    for (const [name, f] of this.families) {
      if (f.lines.length === 0) continue;
      out.push(`# HELP ${name} ${f.help}`, `# TYPE ${name} ${f.type}`, ...f.lines);
    }
    return out.join('\n') + '\n';
  }
}

/** The `le` of bucket i: its upper bound, 2^i µs, in seconds. */
const LE = Array.from({ length: HIGHEST_LE + 1 }, (_, i) => String(2 ** i / 1e6));

/** Formatted once per label set (a volume's or a function's labels serve dozens of samples). */
const labelCache = new WeakMap<Labels, string>();

function labelText(labels: Labels): string {
  const hit = labelCache.get(labels);
  if (hit !== undefined) return hit;
  const text = formatLabels(labels);
  labelCache.set(labels, text);
  return text;
}

function formatLabels(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

/** [stat key, family suffix, type, help] for the statistics every TCP-serving front end reports (NBD export and functions). */
const SERVICE_STATS: Array<[string, string, 'counter' | 'gauge', string]> = [
  ['connections', 'connections_total', 'counter', 'client connections accepted'],
  ['activeConnections', 'active_connections', 'gauge', 'client connections open now'],
  ['requests', 'requests_total', 'counter', 'client requests served'],
  ['reads', 'reads_total', 'counter', 'client read requests'],
  ['writes', 'writes_total', 'counter', 'client write requests'],
  ['bytesRead', 'read_bytes_total', 'counter', 'bytes read by clients'],
  ['bytesWritten', 'written_bytes_total', 'counter', 'bytes written by clients'],
  ['errors', 'errors_total', 'counter', 'client requests answered with an error'],
  ['refusedConnections', 'refused_connections_total', 'counter', 'connections refused at the connection limit'],
  ['timedOutConnections', 'timed_out_connections_total', 'counter', 'connections closed for being idle too long'],
  ['limitClosedConnections', 'limit_closed_connections_total', 'counter', 'connections closed for exceeding a per-connection limit'],
  ['bufferedBytes', 'buffered_bytes', 'gauge', 'request bytes buffered from clients now'],
  ['queuedBytes', 'queued_bytes', 'gauge', 'reply bytes queued to clients now'],
  ['inflightRequests', 'in_flight_requests', 'gauge', 'client requests being served now'],
  ['inflightBytes', 'in_flight_bytes', 'gauge', 'bytes of client requests being served now'],
];

/** Data-reduction statistics (dedup and compression functions). */
const REDUCTION_STATS: Array<[string, string, 'counter' | 'gauge', string]> = [
  ['dedupRatio', 'dedup_ratio', 'gauge', 'logical blocks written per distinct block stored'],
  ['compressionRatio', 'compression_ratio', 'gauge', 'bytes before compression per byte stored'],
  ['dataReductionRatio', 'data_reduction_ratio', 'gauge', 'logical bytes used per physical byte used'],
  ['logicalSize', 'logical_size_bytes', 'gauge', 'size of the volume the function exports'],
  ['logicalBytesUsed', 'logical_used_bytes', 'gauge', 'logical bytes holding data'],
  ['physicalBytesUsed', 'physical_used_bytes', 'gauge', 'physical bytes used on the backing volume'],
  ['physicalBytesFree', 'physical_free_bytes', 'gauge', 'physical bytes free on the backing volume'],
];

const QUEUE_STATS: Array<[string, string, 'counter' | 'gauge', string]> = [
  ['requests', 'requests_total', 'counter', 'virtio-blk requests the controller took from the guest queue'],
  ['reads', 'reads_total', 'counter', 'guest queue read requests'],
  ['writes', 'writes_total', 'counter', 'guest queue write requests'],
  ['flushes', 'flushes_total', 'counter', 'guest queue flush requests'],
  ['discards', 'discards_total', 'counter', 'guest queue discard requests'],
  ['writeZeroes', 'write_zeroes_total', 'counter', 'guest queue write-zeroes requests'],
  ['errors', 'errors_total', 'counter', 'guest queue requests answered IOERR'],
  ['unsupported', 'unsupported_total', 'counter', 'guest queue requests answered UNSUPP'],
  ['bytesRead', 'read_bytes_total', 'counter', 'bytes read through the guest queue'],
  ['bytesWritten', 'written_bytes_total', 'counter', 'bytes written through the guest queue'],
  ['inFlight', 'depth', 'gauge', 'guest queue requests in flight now (queue depth)'],
  ['maxInFlight', 'max_depth', 'gauge', 'most guest queue requests ever in flight at once'],
];

const DRIVER_STATS: Array<[string, string, 'counter' | 'gauge', string]> = [
  ['submitted', 'submitted_total', 'counter', 'requests the guest driver submitted'],
  ['completed', 'completed_total', 'counter', 'completions the guest driver reaped'],
  ['kicks', 'kicks_total', 'counter', 'doorbell kicks the guest driver sent (wake-ups of the controller)'],
  ['interruptsWaited', 'waits_total', 'counter', 'times the guest driver slept waiting for a completion'],
  ['spins', 'spins_total', 'counter', 'guest driver polling passes over the used ring'],
  ['waitTimeouts', 'wait_timeouts_total', 'counter', 'guest driver sleeps that ended by timeout'],
];

export interface MetricsInput {
  volumes: unknown[];
  functions: DeploymentStatus[];
  cache: unknown;
  poller: unknown;
  engine?: unknown;
  controller?: unknown;
  nbd?: unknown;
  process?: unknown;
}

export function prometheus(status: MetricsInput): string {
  const e = new Exposition();
  for (const v of status.volumes as VolumeStatus[]) volumeMetrics(e, v);
  for (const f of status.functions) functionMetrics(e, f);

  const cache = (status.cache ?? {}) as Record<string, number>;
  e.add('storvisor_cache_capacity_blocks', 'gauge', 'read cache capacity, 4 KiB blocks', {}, cache.capacityBlocks);
  e.add('storvisor_cache_used_blocks', 'gauge', 'read cache blocks holding data', {}, cache.usedBlocks);
  e.add('storvisor_cache_hits_total', 'counter', 'read cache hits', {}, cache.hits);
  e.add('storvisor_cache_misses_total', 'counter', 'read cache misses', {}, cache.misses);
  e.add('storvisor_cache_inserts_total', 'counter', 'blocks inserted into the read cache', {}, cache.inserts);
  e.add('storvisor_cache_evictions_total', 'counter', 'blocks evicted from the read cache', {}, cache.evictions);

  const p = (status.poller ?? {}) as Record<string, number>;
  e.add('storvisor_poller_iterations_total', 'counter', 'poller passes over every guest queue', {}, p.iterations);
  e.add('storvisor_poller_passes_total', 'counter', 'poller passes, by whether they found work (busy) or only spun (idle)', { result: 'busy' }, p.busyPasses);
  e.add('storvisor_poller_passes_total', 'counter', 'poller passes, by whether they found work (busy) or only spun (idle)', { result: 'idle' }, p.idlePasses);
  e.add('storvisor_poller_requests_total', 'counter', 'guest requests the poller dispatched', {}, p.requests);
  e.add('storvisor_poller_sleeps_total', 'counter', 'times a queue stopped spinning and armed its doorbell', {}, p.sleeps);
  e.add('storvisor_poller_wakeups_total', 'counter', 'times a doorbell kick woke a sleeping queue', {}, p.wakeups);
  e.add('storvisor_poller_completions_polled_total', 'counter', 'backend completions reaped by the poller', {}, p.completionsPolled);
  e.add('storvisor_poller_contended_sleeps_total', 'counter', 'sleeps taken because other threads wanted the poller\'s core', {}, p.contendedSleeps);
  e.add('storvisor_poller_engine_held_passes_total', 'counter', 'passes spent spinning for short io_uring I/O a queue\'s own waits would not spin for', {}, p.engineHeldPasses);
  e.add('storvisor_poller_engine_spins_stopped_total', 'counter', 'spins for short io_uring I/O stopped: contended, or past the bound without a completion', {}, p.engineSpinsStopped);
  e.add('storvisor_poller_spinning_queues', 'gauge', 'guest queues being spun on now', {}, p.spinning);

  const en = (status.engine ?? {}) as Record<string, unknown>;
  if (typeof en.engine === 'string') e.add('storvisor_engine_info', 'gauge', 'the backend I/O engine in use (value 1)', { engine: en.engine }, 1);
  e.add('storvisor_engine_submitted_total', 'counter', 'requests submitted to the backend engine', {}, en.submitted);
  e.add('storvisor_engine_completed_total', 'counter', 'requests the backend engine completed', {}, en.completed);
  e.add('storvisor_engine_submit_calls_total', 'counter', 'submission system calls made by the backend engine', {}, en.submits);
  e.add('storvisor_engine_reaped_total', 'counter', 'completions reaped, by whether the poller found them (polling) or was woken for them (woken)', { how: 'polling' }, en.reapedPolling);
  e.add('storvisor_engine_reaped_total', 'counter', 'completions reaped, by whether the poller found them (polling) or was woken for them (woken)', { how: 'woken' }, en.reapedWoken);
  e.add('storvisor_engine_in_flight', 'gauge', 'backend requests in flight now', {}, en.inFlight);
  e.add('storvisor_engine_max_in_flight', 'gauge', 'most backend requests ever in flight at once', {}, en.maxInFlight);

  const nbd = status.nbd as Record<string, number> | null | undefined;
  if (nbd) for (const [k, suffix, type, help] of SERVICE_STATS) e.add(`storvisor_nbd_${suffix}`, type, `controller NBD export: ${help}`, {}, nbd[k]);

  const ctl = status.controller as Record<string, number> | undefined;
  if (ctl) e.add('storvisor_controller_stop_failures_total', 'counter', 'volumes, functions or servers that failed to stop cleanly (each is logged)', {}, ctl.stopFailures);

  const pr = status.process as Record<string, number> | undefined;
  if (pr) {
    e.add('storvisor_process_cpu_seconds_total', 'counter', 'CPU time of the controller process, all threads (guests included)', { mode: 'user' }, pr.cpuUserSeconds);
    e.add('storvisor_process_cpu_seconds_total', 'counter', 'CPU time of the controller process, all threads (guests included)', { mode: 'system' }, pr.cpuSystemSeconds);
    e.add('storvisor_process_resident_memory_bytes', 'gauge', 'resident memory of the controller process', {}, pr.residentBytes);
    e.add('storvisor_process_heap_used_bytes', 'gauge', 'V8 heap in use on the main thread', {}, pr.heapUsedBytes);
    e.add('storvisor_process_uptime_seconds', 'gauge', 'seconds since the controller process started', {}, pr.uptimeSeconds);
    const elu = 'main event loop time (the poller runs there): active = spinning or working, idle = asleep';
    e.add('storvisor_event_loop_seconds_total', 'counter', elu, { state: 'active' }, (pr.eventLoopActiveMs ?? NaN) / 1000);
    e.add('storvisor_event_loop_seconds_total', 'counter', elu, { state: 'idle' }, (pr.eventLoopIdleMs ?? NaN) / 1000);
  }
  return e.text();
}

function volumeMetrics(e: Exposition, v: VolumeStatus): void {
  const l = { volume: v.name };
  e.add('storvisor_volume_size_bytes', 'gauge', 'volume size', l, v.size);
  e.add('storvisor_volume_used_bytes', 'gauge', 'bytes the volume occupies on disk (thin volumes grow as they are written)', l, v.usedBytes);
  e.add('storvisor_volume_open', 'gauge', '1 while the volume is open (a function or an NBD client uses it)', l, v.virtual ? 1 : v.open ? 1 : 0);
  const s = v.stats;
  if (s) {
    e.add('storvisor_volume_reads_total', 'counter', 'read requests to the volume', l, s.reads);
    e.add('storvisor_volume_writes_total', 'counter', 'write requests to the volume', l, s.writes);
    e.add('storvisor_volume_flushes_total', 'counter', 'flush requests to the volume', l, s.flushes);
    e.add('storvisor_volume_trims_total', 'counter', 'trim requests to the volume', l, s.trims);
    e.add('storvisor_volume_zeroes_total', 'counter', 'write-zeroes requests to the volume', l, s.zeroes);
    e.add('storvisor_volume_errors_total', 'counter', 'volume requests that failed', l, s.errors);
    e.add('storvisor_volume_read_bytes_total', 'counter', 'bytes read from the volume', l, s.bytesRead);
    e.add('storvisor_volume_written_bytes_total', 'counter', 'bytes written to the volume', l, s.bytesWritten);
    e.add('storvisor_volume_in_flight', 'gauge', 'volume requests in flight now', l, s.inFlight);
    e.add('storvisor_backend_reads_total', 'counter', 'reads the volume issued to its backing file (cache misses)', l, s.backend_reads);
    e.add('storvisor_backend_writes_total', 'counter', 'writes the volume issued to its backing file', l, s.backend_writes);
    e.add('storvisor_backend_read_bytes_total', 'counter', 'bytes read from the backing file', l, s.backend_bytesRead);
    e.add('storvisor_backend_written_bytes_total', 'counter', 'bytes written to the backing file', l, s.backend_bytesWritten);
    e.add('storvisor_backend_syncs_total', 'counter', 'fsyncs of the backing file', l, s.backend_syncs);
    e.add('storvisor_backend_errors_total', 'counter', 'backing file requests that failed', l, s.backend_errors);
    e.add('storvisor_backend_in_flight', 'gauge', 'backing file requests in flight now', l, s.backend_inFlight);
  }
  e.histogram('storvisor_volume_read_latency_seconds', 'volume read latency, request to completion', l, v.latency?.read);
  e.histogram('storvisor_volume_write_latency_seconds', 'volume write latency, request to completion (synchronous writes included)', l, v.latency?.write);
}

function functionMetrics(e: Exposition, f: DeploymentStatus): void {
  const l = { name: f.name, function: f.function, deploy: f.deploy, volume: f.volume };
  e.add('storvisor_function_info', 'gauge', 'a function instance, its state and notification mode (value 1)', { ...l, state: f.state, notify: f.notify ?? '' }, 1);
  e.add('storvisor_function_up', 'gauge', '1 while the function is running', l, f.state === 'running' ? 1 : 0);
  e.add('storvisor_function_restarts_total', 'counter', 'times the function was restarted after a crash', l, f.restarts);
  const fn: Record<string, number> = {};
  const queue: Record<string, number> = {};
  const driver: Record<string, number> = {};
  for (const [k, v] of Object.entries(f.stats)) {
    if (k.startsWith('fn_')) fn[k.slice(3)] = v;
    else if (k.startsWith('queue_')) queue[k.slice(6)] = v;
    else if (k.startsWith('driver_')) driver[k.slice(7)] = v;
    else fn[k] = v;
  }
  const known = new Set<string>();
  for (const [k, suffix, type, help] of [...SERVICE_STATS, ...REDUCTION_STATS]) {
    known.add(k);
    e.add(`storvisor_function_${suffix}`, type, `function: ${help}`, l, fn[k]);
  }
  const inner = labelText(l).slice(0, -1);
  for (const [k, v] of Object.entries(fn)) {
    if (!known.has(k)) e.add('storvisor_function_stat', 'gauge', "other statistics a function reports, by name (see the function's README)", `${inner},stat=${formatLabels({ s: k }).slice(3, -1)}}`, v);
  }
  for (const [k, suffix, type, help] of QUEUE_STATS) e.add(`storvisor_queue_${suffix}`, type, help, l, queue[k]);
  for (const [k, suffix, type, help] of DRIVER_STATS) e.add(`storvisor_guest_driver_${suffix}`, type, help, l, driver[k]);
  e.histogram('storvisor_queue_latency_seconds', 'guest queue request latency, taken from the ring to completion posted', l, f.latency);
}
