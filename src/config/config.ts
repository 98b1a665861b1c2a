import { readFileSync } from 'node:fs';
import os from 'node:os';
import { resolve, dirname } from 'node:path';
import { ConfigError } from '../util/errors.ts';

/**
 * The controller's configuration: a JSON file (or the built-in default), checked
 * field by field so that every mistake is reported with the path of the bad
 * field ("functions[1].notify: must be one of ...") before anything starts.
 */
export type NotifyMode = 'poll' | 'notify' | 'adaptive' | 'poll-guest' | 'poll-controller';
export type DeployKind = 'integrated' | 'guest' | 'gateway';
export type RestartPolicy = 'always' | 'on-failure' | 'never';
/** A guest is a worker thread (own V8 heap) or its own OS process (own address space). */
export type GuestKind = 'thread' | 'process';
/**
 * A thread priority: a nice value (-20..19; below 0 needs the privilege), or a
 * real-time policy with its priority (1..99), applied where permitted.
 */
export type Priority = { nice: number } | { policy: 'fifo' | 'rr'; rtPriority: number };

/** The controller's data-plane poller: where it runs. */
export interface PollerConfig {
  /** CPUs the controller's main thread (the poller) is pinned to; unset = not pinned. */
  cores?: number[];
  priority?: Priority;
}

export interface Endpoint {
  host: string;
  port: number;
}

export interface VolumeConfig {
  name: string;
  /** Size in bytes (config files may say sizeMiB or sizeGiB); 0 for a virtual volume (its provider decides). */
  size: number;
  /**
   * A virtual volume: the block device a data-path function (dedup, or any
   * NBD-exporting function) exports, consumed by the controller and handed to
   * other functions like any volume. Names the providing function instance.
   */
  provider?: string;
  /** Where the blocks are (default 'file': a sparse file in the data directory). */
  backend?: 'file' | 'rbd';
  /** backend 'rbd': the Ceph cluster, pool and image (see rbdLocation below). */
  rbd?: { conf: string; user: string; pool: string; image: string; timeoutSec: number };
}

export interface FunctionConfig {
  /** Instance name: used in logs, the API and metrics. */
  name: string;
  /** Function module (see src/functions/registry.ts). */
  function: string;
  volume: string;
  deploy: DeployKind;
  /** Guest only: how the queue is serviced. */
  notify: NotifyMode;
  /** Guest only: shared region size for data buffers, bytes. */
  memory: number;
  /** Guest only: V8 heap limit of the worker, MiB. */
  heapMiB: number;
  /** Queue size (descriptors), a power of two. */
  queueSize: number;
  listen: Endpoint;
  restart: RestartPolicy;
  /** Guest idle loop: `poll` keeps the guest's event loop spinning in poll modes (idle=poll); `adaptive` lets it sleep. */
  idle: 'poll' | 'adaptive';
  /** Guest only: a worker thread or its own process (unset = thread). */
  kind?: GuestKind;
  /** Process guest only: CPUs it is pinned to (static; no other pinned guest or the poller may share them). */
  cores?: number[];
  /** Process guest only: back its region with huge pages (falls back, and says so, when none are free). */
  hugepages?: boolean;
  /** Process guest only: its threads' priority. */
  priority?: Priority;
  /**
   * Guest only: keep a warm spare (region made, code loaded) so a crash is
   * replaced in milliseconds. Unset = on for process guests, off for thread guests.
   */
  standby?: boolean;
  /** Client connections the function accepts at once (more are closed at once); unset = the function's default (128). */
  maxConnections?: number;
  /** Close a client idle this long, ms (0 = never); unset = the protocol's default. */
  idleTimeoutMs?: number;
  /** The function's options; maxConnections and idleTimeoutMs are passed on here too (its start options). */
  options: Record<string, unknown>;
}

