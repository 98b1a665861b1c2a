/**
 * A small pool of worker threads that compresses 4 KiB blocks off the request thread.
 *
 * Batching: requests queue blocks; a microtask later (so every request that arrived in
 * the same tick joins) the queue goes to an idle worker as one message of up to
 * MAX_BATCH blocks, through buffers shared once at start (one copy in, one copy out of
 * each fragment). While every worker is busy the queue grows, so load makes batches
 * larger. Measured here: a worker round trip costs 35-100 us of CPU per message
 * (both threads, wake-ups included) and LZ4 4-17 us per block, so a batch smaller than
 * INLINE_BELOW blocks is compressed inline: the hop would cost more than the work.
 *
 * Pools are shared per process and size (a volume only borrows one), their threads are
 * unref'd (they never keep a process alive) and start on first need; until a thread is
 * ready, its work is done inline.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { BLOCK, type Compression } from './format.ts';
import { codecFor, keepFragment, MAX_FRAGMENT } from './fragments.ts';

/** Blocks per message, at most: 512 KiB in, 1 MiB of shared buffers per worker. */
export const MAX_BATCH = 128;
/** Batches smaller than this are compressed inline (see the header). */
export const INLINE_BELOW = 8;

/** Default pool size: the cores given, less the request thread's, at least 1. */
export const defaultWorkers = (): number => Math.max(1, availableParallelism() - 1);

export interface CompressResult {
  /** Per block: the fragment, or null when it does not compress enough (store raw). */
  fragments: Array<Uint8Array | null>;
  /** CPU time spent compressing these blocks (in a worker or inline). */
  micros: number;
  /** How many of them a worker compressed. */
  offloaded: number;
}

interface Job {
  blocks: Uint8Array[];
  codec: Compression;
  out: Array<Uint8Array | null>;
  micros: number;
  offloaded: number;
  left: number;
  resolve: () => void;
}

interface Item {
  job: Job;
  index: number;
}

interface Slot {
  worker: Worker | null;
  ready: boolean;
  busy: boolean;
  input: Uint8Array;
  output: Uint8Array;
  lengths: Int32Array;
  items: Item[];
}

export interface PoolStats {
  batches: number;
  offloadedBlocks: number;
  inlineBlocks: number;
  /** Compression CPU time, worker and inline together. */
  compressMicros: number;
}

export class CompressPool {
  private readonly slots: Slot[] = [];
  private queue: Item[] = [];
  private flushQueued = false;
  private started = false;
  readonly stats: PoolStats = { batches: 0, offloadedBlocks: 0, inlineBlocks: 0, compressMicros: 0 };

  constructor(readonly threads: number) {}

  /** Compress `blocks` (each 4 KiB); resolves with a fragment or null per block. */
  compress(blocks: Uint8Array[], codec: Compression): Promise<CompressResult> {
    if (blocks.length === 0) return Promise.resolve({ fragments: [], micros: 0, offloaded: 0 });
    return new Promise((resolve) => {
      const job: Job = {
        blocks,
        codec,
        out: new Array(blocks.length).fill(null),
        micros: 0,
        offloaded: 0,
        left: blocks.length,
        resolve: () => resolve({ fragments: job.out, micros: job.micros, offloaded: job.offloaded }),
      };
      for (let i = 0; i < blocks.length; i++) this.queue.push({ job, index: i });
      if (!this.flushQueued) {
        this.flushQueued = true;
        queueMicrotask(() => this.flush());
      }
    });
  }

  /** Compress inline on the calling thread (tiny batches, pool not ready). */
  private inline(items: Item[]): void {
    for (const it of items) {
      const t0 = performance.now();
      it.job.out[it.index] = codecFor(it.job.codec)!.compress(it.job.blocks[it.index]!);
      const us = (performance.now() - t0) * 1000;
      it.job.micros += us;
      this.stats.compressMicros += us;
      if (--it.job.left === 0) it.job.resolve();
    }
    this.stats.inlineBlocks += items.length;
  }

