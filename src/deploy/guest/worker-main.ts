import { parentPort, workerData } from 'node:worker_threads';
import { loadFunction } from '../../functions/registry.ts';
import type { FromGuest, GuestWorkerData, ToGuest } from './messages.ts';
import { runGuest } from './guest-runtime.ts';

/**
 * Entry of a thread guest: its region is a SharedArrayBuffer, its channel the
 * worker port. It loads its function's code at once and starts it on `boot`
 * (which, for a warm standby, comes when a crashed guest needs replacing).
 */
const { region, functionName } = workerData as GuestWorkerData;
const port = parentPort!;
// Warm the module cache; a failure is reported at boot.
loadFunction(functionName).then(
  () => port.postMessage({ type: 'prepared' } satisfies FromGuest),
  () => {},
);
port.once('message', (m: ToGuest) => {
  if (m.type !== 'boot') {
    port.close();
    return;
  }
  void runGuest(m.data, region, {
    send: (out) => port.postMessage(out),
    onMessage: (h) => port.on('message', (next: ToGuest) => h(next)),
    close: () => port.close(),
  });
});
