import { prometheus } from '../metrics.ts';
import type { Route } from './types.ts';

/**
 *   GET /status    everything: volumes, functions, cache, poller, engine, NBD, process
 *   GET /metrics   the same in Prometheus text format (see metrics.ts)
 */
export const statusRoutes: Route[] = [
  { method: 'GET', path: '/status', handler: async ({ controller }) => ({ status: 200, body: await controller.status() }) },
  {
    method: 'GET',
    path: '/metrics',
    handler: async ({ controller }) => ({ status: 200, body: prometheus(await controller.status()), type: 'text/plain; version=0.0.4; charset=utf-8' }),
  },
];
