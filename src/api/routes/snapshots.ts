import { alreadyExists, inUse, invalidArgument } from '../../util/errors.ts';
import type { Controller } from '../../controller/controller.ts';
import type { SnapshotInfo } from '../../storage/snapshots/snapshots.ts';
import type { Route } from './types.ts';

/**
 * Snapshots and clones.
 *
 *   GET    /volumes/VOL/snapshots                  the volume's snapshots, oldest first
 *   POST   /volumes/VOL/snapshots                  {"name": "before-upgrade"} -> 201
 *   GET    /volumes/VOL/snapshots/SNAP
 *   DELETE /volumes/VOL/snapshots/SNAP[?flatten=true]
 *                                                  refused (409 SV_ERR_HAS_CLONES) while it has
 *                                                  clones, unless flatten: each clone gets its own copy
 *   POST   /volumes/VOL/snapshots/SNAP/clone       {"name": "test-copy"} -> 201, a writable volume
 *   POST   /volumes/CLONE/flatten                  the clone stops sharing blocks with its snapshot
 *
 * A snapshot is on the controller's NBD export, read-only, as `VOL@SNAP`; a
 * clone is an ordinary volume, exported under its own name.
 */
export const snapshotRoutes: Route[] = [
  {
    method: 'POST',
    path: '/volumes/:name/flatten',
    handler: async ({ controller: c, params, body }) => {
      await body();
      await c.exclusive(() => c.store.snapshots.flatten(params[0]!));
      return { status: 200, body: c.store.manifest(params[0]!) };
    },
  },
  {
    method: 'GET',
    path: '/volumes/:name/snapshots',
    handler: async ({ controller: c, params }) => ({ status: 200, body: c.store.snapshots.list(params[0]!).map((s) => withExport(c, s)) }),
  },
  {
    method: 'POST',
    path: '/volumes/:name/snapshots',
    handler: async ({ controller: c, params, body }) => {
      const name = nameField(await body());
      return { status: 201, body: withExport(c, await c.exclusive(() => c.store.snapshots.create(params[0]!, name))) };
    },
  },
  {
    method: 'GET',
    path: '/volumes/:name/snapshots/:snap',
    handler: async ({ controller: c, params }) => ({ status: 200, body: withExport(c, c.store.snapshots.get(params[0]!, params[1]!)) }),
  },
  {
    method: 'DELETE',
    path: '/volumes/:name/snapshots/:snap',
    handler: async ({ controller: c, params, url }) => {
      const [volume, snapshot] = [params[0]!, params[1]!];
      const flatten = url.searchParams.get('flatten');
      if (flatten !== null && flatten !== 'true' && flatten !== 'false') throw invalidArgument(`flatten must be true or false (got ${JSON.stringify(flatten)})`);
      return c.exclusive(async () => {
        c.store.snapshots.get(volume, snapshot);
        const exportName = `${volume}@${snapshot}`;
        const users = c.volumeUsers(exportName);
        if (users.length > 0) throw inUse(`cannot delete snapshot '${exportName}': it is in use by ${users.join(' and ')}; stop them first`);
        await c.store.closeVolume(exportName); // the handle an earlier NBD client left open
        const flattened = await c.store.snapshots.delete(volume, snapshot, { flatten: flatten === 'true' });
        return { status: 200, body: { deleted: exportName, flattened } };
      });
    },
  },
  {
    method: 'POST',
    path: '/volumes/:name/snapshots/:snap/clone',
    handler: async ({ controller: c, params, body }) => {
      const name = nameField(await body());
      if (c.config.volumes.some((v) => v.name === name && v.provider !== undefined)) throw alreadyExists(`volume '${name}' (a virtual volume in the config)`);
      return { status: 201, body: await c.exclusive(() => c.store.snapshots.clone(params[0]!, params[1]!, name)) };
    },
  },
];

function nameField(b: Record<string, unknown>): string {
  if (typeof b.name !== 'string') throw invalidArgument(`"name" must be a string (got ${JSON.stringify(b.name) ?? 'nothing'})`);
  return b.name;
}

function withExport(c: Controller, s: SnapshotInfo): SnapshotInfo & { export?: string } {
  try {
    const { host, port } = c.nbdEndpoint();
    return { ...s, export: `nbd://${host}:${port}/${s.volume}@${s.name}` };
  } catch {
    return s; // the controller's NBD export is off
  }
}
