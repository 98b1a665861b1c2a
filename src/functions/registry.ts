import type { StorageFunction } from './types.ts';

/**
 * The functions storvisor knows, by the name config files use. Modules load
 * lazily: a guest worker imports only its own function.
 */
const loaders: Record<string, () => Promise<{ default: StorageFunction<any> }>> = {
  'nbd-export': () => import('./nbd-export.ts'),
};

export function functionNames(): string[] {
  return Object.keys(loaders).sort();
}

export function hasFunction(name: string): boolean {
  return Object.hasOwn(loaders, name);
}

export async function loadFunction(name: string): Promise<StorageFunction<any>> {
  const load = loaders[name];
  if (!load) throw new Error(`unknown function '${name}' (known: ${functionNames().join(', ')})`);
  const mod = await load();
  if (mod.default?.apiVersion !== 1) throw new Error(`function module '${name}' does not export a StorageFunction with apiVersion 1`);
  return mod.default;
}