export interface Config {
  dataDir: string;
  cacheBytes: number;
  /** Use O_DIRECT where the filesystem allows it. */
  direct: boolean;
  /**
   * Thin-provisioning limit: the sum of volume sizes may reach this many times
   * the space the volumes can get (free space plus what they occupy). 1 = every
   * volume can be filled; more is overcommit. See VolumeStore.
   */
  overcommit: number;
  nbd: Endpoint | null;
  api: Endpoint | null;
  /** Adaptive polling: how long the controller poller spins after the last request before it sleeps. */
  spinBudgetUs: number;
  volumes: VolumeConfig[];
  functions: FunctionConfig[];
  /** Unset = not pinned, default priority. */
  poller?: PollerConfig;
}

/** Lives with every other error in util/errors.ts; re-exported for config's callers. */
export { ConfigError };

const MiB = 1024 * 1024;

/**
 * What `npm start` runs with no config file: one of each function, each in a
 * guest on its own thin volume, plus the controller's own NBD export. The NBD
 * re-export runs as a process guest (its own address space); the others are
 * thread guests. defaultConfig() adds static cores where there are two.
 */
export const DEFAULT_CONFIG = {
  dataDir: './data',
  cacheMiB: 256,
  nbd: { host: '127.0.0.1', port: 10809 },
  api: { host: '127.0.0.1', port: 10880 },
  volumes: [
    { name: 'vol0', sizeGiB: 1 },
    { name: 'nbd-guest', sizeGiB: 1 },
    { name: 'files', sizeGiB: 2 },
    { name: 'db', sizeGiB: 1 },
    { name: 'dedup-backing', sizeGiB: 1 },
  ],
  functions: [
    { name: 'nbd0', function: 'nbd-export', volume: 'nbd-guest', kind: 'process', listen: { port: 10810 }, options: { exportName: 'export' } },
    { name: 'nfs0', function: 'fileserver', volume: 'files', listen: { port: 12049 }, options: { exportPath: '/export' } },
    { name: 'redis0', function: 'database', volume: 'db', listen: { port: 16379 }, options: { appendfsync: 'always' } },
    {
      name: 'dedup0',
      function: 'dedup',
      volume: 'dedup-backing',
      listen: { port: 10811 },
      options: { logicalSize: 4 * 1024 * MiB, compression: 'lz4', dedup: true, exportName: 'dedup' },
    },
  ],
};

/**
 * The default config for a machine with `cpus` CPUs: with two or more, the
 * process guest gets its own core (the last) and the controller's poller the
 * first, statically, as the paper gives each its own core.
 */
export function defaultConfig(cpus: number = os.cpus().length): typeof DEFAULT_CONFIG & { poller?: PollerConfig } {
  if (cpus < 2) return DEFAULT_CONFIG;
  return {
    ...DEFAULT_CONFIG,
    poller: { cores: [0] },
    functions: DEFAULT_CONFIG.functions.map((f) => (f.name === 'nbd0' ? { ...f, cores: [cpus - 1] } : f)),
  };
}

type Raw = Record<string, unknown>;

function obj(v: unknown, path: string): Raw {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConfigError(path, `must be an object (got ${show(v)})`);
  return v as Raw;
}

function show(v: unknown): string {
  return v === undefined ? 'nothing' : JSON.stringify(v);
}

function onlyKeys(o: Raw, path: string, allowed: string[]): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw new ConfigError(`${path}.${k}`.replace(/^\./, ''), `unknown field (known: ${allowed.join(', ')})`);
  }
}

function str(o: Raw, key: string, path: string, dflt?: string): string {
  const v = o[key] ?? dflt;
  if (typeof v !== 'string' || v === '') throw new ConfigError(join(path, key), `must be a non-empty string (got ${show(o[key])})`);
  return v;
}

function num(o: Raw, key: string, path: string, dflt: number | undefined, min: number, max: number): number {
  const v = o[key] ?? dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    throw new ConfigError(join(path, key), `must be a number from ${min} to ${max} (got ${show(o[key])})`);
  }
  return v;
}