  /** Start the threads now and resolve once each is running (benchmarks and tests; work never waits for this). */
  async warm(): Promise<void> {
    this.start();
    await Promise.all(
      this.slots.map((s) => {
        const w = s.worker;
        if (s.ready || !w) return undefined;
        w.ref(); // waiting for it must keep the process alive
        return new Promise<void>((r) => w.once('online', () => (s.busy || w.unref(), r())));
      }),
    );
  }

  private flush(): void {
    this.flushQueued = false;
    if (this.queue.length === 0) return;
    if (this.threads <= 0 || (this.queue.length < INLINE_BELOW && !this.slots.some((s) => s.busy))) {
      const items = this.queue;
      this.queue = [];
      return this.inline(items);
    }
    this.start();
    for (const slot of this.slots) {
      if (this.queue.length === 0) return;
      if (slot.busy || !slot.ready) continue;
      this.send(slot);
    }
    // No thread ready yet (starting): do the work here rather than wait for the start.
    if (!this.slots.some((s) => s.ready)) {
      const items = this.queue;
      this.queue = [];
      this.inline(items);
    }
  }

  private send(slot: Slot): void {
    const items = this.queue.splice(0, MAX_BATCH);
    const codec = items[0]!.job.codec;
    let n = 0;
    for (; n < items.length && items[n]!.job.codec === codec; n++) slot.input.set(items[n]!.job.blocks[items[n]!.index]!, n * BLOCK);
    if (n < items.length) this.queue.unshift(...items.splice(n)); // another codec: next batch
    slot.items = items;
    slot.busy = true;
    this.stats.batches++;
    this.stats.offloadedBlocks += n;
    slot.worker!.ref(); // a batch in flight keeps the process alive (an idle pool does not)
    slot.worker!.postMessage({ n, codec });
  }

  private done(slot: Slot, micros: number): void {
    this.stats.compressMicros += micros;
    const items = slot.items;
    slot.items = [];
    slot.busy = false;
    slot.worker?.unref();
    for (let i = 0; i < items.length; i++) {
      const len = slot.lengths[i]!;
      const it = items[i]!;
      it.job.micros += micros / items.length;
      it.job.offloaded++;
      it.job.out[it.index] = len > 0 ? keepFragment(slot.output.subarray(i * MAX_FRAGMENT, i * MAX_FRAGMENT + len)) : null;
      if (--it.job.left === 0) it.job.resolve();
    }
    if (this.queue.length > 0) this.send(slot);
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    for (let i = 0; i < this.threads; i++) {
      const input = new SharedArrayBuffer(MAX_BATCH * BLOCK);
      const output = new SharedArrayBuffer(MAX_BATCH * MAX_FRAGMENT);
      const lengths = new SharedArrayBuffer(MAX_BATCH * 4);
      const slot: Slot = {
        worker: null,
        ready: false,
        busy: false,
        input: new Uint8Array(input),
        output: new Uint8Array(output),
        lengths: new Int32Array(lengths),
        items: [],
      };
      const worker = new Worker(new URL('./compress-worker.mjs', import.meta.url), {
        workerData: { input, output, lengths },
        name: `dedup-compress-${i}`,
      });
      slot.worker = worker;
      worker.on('online', () => {
        slot.ready = true;
        if (this.queue.length > 0 && !slot.busy) this.send(slot);
      });
      worker.on('message', (m: { micros: number }) => this.done(slot, m.micros));
      worker.on('error', (err) => this.lost(slot, err));
      worker.on('exit', () => this.lost(slot, null));
      worker.unref(); // after the listeners: adding a 'message' listener refs the worker again
      this.slots.push(slot);
    }
  }

  /** A worker died: its batch is redone inline and the slot is no longer used. */
  private lost(slot: Slot, _err: unknown): void {
    if (!slot.ready && slot.worker === null) return;
    slot.ready = false;
    slot.worker = null;
    const items = slot.items;
    slot.items = [];
    slot.busy = false;
    if (items.length > 0) this.inline(items);
  }
}

const shared = new Map<number, CompressPool>();

/** The process's pool of `threads` workers (created on first use, started on first big batch). */
export function poolOf(threads: number): CompressPool {
  let p = shared.get(threads);
  if (!p) {
    p = new CompressPool(threads);
    shared.set(threads, p);
  }
  return p;
}
