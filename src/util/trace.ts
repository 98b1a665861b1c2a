/**
 * Per-request stage timestamps on the data path (issue #8): where the
 * microseconds of one QD1 request go, from socket bytes to the reply's
 * writev, through the cache, the engine's io_uring_enter, the completion
 * (held spin, poller, or eventfd wake-up) and, for a guest, through the
 * queue on both sides.
 *
 * STORVISOR_TRACE=1 turns it on for the process (and its thread guests,
 * which load this module again). Off, every call site is one test of the
 * `tracing` constant and nothing else runs. On, each thread writes into its
 * own preallocated ring of rows (one row per request: `start` opens one,
 * `mark` fills a column), so tracing allocates nothing per request either.
 * Rows are meant for one request at a time (a QD1 client): at higher queue
 * depths requests share rows and the figures mean little.
 *
 * Times are milliseconds on CLOCK_MONOTONIC (uv_hrtime: the clock of
 * process.hrtime and of the native addon's clock_gettime), so rows of
 * different threads, and timestamps taken in C, compare directly.
 */
import { BroadcastChannel, threadId } from 'node:worker_threads';

export const tracing: boolean = process.env.STORVISOR_TRACE === '1';

/** The stages, in the order a request usually meets them (a row keeps the time of each stage it met). */
export const STAGES = [
  'data', //          socket bytes handed to the NBD connection (the last chunk before the request was complete)
  'request', //       the request parsed, about to be dispatched
  'devTaken', //      controller: the queue device took a guest's request from the avail ring
  'cacheHit', //      volume: every block of the read was in the cache (copied)
  'cacheMiss', //     volume: a block missed; a backend read follows
  'volWrite', //      volume: a write's piece locked and copied, about to go to the backend
  'submit', //        engine: about to call io_uring_enter
  'enter', //         native: the system call begins
  'entered', //       native: the system call returned
  'submitted', //     engine: io_uring_enter returned
  'hold', //          engine: the lone request's hold (native spin) begins
  'cqe', //           native: the spin saw the completion in the ring
  'held', //          engine: the hold returned
  'woken', //         engine: the eventfd woke the loop (no spin caught the completion)
  'polled', //        engine: the poller's pass reaped the completion
  'complete', //      engine: the completion is delivered to its target
  'volDone', //       volume: the request is finished
  'devPushed', //     controller: the used entry is written
  'devFlushed', //    controller: used.idx published (and the guest called, if it sleeps)
  'drvPublished', //  guest driver: avail.idx published
  'drvKicked', //     guest driver: the kick doorbell rung (a sleeping device)
  'drvReaped', //     guest driver: the used entry seen
  'reply', //         NBD: the reply handed to the socket (corked)
  'written', //       NBD: after the uncork (the writev went out)
] as const;
export type StageName = (typeof STAGES)[number];
export const S = Object.fromEntries(STAGES.map((s, i) => [s, i])) as { readonly [K in StageName]: number };
const W = STAGES.length;

/** One thread's rows: a ring of `capacity` requests × one column per stage. */
export class TraceRing {
  readonly times: Float64Array;
  private rows = 0;
  private row = -1;
  private lastData = NaN;

  constructor(readonly capacity: number) {
    this.times = new Float64Array(capacity * W).fill(NaN);
  }

  /**
   * Now, in ms on CLOCK_MONOTONIC. process.hrtime, not performance.now():
   * the latter's origin moves during start-up (measured: 1.6–18 ms against
   * clock_gettime in C), so an offset taken at load time is wrong. A BigInt
   * per mark: tracing only.
   */
  now(): number {
    return Number(process.hrtime.bigint()) / 1e6;
  }

  /** Socket bytes arrived; they belong to the next row `start`ed (the request they complete). */
  arrived(): void {
    this.lastData = this.now();
  }

  /** A request begins: a new row, with `stage` now (and the data arrival, if one is pending). */
  start(stage: number): void {
    const row = (this.row = this.rows++ % this.capacity);
    const at = row * W;
    this.times.fill(NaN, at, at + W);
    this.times[at + S.data] = this.lastData;
    this.lastData = NaN;
    this.times[at + stage] = this.now();
  }

  /** The current request reached `stage` (the first time counts). */
  mark(stage: number): void {
    this.markAt(stage, this.now());
  }

  /** Has the current request already reached `stage` (true when no request is open)? */
  met(stage: number): boolean {
    return this.row < 0 || !Number.isNaN(this.times[this.row * W + stage]!);
  }

  /** ...at `ms` (CLOCK_MONOTONIC ms, e.g. taken in C). */
  markAt(stage: number, ms: number): void {
    if (this.row < 0) return;
    const i = this.row * W + stage;
    if (Number.isNaN(this.times[i]!)) this.times[i] = ms;
  }

  reset(): void {
    this.rows = 0;
    this.row = -1;
    this.lastData = NaN;
    this.times.fill(NaN);
  }

