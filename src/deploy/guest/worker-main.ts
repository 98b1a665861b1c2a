import { parentPort, workerData } from 'node:worker_threads';
import { VirtioBlkDriver } from '../../queue/blk-driver.ts';
import { loadFunction, parseOptions } from '../../functions/registry.ts';
import type { GuestWorkerData, ToGuest, FromGuest } from './messages.ts';
import type { RunningFunction } from '../../functions/types.ts';

/**
 * The inside of a thread guest: its block device is the driver side of the
 * shared-memory queue, and on it runs one function module, unaware that it is in
 * a guest. Everything the guest owns lives in this worker's own V8 heap; the
 * only memory it shares with the controller is its region.
 */
const data = workerData as GuestWorkerData;
const port = parentPort!;
const send = (m: FromGuest) => port.postMessage(m);
const log = (msg: string) => send({ type: 'log', msg });

let running: RunningFunction | undefined;

/**
 * The guest's memory limit counts its Buffers too: resourceLimits cap only the
 * V8 heap, and a Buffer's bytes live outside it. Past the limit the guest ends
 * as an out-of-memory would (the controller restarts it); a client that made a
 * function hoard buffers takes down only that guest.
 */
const BUFFER_CHECK_MS = 100;
setInterval(() => {
  const used = process.memoryUsage().arrayBuffers;
  if (used <= data.bufferLimitBytes) return;
  send({ type: 'fatal', error: `guest buffer memory limit exceeded: ${Math.round(used / 2 ** 20)} MiB of Buffers > ${Math.round(data.bufferLimitBytes / 2 ** 20)} MiB` });
  process.exit(70);
}, BUFFER_CHECK_MS).unref();
const driver = new VirtioBlkDriver({ region: data.region, spinBudgetUs: data.spinBudgetUs, idlePoll: data.idlePoll });

port.on('message', (m: ToGuest) => {
  if (m.type === 'stats') {
    const stats: Record<string, number> = {};
    for (const [k, v] of Object.entries(running?.stats() ?? {})) stats[`fn_${k}`] = v;
    for (const [k, v] of Object.entries(driver.stats())) stats[`driver_${k}`] = v as number;
    send({ type: 'stats', id: m.id, stats });
  } else if (m.type === 'stop') {
    void (async () => {
      try {
        await running?.stop();
      } finally {
        driver.close();
        send({ type: 'stopped' });
        port.close();
      }
    })();
  }
});

try {
  const fn = await loadFunction(data.functionName);
  const options = parseOptions(fn, data.options);
  running = await fn.start({ device: driver, listen: data.listen, options, instance: data.name, log });
  send({ type: 'ready', address: running.address });
} catch (err) {
  send({ type: 'fatal', error: (err as Error).stack ?? String(err) });
  driver.close();
  port.close();
}