function int(o: Raw, key: string, path: string, dflt: number | undefined, min: number, max: number): number {
  const v = num(o, key, path, dflt, min, max);
  if (!Number.isInteger(v)) throw new ConfigError(join(path, key), `must be a whole number (got ${show(o[key])})`);
  return v;
}

function oneOf<T extends string>(o: Raw, key: string, path: string, dflt: T, allowed: readonly T[]): T {
  const v = o[key] ?? dflt;
  if (!allowed.includes(v as T)) throw new ConfigError(join(path, key), `must be one of ${allowed.join(', ')} (got ${show(o[key])})`);
  return v as T;
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

function endpoint(v: unknown, path: string, dflt: { host?: string; port?: number } | null): Endpoint | null {
  if (v === null || v === false) return null;
  const o = obj(v ?? dflt ?? {}, path);
  onlyKeys(o, path, ['host', 'port']);
  return { host: str(o, 'host', path, dflt?.host ?? '127.0.0.1'), port: int(o, 'port', path, dflt?.port, 0, 65535) };
}

/** Bytes from `size` (bytes), `sizeMiB` or `sizeGiB`: exactly one. */
function size(o: Raw, path: string, base: string, dflt?: number): number {
  const given = [base, `${base}MiB`, `${base}GiB`].filter((k) => o[k] !== undefined);
  if (given.length > 1) throw new ConfigError(join(path, given[1]!), `give only one of ${given.join(', ')}`);
  if (given.length === 0) {
    if (dflt === undefined) throw new ConfigError(join(path, `${base}MiB`), 'is required');
    return dflt;
  }
  const k = given[0]!;
  const scale = k.endsWith('GiB') ? 1024 * MiB : k.endsWith('MiB') ? MiB : 1;
  const v = num(o, k, path, undefined, 0, 2 ** 50 / scale) * scale;
  if (!Number.isSafeInteger(v)) throw new ConfigError(join(path, k), 'must be a whole number of bytes');
  return v;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function name(o: Raw, path: string): string {
  const n = str(o, 'name', path);
  if (!NAME.test(n)) throw new ConfigError(join(path, 'name'), `'${n}' must be 1-64 letters, digits, '.', '_' or '-'`);
  return n;
}

/**
 * Validate a parsed config object. `baseDir` resolves a relative dataDir
 * (the config file's directory, or the working directory).
 */
export function parseConfig(raw: unknown, baseDir: string, env: NodeJS.ProcessEnv = process.env): Config {
  const o = obj(raw, 'config');
  onlyKeys(o, '', ['dataDir', 'cacheMiB', 'cache', 'direct', 'overcommit', 'nbd', 'api', 'spinBudgetUs', 'volumes', 'functions', 'poller', '$comment']);
  const cpuCount = env.STORVISOR_CPUS !== undefined ? Number(env.STORVISOR_CPUS) : os.cpus().length;
  const dataDir = resolve(baseDir, env.STORVISOR_DATA ?? str(o, 'dataDir', '', DEFAULT_CONFIG.dataDir));
  const cacheBytes = size(o, '', 'cache', DEFAULT_CONFIG.cacheMiB * MiB);
  const direct = o.direct ?? true;
  if (typeof direct !== 'boolean') throw new ConfigError('direct', `must be true or false (got ${show(direct)})`);

  const volumesRaw = o.volumes ?? [];
  if (!Array.isArray(volumesRaw)) throw new ConfigError('volumes', 'must be a list');
  const volumes = volumesRaw.map((v, i): VolumeConfig => {
    const path = `volumes[${i}]`;
    const vo = obj(v, path);
    onlyKeys(vo, path, ['name', 'size', 'sizeMiB', 'sizeGiB', 'provider', 'backend', 'rbd']);
    if (vo.provider !== undefined) {
      if (['size', 'sizeMiB', 'sizeGiB'].some((k) => vo[k] !== undefined)) throw new ConfigError(join(path, 'provider'), 'a virtual volume takes its size from its provider: give no size');
      return { name: name(vo, path), size: 0, provider: str(vo, 'provider', path) };
    }
    const bytes = size(vo, path, 'size');
    if (bytes <= 0 || bytes % 4096) throw new ConfigError(join(path, 'size'), `must be a positive multiple of 4096 bytes (got ${bytes})`);
    return { name: name(vo, path), size: bytes, ...volumeBackend(vo, path) };
  });
  unique(volumes.map((v) => v.name), 'volumes');

  const functionsRaw = o.functions ?? [];
  if (!Array.isArray(functionsRaw)) throw new ConfigError('functions', 'must be a list');
  const functions = functionsRaw.map((f, i): FunctionConfig => {
    const path = `functions[${i}]`;
    const fo = obj(f, path);
    onlyKeys(fo, path, ['name', 'function', 'volume', 'deploy', 'notify', 'memory', 'memoryMiB', 'heapMiB', 'queueSize', 'listen', 'restart', 'idle', 'maxConnections', 'idleTimeoutMs', 'options', 'kind', 'cores', 'hugepages', 'priority', 'standby']);
    const volume = str(fo, 'volume', path);
    if (!volumes.some((v) => v.name === volume)) {
      throw new ConfigError(join(path, 'volume'), `no volume named '${volume}' in volumes (have: ${volumes.map((v) => v.name).join(', ') || 'none'})`);
    }
    const queueSize = int(fo, 'queueSize', path, 256, 2, 32768);
    if (queueSize & (queueSize - 1)) throw new ConfigError(join(path, 'queueSize'), `must be a power of two (got ${queueSize})`);
    const options = fo.options === undefined ? {} : obj(fo.options, join(path, 'options'));
    const limits = connectionLimits(fo, path, options);
    const deploy = oneOf(fo, 'deploy', path, 'guest', ['integrated', 'guest', 'gateway'] as const);
    const kind = oneOf(fo, 'kind', path, 'thread', ['thread', 'process'] as const);
    if (fo.kind !== undefined && deploy !== 'guest') throw new ConfigError(join(path, 'kind'), `only a guest has a kind (deploy is '${deploy}')`);
    for (const key of ['cores', 'hugepages', 'priority'] as const) {
      if (fo[key] !== undefined && (deploy !== 'guest' || kind !== 'process')) throw new ConfigError(join(path, key), 'only a process guest takes it (set "kind": "process")');
    }
    const hugepages = fo.hugepages ?? false;
    if (typeof hugepages !== 'boolean') throw new ConfigError(join(path, 'hugepages'), `must be true or false (got ${show(hugepages)})`);
    const cores = fo.cores === undefined ? undefined : cpuList(fo.cores, join(path, 'cores'), cpuCount);
    const priority = fo.priority === undefined ? undefined : parsePriority(fo.priority, join(path, 'priority'));
    if (fo.standby !== undefined && typeof fo.standby !== 'boolean') throw new ConfigError(join(path, 'standby'), `must be true or false (got ${show(fo.standby)})`);
    if (fo.standby !== undefined && deploy !== 'guest') throw new ConfigError(join(path, 'standby'), `only a guest has a standby (deploy is '${deploy}')`);
    return {
      name: name(fo, path),
      function: str(fo, 'function', path),
      volume,
      deploy,
      notify: oneOf(fo, 'notify', path, 'adaptive', ['poll', 'notify', 'adaptive', 'poll-guest', 'poll-controller'] as const),
      memory: size(fo, path, 'memory', 64 * MiB),
      heapMiB: int(fo, 'heapMiB', path, 256, 16, 65536),
      queueSize,
      listen: endpoint(fo.listen, join(path, 'listen'), { host: '127.0.0.1', port: 0 })!,
      restart: oneOf(fo, 'restart', path, 'on-failure', ['always', 'on-failure', 'never'] as const),
      idle: oneOf(fo, 'idle', path, 'adaptive', ['poll', 'adaptive'] as const),
      kind,
      ...(cores ? { cores } : {}),
      hugepages,
      ...(priority ? { priority } : {}),
      ...(fo.standby !== undefined ? { standby: fo.standby as boolean } : {}),
      ...limits,
      options: { ...options, ...limits },
    };
  });
  unique(functions.map((f) => f.name), 'functions');
  for (const [i, v] of volumes.entries()) {
    if (v.provider === undefined) continue;
    const at = functions.findIndex((f) => f.name === v.provider);
    if (at < 0) throw new ConfigError(`volumes[${i}].provider`, `no function named '${v.provider}' in functions`);
    if (functions[at]!.volume === v.name) throw new ConfigError(`volumes[${i}].provider`, `'${v.provider}' cannot sit on the volume it provides`);
    const early = functions.findIndex((f, j) => j < at && f.volume === v.name);
    if (early >= 0) throw new ConfigError(`functions[${early}].volume`, `'${v.name}' is provided by '${v.provider}', which must come first in functions`);
  }

  const poller = parsePoller(o.poller, cpuCount);
  staticCores(functions, poller);

  return {
    dataDir,
    cacheBytes,
    direct,
    overcommit: num(o, 'overcommit', '', 1, 0.01, 1000),
    nbd: endpoint(o.nbd, 'nbd', DEFAULT_CONFIG.nbd),
    api: endpoint(o.api, 'api', DEFAULT_CONFIG.api),
    spinBudgetUs: num(o, 'spinBudgetUs', '', 200, 0, 1e7),
    volumes,
    functions,
    poller,
  };
}

/**
 * volumes[i].backend: 'file' (default) or 'rbd' with volumes[i].rbd = { conf,
 * user, pool, image, timeoutSec }; defaults /etc/ceph/ceph.conf, admin, rbd,
 * the volume's name, 30 s.
 */
function volumeBackend(vo: Raw, path: string): Pick<VolumeConfig, 'backend' | 'rbd'> {
  const backend = oneOf(vo, 'backend', path, 'file', ['file', 'rbd'] as const);
  if (backend === 'file') {
    if (vo.rbd !== undefined) throw new ConfigError(join(path, 'rbd'), `only for backend "rbd" (backend is "file")`);
    return {};
  }
  const p = join(path, 'rbd');
  const ro = obj(vo.rbd ?? {}, p);
  onlyKeys(ro, p, ['conf', 'user', 'pool', 'image', 'timeoutSec']);
  const user = str(ro, 'user', p, 'admin');
  if (user.startsWith('client.')) throw new ConfigError(join(p, 'user'), `give the user without 'client.' (got ${show(user)})`);
  return {
    backend,
    rbd: {
      conf: str(ro, 'conf', p, '/etc/ceph/ceph.conf'),
      user,
      pool: str(ro, 'pool', p, 'rbd'),
      image: str(ro, 'image', p, str(vo, 'name', path)),
      timeoutSec: int(ro, 'timeoutSec', p, 30, 0, 3600),
    },
  };
}

/**
 * A CPU list: [0, 2] or "0,2-3". Every CPU must exist on this machine
 * (0..cpus-1); duplicates are refused. Returned sorted.
 */
function cpuList(v: unknown, path: string, cpuCount: number): number[] {
  let list: unknown[];
  if (typeof v === 'string') {
    list = [];
    for (const part of v.split(',')) {
      const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
      if (!m) throw new ConfigError(path, `must be a CPU list like "0,2-3" (got ${show(v)})`);
      const lo = Number(m[1]);
      const hi = m[2] === undefined ? lo : Number(m[2]);
      if (hi < lo || hi - lo > 4096) throw new ConfigError(path, `bad CPU range '${part.trim()}'`);
      for (let c = lo; c <= hi; c++) list.push(c);
    }
  } else if (Array.isArray(v)) {
    list = v;
  } else {
    throw new ConfigError(path, `must be a list of CPU numbers or a CPU list string (got ${show(v)})`);
  }
  if (list.length === 0) throw new ConfigError(path, 'must name at least one CPU');
  const out = new Set<number>();
  for (const c of list) {
    if (typeof c !== 'number' || !Number.isInteger(c) || c < 0) throw new ConfigError(path, `${show(c)} is not a CPU number`);
    if (c >= cpuCount) throw new ConfigError(path, `CPU ${c} does not exist (this machine has CPUs 0-${cpuCount - 1})`);
    if (out.has(c)) throw new ConfigError(path, `CPU ${c} is listed twice`);
    out.add(c);
  }
  return [...out].sort((a, b) => a - b);
}

function parsePriority(v: unknown, path: string): Priority {
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < -20 || v > 19) throw new ConfigError(path, `a nice value must be a whole number from -20 to 19 (got ${show(v)})`);
    return { nice: v };
  }
  const o = obj(v, path);
  onlyKeys(o, path, ['nice', 'policy', 'rtPriority']);
  if (o.policy === undefined) return { nice: int(o, 'nice', path, 0, -20, 19) };
  if (o.nice !== undefined) throw new ConfigError(join(path, 'nice'), 'give either nice or a real-time policy');
  return { policy: oneOf(o, 'policy', path, 'fifo', ['fifo', 'rr'] as const), rtPriority: int(o, 'rtPriority', path, 1, 1, 99) };
}

