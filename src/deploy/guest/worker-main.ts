import { parentPort, workerData } from 'node:worker_threads';
import type { GuestWorkerData, ToGuest } from './messages.ts';
import { runGuest } from './guest-runtime.ts';

/** Entry of a thread guest: its region is a SharedArrayBuffer, its channel the worker port. */
const data = workerData as GuestWorkerData;
const port = parentPort!;
await runGuest(data, data.region, {
  send: (m) => port.postMessage(m),
  onMessage: (h) => port.on('message', (m: ToGuest) => h(m)),
  close: () => port.close(),
});
