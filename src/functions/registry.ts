import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { StorageFunction } from './types.ts';

/**
 * The functions storvisor knows, by the name config files use. Modules load
 * lazily: a guest worker imports only its own function. A name that is a path
 * (contains '/') loads a user's own function module from that file.
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
  const load = isPath(name) ? () => import(pathToFileURL(resolve(name)).href) : loaders[name];
  if (!load) throw new Error(`unknown function '${name}' (known: ${functionNames().join(', ')}, or a module path)`);
  const mod = await load();
  if (mod.default?.apiVersion !== 1) throw new Error(`function module '${name}' does not export a StorageFunction with apiVersion 1`);
  return mod.default;
}

/** The NBD export name a block-exporting function uses when its options name none. */
export function defaultExportName(name: string): string {
  return name === 'dedup' ? 'dedup' : 'export';
}

/** The URL a real client uses to reach a running function (printed by `storvisor start`). */
export function clientUrl(name: string, a: { host: string; port: number }, options: Record<string, unknown>): string {
  switch (name) {
    case 'nbd-export':
    case 'dedup':
      return `nbd://${a.host}:${a.port}/${String(options.exportName ?? defaultExportName(name))}`;
    case 'fileserver':
      return `nfs://${a.host}${String(options.exportPath ?? '/export')}?nfsport=${a.port}&mountport=${a.port}&version=3`;
    case 'database':
      return `redis://${a.host}:${a.port}`;
    default:
      return `tcp://${a.host}:${a.port}`;
  }
}
