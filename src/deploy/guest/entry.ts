import { fileURLToPath } from 'node:url';

/**
 * How to start a guest's code: compiled JavaScript when a fresh build exists
 * (fast: no TypeScript transform per start), else the TypeScript sources
 * through tsx.
 */
export interface GuestEntry {
  file: string;
  execArgv: string[];
  compiled: boolean;
}

export function guestEntry(kind: 'process' | 'thread'): GuestEntry {
  const ts = fileURLToPath(new URL(kind === 'process' ? './process-main.ts' : './worker-main.ts', import.meta.url));
  // Resolved from here, not from the controller's working directory.
  return { file: ts, execArgv: ['--import', import.meta.resolve('tsx')], compiled: false };
}
