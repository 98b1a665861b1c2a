import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Controller } from '../controller/controller.ts';
import { alreadyExists, inUse, invalidArgument } from '../util/errors.ts';
import type { SnapshotInfo } from '../storage/snapshots/snapshots.ts';

/**
 * Snapshots and clones over the management API (JSON, behind the same Host,
 * bearer-token and content-type checks as every route: see server.ts).
 *
 *   GET    /v1/volumes/VOL/snapshots                  the volume's snapshots, oldest first
 *   POST   /v1/volumes/VOL/snapshots                  {"name": "before-upgrade"} -> 201
 *   GET    /v1/volumes/VOL/snapshots/SNAP
 *   DELETE /v1/volumes/VOL/snapshots/SNAP[?flatten=true]
 *                                                     refused (409 SV_ERR_HAS_CLONES) while it has
 *                                                     clones, unless flatten: each clone gets its own copy
 *   POST   /v1/volumes/VOL/snapshots/SNAP/clone       {"name": "test-copy"} -> 201, a writable volume
 *   POST   /v1/volumes/CLONE/flatten                  the clone stops sharing blocks with its snapshot
 *
 * A snapshot is on the controller's NBD export, read-only, as `VOL@SNAP`; a
 * clone is an ordinary volume, exported under its own name.
 */
export interface RouteIo {
  reply(res: ServerResponse, status: number, body: unknown): void;
  body(req: IncomingMessage): Promise<Record<string, unknown>>;
}

/** Handle the request if it is one of the routes above; false when it is not. */
export async function snapshotRoutes(c: Controller, req: IncomingMessage, res: ServerResponse, url: URL, io: RouteIo): Promise<boolean> {
  const p = url.pathname.split('/').filter(Boolean).map(decode);
  if (p[0] !== 'v1' || p[1] !== 'volumes' || p.length < 4) return false;
  const volume = p[2]!;
  const snaps = c.store.snapshots;
  const m = req.method;
  if (p[3] === 'flatten' && p.length === 4 && m === 'POST') {
    await io.body(req);
    await snaps.flatten(volume);
    io.reply(res, 200, c.store.manifest(volume));
    return true;
  }
  if (p[3] !== 'snapshots') return false;
  if (p.length === 4 && m === 'GET') {
    io.reply(res, 200, snaps.list(volume).map((s) => withExport(c, s)));
    return true;
  }
  if (p.length === 4 && m === 'POST') {
    const name = nameField(await io.body(req));
    io.reply(res, 201, withExport(c, await snaps.create(volume, name)));
    return true;
  }
  const snapshot = p[4]!;
  if (p.length === 5 && m === 'GET') {
    io.reply(res, 200, withExport(c, snaps.get(volume, snapshot)));
    return true;
  }
  if (p.length === 5 && m === 'DELETE') {
    const flatten = url.searchParams.get('flatten');
    if (flatten !== null && flatten !== 'true' && flatten !== 'false') throw invalidArgument(`flatten must be true or false (got ${JSON.stringify(flatten)})`);
    snaps.get(volume, snapshot);
    const exportName = `${volume}@${snapshot}`;
    const users = c.volumeUsers(exportName);
    if (users.length > 0) throw inUse(`cannot delete snapshot '${exportName}': it is in use by ${users.join(' and ')}; stop them first`);
    await c.store.closeVolume(exportName); // the handle an earlier NBD client left open
    const flattened = await snaps.delete(volume, snapshot, { flatten: flatten === 'true' });
    io.reply(res, 200, { deleted: exportName, flattened });
    return true;
  }
  if (p.length === 6 && p[5] === 'clone' && m === 'POST') {
    const name = nameField(await io.body(req));
    if (c.config.volumes.some((v) => v.name === name && v.provider !== undefined)) throw alreadyExists(`volume '${name}' (a virtual volume in the config)`);
    io.reply(res, 201, await snaps.clone(volume, snapshot, name));
    return true;
  }
  return false;
}

function decode(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw invalidArgument(`bad percent-encoding in the path: ${JSON.stringify(part)}`);
  }
}

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
