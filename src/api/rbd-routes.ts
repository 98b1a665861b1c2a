import type { Controller } from '../controller/controller.ts';

/**
 * The RBD volume routes (kept apart from server.ts):
 *   POST /volumes/NAME/takeover   {}   take an RBD volume over from a dead controller:
 *                                      blocklist the holder, break its lock, take ours,
 *                                      start the functions on it
 * Returns undefined when the request is not one of them.
 */
export async function rbdRoute(c: Controller, method: string | undefined, parts: string[]): Promise<{ status: number; body: unknown } | undefined> {
  if (method === 'POST' && parts.length === 3 && parts[0] === 'volumes' && parts[2] === 'takeover') {
    return { status: 200, body: await c.takeoverVolume(parts[1]!) };
  }
  return undefined;
}
