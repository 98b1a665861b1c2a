import { VirtioBlkDriver } from '../../queue/blk-driver.ts';
import { loadFunction, parseOptions } from '../../functions/registry.ts';
import type { GuestBootData, ToGuest, FromGuest } from './messages.ts';
import type { RunningFunction } from '../../functions/types.ts';

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
 */
const BUFFER_CHECK_MS = 100;
const BUFFER_CHECK_IDLE_MS = 1000;
/** Movement below this between two checks counts as quiet. */
const BUFFER_QUIET_BYTES = 2 ** 20;

/** The next check's delay: back to the base on movement or near the limit, else doubled up to the idle delay. */
export function nextBufferCheckMs(previousMs: number, usedBefore: number, usedNow: number, limit: number): number {
  const quiet = Math.abs(usedNow - usedBefore) < BUFFER_QUIET_BYTES && usedNow < limit / 2;
  return quiet ? Math.min(BUFFER_CHECK_IDLE_MS, previousMs * 2) : BUFFER_CHECK_MS;
}

export async function runGuest(data: GuestBootData, region: SharedArrayBuffer | ArrayBuffer, ch: GuestChannel): Promise<void> {
  const log = (msg: string) => ch.send({ type: 'log', msg });
  let running: RunningFunction | undefined;
  let checkMs = BUFFER_CHECK_MS;
  let lastUsed = -1;
  const checkBuffers = () => {
    // A process guest's region is an external buffer over a mapping: not counted here.
    const used = process.memoryUsage().arrayBuffers;
    if (used > data.bufferLimitBytes) {
      ch.send({ type: 'fatal', error: `guest buffer memory limit exceeded: ${Math.round(used / 2 ** 20)} MiB of Buffers > ${Math.round(data.bufferLimitBytes / 2 ** 20)} MiB` });
      process.exit(70);
    }
    checkMs = nextBufferCheckMs(checkMs, lastUsed, used, data.bufferLimitBytes);
    lastUsed = used;
    setTimeout(checkBuffers, checkMs).unref();
  };
  setTimeout(checkBuffers, checkMs).unref();
  const driver = new VirtioBlkDriver({ region, spinBudgetUs: data.spinBudgetUs, idlePoll: data.idlePoll });

  ch.onMessage((m) => {
    if (m.type === 'stats') {
      const stats: Record<string, number> = {};
      for (const [k, v] of Object.entries(running?.stats() ?? {})) stats[`fn_${k}`] = v;
      for (const [k, v] of Object.entries(driver.stats())) stats[`driver_${k}`] = v as number;
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
