import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * How to start a guest's code: the compiled JavaScript in build/guest (made by
 * scripts/build-guest.mjs at npm install) when it is there and not stale, so
 * a guest (re)starts without tsx transforming TypeScript; else the TypeScript
 * sources through tsx. Stale = any source the build read has changed size or
 * mtime since. A function given as a .ts module path needs tsx in the guest
 * either way.
 */
export interface GuestEntry {
  file: string;
  execArgv: string[];
  compiled: boolean;
  /** Why the compiled build is not used ('' when it is). */
  why: string;
}

/** The package root (nearest package.json up from here; this file may itself run from build/guest). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  return process.cwd();
}

const root = packageRoot();
const buildDir = join(root, 'build', 'guest');
/** How long a freshness check is trusted (a restart loop must not stat 100 files per start). */
const CHECK_TTL_MS = 1000;
let checked: { at: number; why: string } | undefined;

/** '' when build/guest matches the sources, else why not. */
export function compiledGuestStale(): string {
  const now = Date.now();
  if (checked && now - checked.at < CHECK_TTL_MS) return checked.why;
  let why = '';
  try {
    const manifest = JSON.parse(readFileSync(join(buildDir, 'manifest.json'), 'utf8')) as { inputs: Record<string, { size: number; mtimeMs: number }> };
    for (const [file, was] of Object.entries(manifest.inputs)) {
      const st = statSync(join(root, file), { throwIfNoEntry: false });
      if (!st || st.size !== was.size || st.mtimeMs !== was.mtimeMs) {
        why = `${file} changed since the build (npm install rebuilds it)`;
        break;
      }
    }
  } catch {
    why = 'no compiled guest code in build/guest (npm install builds it)';
  }
  if (process.env.STORVISOR_GUEST_TSX === '1') why = 'STORVISOR_GUEST_TSX=1';
  checked = { at: now, why };
  return why;
}

const needsTsx = (functionName: string) => functionName.includes('/') && /\.[cm]?tsx?$/.test(functionName);

export function guestEntry(kind: 'process' | 'thread', functionName = ''): GuestEntry {
  const tsx = import.meta.resolve('tsx');
  const here = dirname(fileURLToPath(import.meta.url));
  const stale = compiledGuestStale();
  if (stale === '') {
    const file = join(buildDir, kind === 'process' ? 'process-main.mjs' : 'worker-main.mjs');
    // A .ts function module still needs tsx loaded in the guest (the guest's own code is compiled).
    return { file, execArgv: needsTsx(functionName) ? ['--import', tsx] : [], compiled: true, why: '' };
  }
  if (kind === 'thread') return { file: join(here, 'worker-boot.mjs'), execArgv: [], compiled: false, why: stale };
  return { file: join(here, 'process-main.ts'), execArgv: ['--import', tsx], compiled: false, why: stale };
}
