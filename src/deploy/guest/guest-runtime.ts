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
 */
const BUFFER_CHECK_MS = 100;

export async function runGuest(data: GuestBootData, region: SharedArrayBuffer | ArrayBuffer, ch: GuestChannel): Promise<void> {
  const log = (msg: string) => ch.send({ type: 'log', msg });
  let running: RunningFunction | undefined;
  setInterval(() => {
    // A process guest's region is an external buffer over a mapping: not counted here.
    const used = process.memoryUsage().arrayBuffers;
    if (used <= data.bufferLimitBytes) return;
    ch.send({ type: 'fatal', error: `guest buffer memory limit exceeded: ${Math.round(used / 2 ** 20)} MiB of Buffers > ${Math.round(data.bufferLimitBytes / 2 ** 20)} MiB` });
    process.exit(70);
  }, BUFFER_CHECK_MS).unref();
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