  /** The rows so far, oldest first (each: one time or null per stage). */
  snapshot(): TraceSnapshot {
    const n = Math.min(this.rows, this.capacity);
    const first = this.rows > this.capacity ? this.rows % this.capacity : 0;
    const rows: Array<Array<number | null>> = [];
    for (let k = 0; k < n; k++) {
      const at = ((first + k) % this.capacity) * W;
      rows.push(Array.from(this.times.subarray(at, at + W), (t) => (Number.isNaN(t) ? null : t)));
    }
    return { threadId, stages: [...STAGES], rows };
  }
}

export interface TraceSnapshot {
  threadId: number;
  stages: string[];
  rows: Array<Array<number | null>>;
}

/** This thread's ring (a 1-row stub when tracing is off: call sites never reach it then). */
export const trace = new TraceRing(tracing ? Number(process.env.STORVISOR_TRACE_ROWS ?? 1 << 16) : 1);

const CHANNEL = 'storvisor:trace';

if (tracing) {
  // Every thread that loaded this module answers a collector (collectTraces) on any thread.
  const ch = new BroadcastChannel(CHANNEL);
  ch.onmessage = (ev) => {
    const msg = (ev as MessageEvent).data as { op: string };
    if (msg.op === 'reset') trace.reset();
    else if (msg.op === 'dump') ch.postMessage({ op: 'rows', snapshot: trace.snapshot() });
  };
  (ch as unknown as { unref(): void }).unref();
}

/**
 * Every thread's rows: this thread's, and those the others (thread guests)
 * send back within `waitMs`. Empty when tracing is off.
 */
export async function collectTraces(waitMs = 200): Promise<TraceSnapshot[]> {
  if (!tracing) return [];
  const out: TraceSnapshot[] = [trace.snapshot()];
  const ch = new BroadcastChannel(CHANNEL);
  ch.onmessage = (ev) => {
    const msg = (ev as MessageEvent).data as { op: string; snapshot: TraceSnapshot };
    // This thread's own listener answers too: its rows are in already.
    if (msg.op === 'rows' && msg.snapshot.threadId !== threadId) out.push(msg.snapshot);
  };
  ch.postMessage({ op: 'dump' });
  await new Promise((r) => setTimeout(r, waitMs)); // replies from other threads: no count to wait for
  ch.close();
  return out;
}

/** Clear every thread's rows (this one now, the others when the message arrives). */
export function resetTraces(): void {
  if (!tracing) return;
  trace.reset();
  const ch = new BroadcastChannel(CHANNEL);
  ch.postMessage({ op: 'reset' });
  ch.close();
}

export interface StepSummary {
  /** "from → to": consecutive stages met by a row. */
  step: string;
  /** Rows that met both. */
  count: number;
  medianUs: number;
}

/**
 * Per-step medians (µs) over rows that `keep` accepts: each row's stages in
 * time order, and each consecutive pair's gap. Steps are listed in the order
 * of the row that met the most stages.
 */
export function summarizeRows(s: TraceSnapshot, keep: (row: Array<number | null>) => boolean = () => true): StepSummary[] {
  const gaps = new Map<string, number[]>();
  const order: string[] = [];
  for (const row of s.rows) {
    if (!keep(row)) continue;
    const met = row.map((t, i) => [t, i] as const).filter(([t]) => t !== null) as Array<readonly [number, number]>;
    met.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    for (let k = 1; k < met.length; k++) {
      const step = `${s.stages[met[k - 1]![1]]} → ${s.stages[met[k]![1]]}`;
      let g = gaps.get(step);
      if (!g) {
        gaps.set(step, (g = []));
        order.push(step);
      }
      g.push((met[k]![0] - met[k - 1]![0]) * 1000);
    }
  }
  return order.map((step) => {
    const g = gaps.get(step)!.sort((a, b) => a - b);
    return { step, count: g.length, medianUs: g[g.length >> 1]! };
  });
}

/** The median gap (µs) between two stages of the same row, over rows that met both. */
export function medianGapUs(s: TraceSnapshot, from: StageName, to: StageName, keep: (row: Array<number | null>) => boolean = () => true): number {
  const a = S[from];
  const b = S[to];
  const g: number[] = [];
  for (const row of s.rows) if (keep(row) && row[a] !== null && row[b] !== null) g.push((row[b]! - row[a]!) * 1000);
  g.sort((x, y) => x - y);
  return g.length ? g[g.length >> 1]! : NaN;
}

/** Median gap (µs) from a row's `from` to the next row's `to` (QD1: the time the request spent outside this thread). */
export function medianCrossGapUs(s: TraceSnapshot, from: StageName, to: StageName): number {
  const a = S[from];
  const b = S[to];
  const g: number[] = [];
  for (let k = 1; k < s.rows.length; k++) {
    const x = s.rows[k - 1]![a];
    const y = s.rows[k]![b];
    if (x != null && y != null && y > x) g.push((y - x) * 1000);
  }
  g.sort((x, y) => x - y);
  return g.length ? g[g.length >> 1]! : NaN;
}
