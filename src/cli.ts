import { parseArgs } from 'node:util';
import { loadConfig, ConfigError } from './config/config.ts';
import { Controller } from './controller/controller.ts';
import { startApi } from './api/server.ts';
import { loadOrCreateToken, readToken, tokenPath } from './api/token.ts';
import { VolumeStore } from './storage/volume-store.ts';
import { BlockCache } from './storage/block-cache.ts';
import { lockDataDir } from './controller/data-dir-lock.ts';
import { functionNames } from './functions/registry.ts';
import { parseSize, formatBytes } from './util/size.ts';
import { StorvisorError } from './util/errors.ts';
import type { Config } from './config/config.ts';

const USAGE = `storvisor — a storage controller that runs storage functions in low-overhead guests

usage:
  storvisor start [--config FILE]            run the controller (default config when no file)
  storvisor status [--config FILE] [--api URL]          what a running controller is doing
  storvisor volume list [--config FILE] [--api URL]
  storvisor volume create NAME SIZE [--config FILE] [--api URL]     SIZE like 1G, 512M, 4096
  storvisor volume resize NAME SIZE [--allow-shrink] [--config FILE] [--api URL]
  storvisor volume delete NAME [--config FILE] [--api URL]
  storvisor volume takeover NAME [--config FILE] [--api URL]    an RBD volume whose holder is dead (controller running)
  storvisor functions                        the function modules this build knows

The volume commands work on the data directory directly when no controller runs,
and through the running controller's management API when one does. The API token
is read from <dataDir>/api-token.

environment: STORVISOR_DATA overrides the data directory; UV_THREADPOOL_SIZE the I/O threads (default 64).
`;

const log = (m: string) => console.log(`${new Date().toISOString()} ${m}`);

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      api: { type: 'string' },
      'allow-shrink': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    process.stdout.write(USAGE);
    return command || values.help ? 0 : 2;
  }
  switch (command) {
    case 'start':
      return start(values.config);
    case 'status':
      return status(loadConfig(values.config), values.api);
    case 'volume':
      return volume(rest, values.config, values['allow-shrink'] ?? false, values.api);
    case 'functions':
      for (const n of functionNames()) console.log(n);
      return 0;
    default:
      process.stderr.write(`unknown command '${command}'\n\n${USAGE}`);
      return 2;
  }
}

