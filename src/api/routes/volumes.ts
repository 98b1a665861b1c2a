import { invalidArgument, notFound } from '../../util/errors.ts';
import type { Route } from './types.ts';

/**
 *   GET    /volumes                  every volume: manifest, bytes used, open or not, users
 *   POST   /volumes                  {"name": "v1", "size": 1073741824}            -> 201
 *   GET    /volumes/NAME
 *   POST   /volumes/NAME/resize      {"size": 2147483648, "allowShrink": false}
 *   DELETE /volumes/NAME             409 SV_ERR_IN_USE while a function or an NBD client uses it
 */
export function sizeField(b: Record<string, unknown>): number {
  if (typeof b.size !== 'number') throw invalidArgument(`"size" must be a number of bytes (got ${JSON.stringify(b.size) ?? 'nothing'})`);
  return b.size;
}

export const volumeRoutes: Route[] = [
  { method: 'GET', path: '/volumes', handler: async ({ controller }) => ({ status: 200, body: controller.store.list() }) },
  {
    method: 'POST',
    path: '/volumes',
    handler: async ({ controller, body }) => {
      const b = await body();
      if (typeof b.name !== 'string') throw invalidArgument(`"name" must be a string (got ${JSON.stringify(b.name) ?? 'nothing'})`);
      const name = b.name;
      return { status: 201, body: await controller.exclusive(async () => controller.createVolume(name, sizeField(b))) };
    },
  },
  {
    method: 'GET',
    path: '/volumes/:name',
    handler: async ({ controller, params }) => {
      const name = params[0]!;
      const s = await controller.status();
      const v = (s.volumes as Array<{ name: string }>).find((x) => x.name === name);
      if (!v) throw notFound(`volume '${name}'`);
      return { status: 200, body: { ...v, users: controller.volumeUsers(name) } };
    },
  },
  {
    method: 'POST',
    path: '/volumes/:name/resize',
    handler: async ({ controller, params, body }) => {
      const b = await body();
      if (b.allowShrink !== undefined && typeof b.allowShrink !== 'boolean') throw invalidArgument('"allowShrink" must be true or false');
      return { status: 200, body: await controller.exclusive(() => controller.resizeVolume(params[0]!, sizeField(b), { allowShrink: b.allowShrink === true })) };
    },
  },
  {
    method: 'DELETE',
    path: '/volumes/:name',
    handler: async ({ controller, params }) => {
      await controller.exclusive(() => controller.deleteVolume(params[0]!));
      return { status: 200, body: { deleted: params[0] } };
    },
  },
];
