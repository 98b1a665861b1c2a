import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { invalidArgument, notFound, notSupported } from '../util/errors.ts';
import type { StorageFunction } from './types.ts';

/**
 * The functions storvisor knows, by the name config files use. Modules load
 * lazily: a guest worker imports only its own function. A name that is a path
 * (contains '/') loads a user's own function module from that file.
 *
 * Nothing here knows any one function: what the controller needs (export
 * names, client URL, option schema) comes from the function's descriptor.
 */
const loaders: Record<string, () => Promise<{ default: StorageFunction<any> }>> = {
  'nbd-export': () => import('./nbd-export.ts'),
  fileserver: () => import('./fileserver/index.ts'),
  dedup: () => import('./dedup/index.ts'),
  database: () => import('./database/index.ts'),
};

export function functionNames(): string[] {
  return Object.keys(loaders).sort();
}

const isPath = (name: string) => name.includes('/');

export function hasFunction(name: string): boolean {
  return isPath(name) ? existsSync(resolve(name)) : Object.hasOwn(loaders, name);
}

export async function loadFunction(name: string): Promise<StorageFunction<any>> {
  const load = isPath(name) ? () => import(pathToFileURL(resolve(name)).href) : Object.hasOwn(loaders, name) ? loaders[name] : undefined;
  if (!load) throw notFound(`function '${name}' (known: ${functionNames().join(', ')}, or a module path)`);
  const mod = await load();
  if (mod.default?.apiVersion !== 1) throw invalidArgument(`function module '${name}' does not export a StorageFunction with apiVersion 1`);
  return mod.default;
}

/** The function's options after its own schema (defaults filled in); raw options when it has none. */
export function parseOptions<O>(fn: StorageFunction<O>, raw: Record<string, unknown>): O {
  return fn.parseOptions ? fn.parseOptions(raw) : (raw as O);
}

/** The NBD export name the controller mounts a function's virtual volume from; it fails for a function that exports no block device. */
export function exportNameOf<O>(fn: StorageFunction<O>, raw: Record<string, unknown>): string {
  const name = fn.exportNames?.(parseOptions(fn, raw))[0];
  if (name === undefined) throw notSupported(`function '${fn.name}' exports no block device, so it cannot provide a volume`);
  return name;
}

/** The URL a real client uses to reach a running function (printed by `storvisor start`). */
export function clientUrlOf<O>(fn: StorageFunction<O>, address: { host: string; port: number }, raw: Record<string, unknown>): string {
  return fn.clientUrl ? fn.clientUrl(address, parseOptions(fn, raw)) : `tcp://${address.host}:${address.port}`;
}
