import { closeSync, fsyncSync, openSync, readSync, renameSync, unlinkSync, writeSync, constants } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseConfig, ConfigError, type Config, type FunctionConfig, type NotifyMode } from '../config/config.ts';
import { invalidArgument, runtimeStateError, StorvisorError } from '../util/errors.ts';

/**
 * What the management API changed on a running controller, kept in
 * `<dataDir>/runtime-state.json` so that a restart comes back in the same
 * shape. The config file stays the operator's; this file records only the
 * differences from it, and is applied on top of it at start:
 *  - `deletedVolumes`: config volumes deleted at runtime (not re-created);
 *  - `removedFunctions`: config functions undeployed at runtime;
 *  - `addedFunctions`: functions deployed at runtime, as their raw config
 *    objects (re-validated at every start, like the config file);
 *  - `notify`: notification modes changed at runtime, by function name.
 * Volumes created or resized at runtime need no entry: the volume store
 * persists them (their manifests are in the data directory).
 *
 * Written atomically: a temporary file is written and fsynced, renamed over the
 * old one and the directory fsynced, so a crash leaves the old state or the new
 * one, never a torn file. The controller writes it only after a change took
 * effect, and only from one process (the data directory is locked).
 */
export const RUNTIME_STATE_FILE = 'runtime-state.json';
/** A state file bigger than this is refused (it holds a few lines per function). */
const MAX_STATE_BYTES = 1024 * 1024;

export interface RuntimeState {
  version: 1;
  deletedVolumes: string[];
  removedFunctions: string[];
  addedFunctions: Record<string, unknown>[];
  notify: Record<string, NotifyMode>;
}

export function emptyState(): RuntimeState {
  return { version: 1, deletedVolumes: [], removedFunctions: [], addedFunctions: [], notify: {} };
}

export function statePath(dataDir: string): string {
  return join(dataDir, RUNTIME_STATE_FILE);
}

const stateError = (path: string, what: string) =>
  runtimeStateError(`runtime state ${path} ${what}; fix or remove it (the controller then starts from the config file alone)`);

/** The state in `dataDir`, or an empty one when there is none. A damaged file is an error, not silently dropped. */
export function readRuntimeState(dataDir: string): RuntimeState {
  const path = statePath(dataDir);
  let text: string;
  try {
    const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const buf = Buffer.alloc(MAX_STATE_BYTES + 1);
      const n = readSyncAll(fd, buf);
      if (n > MAX_STATE_BYTES) throw stateError(path, `is over ${MAX_STATE_BYTES} bytes`);
      text = buf.subarray(0, n).toString('utf8');
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyState();
    if (err instanceof StorvisorError) throw err;
    throw stateError(path, `cannot be read: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw stateError(path, `is not valid JSON: ${(err as Error).message}`);
  }
  const o = raw as Partial<RuntimeState> | null;
  const names = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === 'string');
  if (
    typeof o !== 'object' ||
    o === null ||
    o.version !== 1 ||
    !names(o.deletedVolumes) ||
    !names(o.removedFunctions) ||
    !Array.isArray(o.addedFunctions) ||
    !o.addedFunctions.every((f) => typeof f === 'object' && f !== null && !Array.isArray(f)) ||
    typeof o.notify !== 'object' ||
    o.notify === null
  ) {
    throw stateError(path, 'does not have the expected fields (version 1)');
  }
  return o as RuntimeState;
}

function readSyncAll(fd: number, buf: Buffer): number {
  let n = 0;
  for (;;) {
    const got = readSync(fd, buf, n, buf.length - n, n);
    if (got === 0 || n + got >= buf.length) return n + got;
    n += got;
  }
}

/** Replace the state file atomically (write + fsync a temporary, rename, fsync the directory). */
export function writeRuntimeState(dataDir: string, state: RuntimeState): void {
  const path = statePath(dataDir);
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    writeSync(fd, JSON.stringify(state, null, 2) + '\n');
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, path);
  } catch (err) {
    unlinkSync(tmp);
    throw err;
  }
  const dir = openSync(dataDir, 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/**
 * Validate one function's raw config (an API body or a state entry) exactly as
 * the config file's would be, against the named volume. The volume's existence
 * is checked by the controller at deploy time, not here.
 */
export function parseFunction(raw: Record<string, unknown>, dataDir: string): FunctionConfig {
  const volume = typeof raw.volume === 'string' ? raw.volume : '';
  try {
    const c = parseConfig({ dataDir, api: null, nbd: null, volumes: volume ? [{ name: volume, size: 4096 }] : [], functions: [raw] }, dataDir, {});
    return c.functions[0]!;
  } catch (err) {
    if (err instanceof ConfigError) {
      // The path inside the synthetic config ("functions[0].notify") reads better without its index.
      throw invalidArgument(err.message.replace(/^functions\[0\]\.?/, '').replace(/^: /, ''));
    }
    throw err;
  }
}

/** The config the controller starts with: the config file's, with the runtime state applied on top. */
export function applyRuntimeState(config: Config, state: RuntimeState, log: (m: string) => void = () => {}): Config {
  const deleted = new Set(state.deletedVolumes);
  const removed = new Set(state.removedFunctions);
  const functions: FunctionConfig[] = [];
  for (const f of config.functions) {
    if (removed.has(f.name)) continue;
    const notify = state.notify[f.name];
    functions.push(notify && f.deploy === 'guest' ? { ...f, notify } : f);
  }
  for (const raw of state.addedFunctions) {
    let f: FunctionConfig;
    try {
      f = parseFunction(raw, config.dataDir);
    } catch (err) {
      log(`runtime state: skipping a function deployed at runtime: ${(err as Error).message}`);
      continue;
    }
    if (functions.some((g) => g.name === f.name)) {
      log(`function ${f.name}: deployed at runtime and also in the config file; the config file's wins`);
      continue;
    }
    const notify = state.notify[f.name];
    functions.push(notify && f.deploy === 'guest' ? { ...f, notify } : f);
  }
  return { ...config, volumes: config.volumes.filter((v) => !deleted.has(v.name)), functions };
}