function parsePoller(v: unknown, cpuCount: number): PollerConfig {
  if (v === undefined) return {};
  const o = obj(v, 'poller');
  onlyKeys(o, 'poller', ['cores', 'priority']);
  const out: PollerConfig = {};
  if (o.cores !== undefined) out.cores = cpuList(o.cores, 'poller.cores', cpuCount);
  if (o.priority !== undefined) out.priority = parsePriority(o.priority, 'poller.priority');
  return out;
}

/**
 * Static cores: a pinned process guest owns its cores. No two guests, and
 * no guest and the poller, may share one (the paper gives each its own).
 */
function staticCores(functions: FunctionConfig[], poller: PollerConfig): void {
  const owner = new Map<number, string>();
  for (const c of poller.cores ?? []) owner.set(c, 'poller.cores');
  for (const [i, f] of functions.entries()) {
    for (const c of f.cores ?? []) {
      const other = owner.get(c);
      if (other !== undefined) throw new ConfigError(`functions[${i}].cores`, `CPU ${c} is already given to ${other}: static cores must not overlap`);
      owner.set(c, `functions[${i}].cores (${f.name})`);
    }
  }
}

/**
 * functions[i].maxConnections / idleTimeoutMs: checked here, handed to the
 * function in its options (the start options every deployment passes on).
 */
function connectionLimits(fo: Raw, path: string, options: Raw): { maxConnections?: number; idleTimeoutMs?: number } {
  const out: { maxConnections?: number; idleTimeoutMs?: number } = {};
  for (const key of ['maxConnections', 'idleTimeoutMs'] as const) {
    if (options[key] !== undefined) throw new ConfigError(join(join(path, 'options'), key), `set it as ${join(path, key)}`);
    if (fo[key] === undefined) continue;
    out[key] = key === 'maxConnections' ? int(fo, key, path, undefined, 1, 65536) : int(fo, key, path, undefined, 0, 7 * 24 * 3600 * 1000);
  }
  return out;
}

function unique(names: string[], path: string): void {
  const seen = new Set<string>();
  for (const [i, n] of names.entries()) {
    if (seen.has(n)) throw new ConfigError(`${path}[${i}].name`, `'${n}' is used twice`);
    seen.add(n);
  }
}

/** Load a config file, or the built-in default when `file` is undefined. */
export function loadConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Config {
  if (file === undefined) return parseConfig(defaultConfig(), process.cwd(), env);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, `cannot read: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(file, `is not valid JSON: ${(err as Error).message}`);
  }
  return parseConfig(raw, dirname(resolve(file)), env);
}
