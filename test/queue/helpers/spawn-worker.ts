/**
 * Start a worker thread running a TypeScript module. Worker entry points do
 * not go through the parent's `--import tsx` hooks, so the worker registers
 * tsx itself (from an eval'd bootstrap) before importing the entry.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';

export function spawnTsWorker(entry: URL, workerData: unknown, options: Omit<WorkerOptions, 'eval' | 'workerData'> = {}): Worker {
  const tsx = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(entry.href)}); })`;
  return new Worker(bootstrap, { ...options, eval: true, workerData });
}

/** The worker's first message, or its error/early exit as a rejection. */
export function firstMessage<T>(worker: Worker): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`worker exited with code ${code} before replying`)));
  });
}
