import type { Route } from './types.ts';

/**
 * RBD volumes.
 *
 *   POST /volumes/NAME/takeover   {}   take an RBD volume over from a dead controller:
 *                                      blocklist the holder, break its lock, take ours,
 *                                      start the functions on it
 */
export const rbdRoutes: Route[] = [
  {
    method: 'POST',
    path: '/volumes/:name/takeover',
    handler: async ({ controller: c, params, body }) => {
      await body();
      return { status: 200, body: await c.exclusive(() => c.takeoverVolume(params[0]!)) };
    },
  },
];
