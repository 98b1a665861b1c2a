import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { VirtioBlkDriver } from '../../queue/blk-driver.ts';
import { loadFunction, parseOptions } from '../../functions/registry.ts';
import type { GuestBootData, ToGuest, FromGuest } from './messages.ts';
import type { RunningFunction } from '../../functions/types.ts';
import { ProcField } from '../../native/proc-field.ts';
import { HeapMeter } from '../../util/heap-meter.ts';

/**
 * The inside of a guest, thread or process alike: its block device is the
 * driver side of the shared-memory queue, and on it runs one function module,
 * unaware that it is in a guest. Everything the guest owns lives in its own V8
 * heap; the only memory it shares with the controller is its region.
 */
export interface GuestChannel {
  send(m: FromGuest): void;
  onMessage(handler: (m: ToGuest) => void): void;
  /** After `stopped` (or a failed start): let the guest end. */
  close(): void;
}

/**
 * The guest's memory limit counts its Buffers too: heap limits cap only the
 * V8 heap, and a Buffer's bytes live outside it. Past the limit the guest ends
 * as an out-of-memory would (the controller restarts it); a client that made a
 * function hoard buffers takes down only that guest.
 *
 * The check runs every BUFFER_CHECK_MS while Buffer memory moves and backs off
 * (doubling) to BUFFER_CHECK_IDLE_MS while it is quiet and far from the limit:
 * an idle guest then wakes once a second instead of ten times (each wake-up of
 * a sleeping thread costs a VM tens of µs, and memoryUsage() walks the heap).
 * Growth from quiet is seen within BUFFER_CHECK_IDLE_MS; the functions' own
 * per-connection and total bounds keep what a client can add meanwhile small.
 *
 * What counts is live memory, not garbage: `arrayBuffers` includes Buffers no
 * longer referenced until a GC frees them, and a database answering 4 KiB GETs
 * at -P 16 makes ~300 MB/s of such garbage (its peak measured 200+ MiB above
 * what was live). So a check over the limit first forces a full collection and
 * looks again AFTER_COLLECT_MS later; only memory still over the limit then
 * ends the guest. Without a collector (it needs --expose-gc, set at run time) the first
 * check over the limit ends it, as before.
 */
const BUFFER_CHECK_MS = 100;
const BUFFER_CHECK_IDLE_MS = 1000;
/** The look after a forced collection (V8 frees the backing stores within tens of ms). */
const AFTER_COLLECT_MS = 50;
/** Movement below this between two checks counts as quiet. */
const BUFFER_QUIET_BYTES = 2 ** 20;

/** The next check's delay: back to the base on movement or near the limit, else doubled up to the idle delay. */
export function nextBufferCheckMs(previousMs: number, usedBefore: number, usedNow: number, limit: number): number {
  const quiet = Math.abs(usedNow - usedBefore) < BUFFER_QUIET_BYTES && usedNow < limit / 2;
  return quiet ? Math.min(BUFFER_CHECK_IDLE_MS, previousMs * 2) : BUFFER_CHECK_MS;
}

export type BufferVerdict = 'ok' | 'collect' | 'fatal';

/**
 * The check's verdict on `used` bytes of Buffers: over the limit, collect
 * first (when a collector exists and none was forced since the last check
 * under the limit), and end the guest only if a forced collection did not
 * bring it back under.
 */
export function bufferVerdict(used: number, limit: number, collected: boolean, canCollect: boolean): BufferVerdict {
  if (used <= limit) return 'ok';
  return canCollect && !collected ? 'collect' : 'fatal';
}

/** A full garbage collection on demand (V8's gc(), exposed at run time), or null where it cannot be had. */
export function fullCollector(): (() => void) | null {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? (gc as () => void) : null;
  } catch {
    return null;
  }
}

/**
 * The guest thread's own cost, for the stats message: its CPU time on the
 * core (ns, /proc/thread-self/schedstat field 1, read on request only) and,
 * with STORVISOR_GUEST_GC_STATS=1, its isolate's GC time and JS heap bytes
 * allocated since start (v8 GCProfiler: what each collection found, less what
 * the previous one left). A thread guest shares the process's CPU counters,
 * so the controller cannot tell its share apart without this.
 */
class GuestCost {
  private readonly cpu = new ProcField('/proc/thread-self/schedstat', 0, -1, 96);
  private readonly heap: HeapMeter | null = process.env.STORVISOR_GUEST_GC_STATS === '1' ? new HeapMeter() : null;

  stats(): Record<string, number> {
    const out: Record<string, number> = { threadCpuNs: this.cpu.read() };
    if (this.heap !== null) {
      const { bytes, gcUs, gcs } = this.heap.read();
      out.gcUs = gcUs;
      out.gcs = gcs;
      out.heapAllocatedBytes = bytes;
    }
    return out;
  }
}

export async function runGuest(data: GuestBootData, region: SharedArrayBuffer | ArrayBuffer, ch: GuestChannel): Promise<void> {
  const log = (msg: string) => ch.send({ type: 'log', msg });
  let running: RunningFunction | undefined;
  let checkMs = BUFFER_CHECK_MS;
  let lastUsed = -1;
  let collect: (() => void) | null | undefined;
  let collected = false;
  const checkBuffers = () => {
    // A process guest's region is an external buffer over a mapping: not counted here.
    const used = process.memoryUsage().arrayBuffers;
    if (used > data.bufferLimitBytes && collect === undefined) collect = fullCollector();
    const verdict = bufferVerdict(used, data.bufferLimitBytes, collected, collect != null);
    if (verdict === 'fatal') {
      ch.send({ type: 'fatal', error: `guest buffer memory limit exceeded: ${Math.round(used / 2 ** 20)} MiB of Buffers > ${Math.round(data.bufferLimitBytes / 2 ** 20)} MiB${collected ? ' after a full collection' : ''}` });
      process.exit(70);
    }
    collected = verdict === 'collect';
    // Freed backing stores are released by V8's concurrent sweeper, so the verdict waits for a look
    // soon after (soon: the load goes on making garbage meanwhile).
    if (collected) collect!();
    checkMs = nextBufferCheckMs(checkMs, lastUsed, used, data.bufferLimitBytes);
    lastUsed = used;
    setTimeout(checkBuffers, collected ? AFTER_COLLECT_MS : checkMs).unref();
  };
  setTimeout(checkBuffers, checkMs).unref();
  const driver = new VirtioBlkDriver({ region, spinBudgetUs: data.spinBudgetUs, idlePoll: data.idlePoll });
  const cost = new GuestCost();

  ch.onMessage((m) => {
    if (m.type === 'stats') {
      const stats: Record<string, number> = {};
      for (const [k, v] of Object.entries(running?.stats() ?? {})) stats[`fn_${k}`] = v;
      for (const [k, v] of Object.entries(driver.stats())) stats[`driver_${k}`] = v as number;
      for (const [k, v] of Object.entries(cost.stats())) stats[`guest_${k}`] = v;
      ch.send({ type: 'stats', id: m.id, stats });
    } else if (m.type === 'stop') {
      void (async () => {
        try {
          await running?.stop();
        } finally {
          driver.close();
          ch.send({ type: 'stopped' });
          ch.close();
        }
      })();
    }
  });

  try {
    const fn = await loadFunction(data.functionName);
    const options = parseOptions(fn, data.options);
    running = await fn.start({ device: driver, listen: data.listen, options, instance: data.name, log });
    ch.send({ type: 'ready', address: running.address });
  } catch (err) {
    ch.send({ type: 'fatal', error: (err as Error).stack ?? String(err) });
    driver.close();
    ch.close();
  }
}