async function start(configFile: string | undefined): Promise<number> {
  const config = loadConfig(configFile);
  log(`storvisor: data directory ${config.dataDir}, read cache ${formatBytes(config.cacheBytes)}, ${process.env.UV_THREADPOOL_SIZE ?? 4} I/O threads`);
  const controller = await Controller.start(config, log);
  let api: Awaited<ReturnType<typeof startApi>> | undefined;
  try {
    api = config.api ? await startApi(controller, { ...config.api, token: loadOrCreateToken(config.dataDir) }) : undefined;
  } catch (err) {
    await controller.stop();
    throw err;
  }
  console.log('\nendpoints:');
  if (api) {
    console.log(`  ${'management API (/status, /metrics)'.padEnd(40)} http://${api.address.host}:${api.address.port}/status`);
    console.log(`  ${''.padEnd(40)} Authorization: Bearer <token in ${tokenPath(config.dataDir)}>`);
  }
  for (const e of await controller.endpoints()) console.log(`  ${e.kind.padEnd(40)} ${e.url}`);
  console.log('\nCtrl-C stops the controller cleanly.\n');

  await new Promise<void>((resolve) => {
    const onSignal = (sig: string) => {
      log(`${sig}: stopping (finishing in-flight I/O, syncing volumes)`);
      resolve();
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
  const forced = setTimeout(() => {
    log('shutdown is taking longer than 30 s; exiting');
    process.exit(1);
  }, 30_000);
  forced.unref();
  await new Promise<void>((r) => (api ? api.server.close(() => r()) : r()));
  await controller.stop();
  log('stopped');
  return 0;
}

/** A request to the running controller's API, authenticated with the token from its data directory. */
async function apiRequest(config: Config, method: string, path: string, apiUrl?: string, body?: unknown): Promise<{ ok: boolean; text: string }> {
  const base = apiUrl ?? (config.api ? `http://${config.api.host.includes(':') ? `[${config.api.host}]` : config.api.host}:${config.api.port}` : undefined);
  if (!base) throw new Error('the management API is disabled in this config (api: null); pass --api URL');
  const token = readToken(config.dataDir);
  if (!token) throw new Error(`no API token at ${tokenPath(config.dataDir)}: is a controller with its API running on this data directory?`);
  const res = await fetch(new URL(path, base), {
    method,
    headers: { authorization: `Bearer ${token}`, ...(method === 'GET' ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { ok: res.ok, text: await res.text() };
}

async function status(config: Config, apiUrl: string | undefined): Promise<number> {
  const res = await apiRequest(config, 'GET', '/status', apiUrl);
  process.stdout.write(res.text);
  return res.ok ? 0 : 1;
}

async function volume(args: string[], configFile: string | undefined, allowShrink: boolean, apiUrl: string | undefined): Promise<number> {
  const config = loadConfig(configFile);
  const [verb, name, size] = args;
  let unlock: () => void;
  try {
    unlock = lockDataDir(config.dataDir);
  } catch (err) {
    // A controller runs on this data directory: ask it, so it can check who uses the volume.
    if ((err as StorvisorError).code !== 'SV_ERR_DATA_DIR_BUSY' || (!config.api && !apiUrl)) throw err;
    return volumeViaApi(config, apiUrl, verb, name, size, allowShrink);
  }
  try {
    const store = new VolumeStore(config.dataDir, new BlockCache(0), log, config.direct, config.overcommit);
    switch (verb) {
      case 'list':
        for (const v of store.list()) console.log(`${v.name.padEnd(24)} ${formatBytes(v.size).padStart(10)}  ${v.uuid}`);
        return 0;
      case 'create':
        if (!name || !size) throw new Error('usage: storvisor volume create NAME SIZE');
        store.create(name, parseSize(size));
        return 0;
      case 'resize':
        if (!name || !size) throw new Error('usage: storvisor volume resize NAME SIZE');
        await store.resize(name, parseSize(size), { allowShrink });
        return 0;
      case 'delete':
        if (!name) throw new Error('usage: storvisor volume delete NAME');
        await store.delete(name);
        return 0;
      default:
        throw new Error(`unknown volume command '${verb ?? ''}' (list, create, resize, delete)`);
    }
  } finally {
    unlock();
  }
}

async function volumeViaApi(config: Config, apiUrl: string | undefined, verb: string | undefined, name: string | undefined, size: string | undefined, allowShrink: boolean): Promise<number> {
  let res: { ok: boolean; text: string };
  switch (verb) {
    case 'list':
      res = await apiRequest(config, 'GET', '/volumes', apiUrl);
      break;
    case 'create':
      if (!name || !size) throw new Error('usage: storvisor volume create NAME SIZE');
      res = await apiRequest(config, 'POST', '/volumes', apiUrl, { name, size: parseSize(size) });
      break;
    case 'resize':
      if (!name || !size) throw new Error('usage: storvisor volume resize NAME SIZE');
      res = await apiRequest(config, 'POST', `/volumes/${encodeURIComponent(name)}/resize`, apiUrl, { size: parseSize(size), allowShrink });
      break;
    case 'delete':
      if (!name) throw new Error('usage: storvisor volume delete NAME');
      res = await apiRequest(config, 'DELETE', `/volumes/${encodeURIComponent(name)}`, apiUrl, {});
      break;
    case 'takeover': // an RBD volume from a dead controller: the running controller takes it (src/api/rbd-routes.ts)
      if (!name) throw new Error('usage: storvisor volume takeover NAME');
      res = await apiRequest(config, 'POST', `/volumes/${encodeURIComponent(name)}/takeover`, apiUrl, {});
      break;
    default:
      throw new Error(`unknown volume command '${verb ?? ''}' (list, create, resize, delete)`);
  }
  if (res.ok) process.stdout.write(res.text);
  else {
    let msg = res.text;
    try {
      const e = JSON.parse(res.text) as { error: string; code: string };
      msg = `${e.error} (${e.code})`;
    } catch {
      /* not JSON: print as is */
    }
    process.stderr.write(`storvisor: ${msg.trim()}\n`);
  }
  return res.ok ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    if (err instanceof ConfigError) process.stderr.write(`storvisor: config error: ${err.message}\n`);
    else if (err instanceof StorvisorError) process.stderr.write(`storvisor: ${err.message} (${err.code})\n`);
    else process.stderr.write(`storvisor: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
