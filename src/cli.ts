import { readFileSync, statSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { loadConfig, ConfigError } from './config/config.ts';
import { Controller } from './controller/controller.ts';
import { readRuntimeState, writeRuntimeState } from './controller/runtime-state.ts';
import { startApi } from './api/server.ts';
import { loadOrCreateToken, readToken, tokenPath } from './api/token.ts';
import { ApiClient, noController } from './api/client.ts';
import { renderFunctions, renderStatus, renderTop, renderVolumes, type StatusInfo, type VolumeInfo } from './api/render.ts';
import { VolumeStore } from './storage/volume-store.ts';
import { BlockCache } from './storage/block-cache.ts';
import { lockDataDir } from './controller/data-dir-lock.ts';
import { functionNames } from './functions/registry.ts';
import { parseSize, formatBytes } from './util/size.ts';
import { invalidArgument, StorvisorError, usage } from './util/errors.ts';
import { createLogger, LOG_FORMATS, LOG_LEVELS, setRootLogger, type LogFormat, type LogLevel } from './util/log.ts';
import type { Config } from './config/config.ts';
import type { DeploymentStatus } from './deploy/types.ts';

/**
 * The storvisor command line (commander). Every command but `start` talks to
 * the running controller through its management API (the token is read from
 * <dataDir>/api-token, the data directory from --config); the volume commands
 * work on the data directory directly when no controller runs on it.
 *
 * Output: tables for people (src/api/render.ts), `--json` for scripts (the
 * API's JSON as it is). Errors: one line on stderr saying what to do, with its
 * stable code in brackets, exit 1 (`--json`: a JSON object {error, code}
 * instead); usage errors exit 2.
 */
interface Globals {
  config?: string;
  api?: string;
  json?: boolean;
}

const out = (s: string): void => void process.stdout.write(s);
const printJson = (v: unknown): void => out(JSON.stringify(v, null, 2) + '\n');

function apiBase(config: Config, override: string | undefined): string {
  if (override) return override.replace(/\/+$/, '');
  if (!config.api) throw invalidArgument('the management API is disabled in this config (api: null); pass --api URL');
  const host = config.api.host.includes(':') ? `[${config.api.host}]` : config.api.host;
  return `http://${host}:${config.api.port}`;
}

function clientFor(g: Globals): { client: ApiClient; config: Config } {
  const config = loadConfig(g.config);
  return { client: new ApiClient({ base: apiBase(config, g.api), token: readToken(config.dataDir), tokenPath: tokenPath(config.dataDir) }), config };
}

function globals(cmd: Command): Globals {
  return cmd.optsWithGlobals() as Globals;
}

// ---- start ---------------------------------------------------------------

async function start(g: Globals & { logFormat: LogFormat; logLevel: LogLevel }): Promise<void> {
  const logger = createLogger({ format: g.logFormat, level: g.logLevel });
  setRootLogger(logger);
  const log = logger.sink();
  // Signals are taken from the first instant: a SIGTERM during start-up stops cleanly once started.
  const stopRequested = new Promise<void>((resolve) => {
    const onSignal = (sig: string) => {
      log(`${sig}: stopping (finishing in-flight I/O, syncing volumes)`);
      resolve();
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
  const config = loadConfig(g.config);
  log(`storvisor: data directory ${config.dataDir}, read cache ${formatBytes(config.cacheBytes)}, ${process.env.UV_THREADPOOL_SIZE ?? 4} I/O threads`);
  const controller = await Controller.start(config, log);
  let api: Awaited<ReturnType<typeof startApi>> | undefined;
  try {
    api = config.api ? await startApi(controller, { ...config.api, token: loadOrCreateToken(config.dataDir) }) : undefined;
  } catch (err) {
    await controller.stop();
    throw err;
  }
  const endpoints = [
    ...(api ? [{ name: 'api', kind: 'management API (/status, /metrics)', url: `http://${api.address.host}:${api.address.port}/status` }] : []),
    ...(await controller.endpoints()),
  ];
  if (g.logFormat === 'json') {
    for (const e of endpoints) logger.info(`endpoint ${e.url}`, { endpoint: e.name, kind: e.kind, url: e.url });
    logger.info('ready');
  } else {
    out('\nendpoints:\n');
    for (const e of endpoints) {
      out(`  ${e.kind.padEnd(40)} ${e.url}\n`);
      if (e.name === 'api') out(`  ${''.padEnd(40)} Authorization: Bearer <token in ${tokenPath(config.dataDir)}>\n`);
    }
    out('\nCtrl-C stops the controller cleanly.\n\n');
  }

  await stopRequested;
  const t0 = performance.now();
  const forced = setTimeout(() => {
    log('shutdown is taking longer than 30 s; exiting');
    process.exit(1);
  }, 30_000);
  forced.unref();
  if (api) {
    api.server.closeIdleConnections();
    await new Promise<void>((r) => api.server.close(() => r()));
  }
  await controller.stop();
  log(`stopped in ${Math.round(performance.now() - t0)} ms`);
  return;
}

// ---- status, top, metrics, wait-ready -----------------------------------

async function status(g: Globals): Promise<void> {
  const { client } = clientFor(g);
  const s = await client.request<StatusInfo>('GET', '/status');
  if (g.json) printJson(s);
  else out(renderStatus(s));
  return;
}

async function top(g: Globals, opts: { interval: string; iterations?: string }): Promise<void> {
  const { client } = clientFor(g);
  const interval = Number(opts.interval);
  if (!(interval >= 0.2 && interval <= 3600)) throw invalidArgument(`--interval must be from 0.2 to 3600 seconds (got ${opts.interval})`);
  const iterations = opts.iterations === undefined ? Infinity : Number(opts.iterations);
  if (!(iterations >= 1)) throw invalidArgument(`--iterations must be at least 1 (got ${opts.iterations})`);
  const tty = process.stdout.isTTY === true;
  let prev = await client.request<StatusInfo>('GET', '/status');
  let prevAt = performance.now();
  for (let i = 0; i < iterations; i++) {
    await new Promise((r) => setTimeout(r, interval * 1000));
    const cur = await client.request<StatusInfo>('GET', '/status');
    const now = performance.now();
    const screen = renderTop(prev, cur, (now - prevAt) / 1000);
    out(tty ? `\x1b[H\x1b[2J${screen}` : `${screen}\n`);
    prev = cur;
    prevAt = now;
  }
  return;
}

async function metrics(g: Globals): Promise<void> {
  const { client } = clientFor(g);
  out(await client.text('/metrics'));
  return;
}

/** Wait until the controller's API answers /status (systemd's ExecStartPost readiness check). */
async function waitReady(g: Globals, opts: { timeout: string }): Promise<void> {
  const config = loadConfig(g.config);
  const base = apiBase(config, g.api);
  const deadline = performance.now() + Number(opts.timeout) * 1000;
  let last: unknown;
  while (performance.now() < deadline) {
    try {
      const client = new ApiClient({ base, token: readToken(config.dataDir), tokenPath: tokenPath(config.dataDir), timeoutMs: 2000 });
      await client.request('GET', '/status');
      if (!g.json) out(`ready: ${base}\n`);
      return;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw last instanceof StorvisorError ? last : noController(base);
}

// ---- volumes -------------------------------------------------------------

type VolumeOp = { verb: 'list' } | { verb: 'create'; name: string; size: number } | { verb: 'resize'; name: string; size: number; allowShrink: boolean } | { verb: 'delete'; name: string };

/** Through the controller when one runs on the data directory (it knows who uses a volume); on the directory itself otherwise. */
async function volume(g: Globals, op: VolumeOp): Promise<void> {
  const config = loadConfig(g.config);
  let unlock: (() => void) | undefined;
  if (!g.api) {
    try {
      unlock = lockDataDir(config.dataDir);
    } catch (err) {
      if ((err as StorvisorError).code !== 'SV_ERR_DATA_DIR_BUSY') throw err;
    }
  }
  if (!unlock) return volumeViaApi(g, op);
  try {
    const store = new VolumeStore(config.dataDir, new BlockCache(0), () => {}, config.direct, config.overcommit);
    let result: unknown;
    switch (op.verb) {
      case 'list': {
        const list = store.list().map((m) => ({ ...m, usedBytes: usedBytes(store, m.name) }));
        if (g.json) printJson(list);
        else out(renderVolumes(list as VolumeInfo[], []));
        return;
      }
      case 'create':
        result = store.create(op.name, op.size);
        forgetDeleted(config.dataDir, op.name);
        break;
      case 'resize':
        result = await store.resize(op.name, op.size, { allowShrink: op.allowShrink });
        break;
      case 'delete':
        await store.delete(op.name);
        // A config volume would come back at the next start: record it as deleted, as the controller does.
        if (config.volumes.some((v) => v.name === op.name)) {
          const st = readRuntimeState(config.dataDir);
          if (!st.deletedVolumes.includes(op.name)) writeRuntimeState(config.dataDir, { ...st, deletedVolumes: [...st.deletedVolumes, op.name] });
        }
        result = { deleted: op.name };
        break;
    }
    volumeDone(g, op, result);
    return;
  } finally {
    unlock();
  }
}

function forgetDeleted(dataDir: string, name: string): void {
  const st = readRuntimeState(dataDir);
  if (st.deletedVolumes.includes(name)) writeRuntimeState(dataDir, { ...st, deletedVolumes: st.deletedVolumes.filter((v) => v !== name) });
}

function usedBytes(store: VolumeStore, name: string): number | undefined {
  try {
    return statSync(store.imagePath(name)).blocks * 512;
  } catch {
    return undefined;
  }
}

function volumeDone(g: Globals, op: VolumeOp, result: unknown): void {
  if (g.json) {
    printJson(result);
    return;
  }
  const m = result as { name?: string; size?: number };
  if (op.verb === 'create') out(`created volume ${m.name} (${formatBytes(m.size ?? 0)})\n`);
  else if (op.verb === 'resize') out(`resized volume ${m.name} to ${formatBytes(m.size ?? 0)}\n`);
  else if (op.verb === 'delete') out(`deleted volume ${op.name}\n`);
}

async function volumeViaApi(g: Globals, op: VolumeOp): Promise<void> {
  const { client } = clientFor(g);
  const name = op.verb === 'list' ? '' : encodeURIComponent(op.name);
  switch (op.verb) {
    case 'list': {
      const s = await client.request<StatusInfo>('GET', '/status');
      if (g.json) printJson(s.volumes);
      else out(renderVolumes(s.volumes, s.functions));
      return;
    }
    case 'create':
      volumeDone(g, op, await client.request('POST', '/volumes', { name: op.name, size: op.size }));
      return;
    case 'resize':
      volumeDone(g, op, await client.request('POST', `/volumes/${name}/resize`, { size: op.size, allowShrink: op.allowShrink }));
      return;
    case 'delete':
      volumeDone(g, op, await client.request('DELETE', `/volumes/${name}`));
      return;
  }
}

// ---- functions -----------------------------------------------------------

interface DeployOpts {
  deploy?: string;
  notify?: string;
  listen?: string;
  restart?: string;
  memory?: string;
  queueSize?: string;
  option: string[];
  fromJson?: string;
}

/** A function's config object from the command line (the same fields as in the config file). */
export function deployBody(name: string, fn: string, volume: string, o: DeployOpts): Record<string, unknown> {
  const body: Record<string, unknown> = o.fromJson ? (JSON.parse(readFileSync(o.fromJson, 'utf8')) as Record<string, unknown>) : {};
  Object.assign(body, { name, function: fn, volume });
  if (o.deploy) body.deploy = o.deploy;
  if (o.notify) body.notify = o.notify;
  if (o.restart) body.restart = o.restart;
  if (o.memory) body.memory = parseSize(o.memory);
  if (o.queueSize) body.queueSize = Number(o.queueSize);
  if (o.listen) {
    const m = /^(?:(.+):)?(\d+)$/.exec(o.listen);
    if (!m) throw invalidArgument(`--listen must be PORT or HOST:PORT (got ${o.listen})`);
    body.listen = { host: (m[1] ?? '127.0.0.1').replace(/^\[(.*)\]$/, '$1'), port: Number(m[2]) };
  }
  const options = { ...((body.options as Record<string, unknown>) ?? {}) };
  for (const kv of o.option) {
    const i = kv.indexOf('=');
    if (i <= 0) throw invalidArgument(`--option must be KEY=VALUE (got ${kv})`);
    const raw = kv.slice(i + 1);
    let v: unknown = raw;
    try {
      v = JSON.parse(raw); // numbers, true/false, quoted strings
    } catch {
      /* a bare string */
    }
    options[kv.slice(0, i)] = v;
  }
  if (Object.keys(options).length) body.options = options;
  return body;
}

async function functionCmd(g: Globals, run: (c: ApiClient) => Promise<unknown>, human: (r: unknown) => string): Promise<void> {
  const { client } = clientFor(g);
  const r = await run(client);
  if (g.json) printJson(r);
  else out(human(r));
  return;
}

const oneFunction = (verb: string) => (r: unknown) => {
  const f = r as DeploymentStatus;
  return `${verb} ${f.name}: ${f.function} (${f.deploy === 'guest' ? `guest/${f.notify}` : f.deploy}) on ${f.volume}, ${f.state}${f.address ? ` at ${f.address.host}:${f.address.port}` : ''}\n`;
};

// ---- the command tree ----------------------------------------------------

function program(): Command {
  const p = new Command('storvisor')
    .description('a storage controller that runs storage functions in low-overhead guests')
    .option('-c, --config <file>', 'the controller config (default: the built-in one, data in ./data)')
    .option('--api <url>', 'the management API (default: from the config, http://127.0.0.1:10880)')
    .option('--json', 'print JSON for scripts instead of tables')
    .showHelpAfterError('(storvisor --help lists the commands)')
    .addHelpText(
      'after',
      '\nenvironment: STORVISOR_DATA overrides the data directory; UV_THREADPOOL_SIZE the I/O threads (default 64).\nThe API token is read from <dataDir>/api-token.',
    );

  p.command('start')
    .description('run the controller')
    .addOption(new Option('--log-format <format>', 'log lines as text for people or JSON for collectors').choices([...LOG_FORMATS]).default('text'))
    .addOption(new Option('--log-level <level>', 'least severe level logged').choices([...LOG_LEVELS]).default('info'))
    .action(async (o, cmd: Command) => start({ ...globals(cmd), ...o }));

  p.command('status').description('what the running controller is doing').action(async (_o, cmd: Command) => status(globals(cmd)));
  p.command('top')
    .description('live per-function and per-volume rates, latency, CPU and poller share, refreshed every second')
    .option('-i, --interval <seconds>', 'seconds between refreshes', '1')
    .option('-n, --iterations <n>', 'refresh this many times, then exit')
    .action(async (o, cmd: Command) => top(globals(cmd), o));
  p.command('metrics').description('the Prometheus exposition of /metrics').action(async (_o, cmd: Command) => metrics(globals(cmd)));
  p.command('wait-ready')
    .description('wait until the controller answers on its API (for systemd ExecStartPost)')
    .option('-t, --timeout <seconds>', 'give up after this long', '60')
    .action(async (o, cmd: Command) => waitReady(globals(cmd), o));

  const v = p.command('volume').description('create, resize, delete and list volumes');
  v.command('list').description('every volume: size, space used, state, users').action(async (_o, cmd: Command) => volume(globals(cmd), { verb: 'list' }));
  v.command('create <name> <size>')
    .description('a thin volume (SIZE like 1G, 512M, 4096)')
    .action(async (name: string, size: string, _o, cmd: Command) => volume(globals(cmd), { verb: 'create', name, size: parseSize(size) }));
  v.command('resize <name> <size>')
    .description('grow a volume, or shrink it with --allow-shrink (refused while in use)')
    .option('--allow-shrink', 'allow making it smaller (data past the new end is lost)')
    .action(async (name: string, size: string, o: { allowShrink?: boolean }, cmd: Command) =>
      volume(globals(cmd), { verb: 'resize', name, size: parseSize(size), allowShrink: o.allowShrink === true }),
    );
  v.command('delete <name>')
    .description('delete a volume and its data (refused while in use)')
    .action(async (name: string, _o, cmd: Command) => volume(globals(cmd), { verb: 'delete', name }));
  v.command('takeover <name>')
    .description('take an RBD volume over from a dead controller: blocklist it, break its lock, start the functions on it')
    .action(async (name: string, _o, cmd: Command) =>
      functionCmd(globals(cmd), (c) => c.request('POST', `/volumes/${encodeURIComponent(name)}/takeover`, {}), (r) => {
        const started = (r as { started?: string[] }).started ?? [];
        return `took volume ${name} over${started.length ? `; started ${started.join(', ')}` : ''}\n`;
      }),
    );

  const f = p.command('function').alias('fn').description('deploy, undeploy, restart and list functions on the running controller');
  f.command('list')
    .description('every function instance: state, address, restarts')
    .action(async (_o, cmd: Command) => functionCmd(globals(cmd), (c) => c.request('GET', '/functions'), (r) => renderFunctions(r as DeploymentStatus[])));
  f.command('show <name>')
    .description('one function instance, with its statistics')
    .action(async (name: string, _o, cmd: Command) =>
      functionCmd(globals(cmd), (c) => c.request('GET', `/functions/${encodeURIComponent(name)}`), (r) => JSON.stringify(r, null, 2) + '\n'),
    );
  f.command('deploy <name> <function> <volume>')
    .description(`deploy a function module (${functionNames().join(', ')}) on a volume; kept across restarts`)
    .addOption(new Option('--deploy <kind>', 'how it runs').choices(['guest', 'integrated', 'gateway']))
    .addOption(new Option('--notify <mode>', 'guest queue notification mode').choices(['adaptive', 'poll', 'notify', 'poll-guest', 'poll-controller']))
    .option('--listen <[host:]port>', 'where its clients connect (default: a free port on 127.0.0.1, kept across restarts)')
    .addOption(new Option('--restart <policy>', 'restart after a crash').choices(['on-failure', 'always', 'never']))
    .option('--memory <size>', 'guest shared region for data buffers (like 64M)')
    .option('--queue-size <n>', 'guest queue descriptors (a power of two)')
    .option('-o, --option <key=value>', 'a function option (repeatable; values as JSON or bare strings)', (x: string, acc: string[]) => [...acc, x], [] as string[])
    .option('--from-json <file>', "start from a function's config object in a JSON file (the flags override it)")
    .action(async (name: string, fn: string, vol: string, o: DeployOpts, cmd: Command) =>
      functionCmd(globals(cmd), (c) => c.request('POST', '/functions', deployBody(name, fn, vol, o)), oneFunction('deployed')),
    );
  f.command('undeploy <name>')
    .description('stop a function cleanly and remove it; kept across restarts')
    .action(async (name: string, _o, cmd: Command) =>
      functionCmd(globals(cmd), (c) => c.request('DELETE', `/functions/${encodeURIComponent(name)}`), () => `undeployed ${name}\n`),
    );
  f.command('restart <name>')
    .description('stop and start a function again')
    .action(async (name: string, _o, cmd: Command) => functionCmd(globals(cmd), (c) => c.request('POST', `/functions/${encodeURIComponent(name)}/restart`), oneFunction('restarted')));
  f.command('notify <name> <mode>')
    .description('change a guest queue notification mode (adaptive, poll, notify, poll-guest, poll-controller); kept across restarts')
    .action(async (name: string, mode: string, _o, cmd: Command) =>
      functionCmd(globals(cmd), (c) => c.request('POST', `/functions/${encodeURIComponent(name)}/notify`, { notify: mode }), oneFunction('switched')),
    );

  p.command('functions')
    .description('the function modules this build knows')
    .action(async () => {
      for (const n of functionNames()) out(`${n}\n`);
    });
  return p;
}

/** Run the CLI; resolves with the exit code (0 ok, 1 failed, 2 usage). */
export async function main(argv: string[]): Promise<number> {
  const p = program();
  const wantsJson = argv.includes('--json');
  if (argv.length === 0) {
    process.stderr.write(p.helpInformation());
    return 2;
  }
  p.exitOverride();
  p.configureOutput({ writeErr: (s) => process.stderr.write(s) });
  for (const c of p.commands) {
    c.exitOverride();
    for (const s of c.commands) s.exitOverride();
  }
  try {
    await p.parseAsync(argv, { from: 'user' }); // every action either succeeds or throws
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? 0 : 2;
    const message = err instanceof ConfigError ? `config error: ${err.message}` : (err as Error).message;
    const errCode = (err as { code?: string }).code ?? 'SV_ERR_INTERNAL';
    if (wantsJson) process.stderr.write(JSON.stringify({ error: message, code: errCode }) + '\n');
    else if (err instanceof StorvisorError || err instanceof ConfigError) process.stderr.write(`storvisor: ${message} [${errCode}]\n`);
    else process.stderr.write(`storvisor: ${(err as Error).stack ?? err}\n`);
    return 1;
  }
  return 0;
}
