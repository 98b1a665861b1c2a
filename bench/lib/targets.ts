import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, fsyncSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { randomFillSync } from 'node:crypto';
import { parseConfig, type Config, type FunctionConfig } from '../../src/config/config.ts';
import type { Controller } from '../../src/controller/controller.ts';
import { freePort } from './net.ts';

/**
 * What the block benchmarks point fio at: the raw file, nbdkit on it, the
 * controller's own export, or a function deployed on the controller. Each
 * target starts, hands back fio's arguments that reach it, and stops.
 */
export interface Target {
  name: string;
  setup(c: Controller): Promise<string[]>;
  teardown(c: Controller): Promise<void>;
}

const MiB = 2 ** 20;

export function rawFileTarget(file: string): Target {
  return { name: 'fio raw file', setup: async () => [`--filename=${file}`, '--direct=1'], teardown: async () => {} };
}

/** nbdkit's file plugin on the raw file (cache=none, 16 threads): the peer NBD server. */
export function nbdkitTarget(file: string): Target {
  let child: ChildProcess | undefined;
  return {
    name: 'nbdkit file',
    async setup() {
      const port = await freePort();
      child = spawn('nbdkit', ['-f', '-i', '127.0.0.1', '-p', String(port), '--threads', '16', 'file', file, 'cache=none'], { stdio: 'ignore' });
      for (let i = 0; i < 200; i++) {
        const r = await new Promise<number>((resolve) => spawn('nbdinfo', ['--size', `nbd://127.0.0.1:${port}/`], { stdio: 'ignore' }).on('close', (c) => resolve(c ?? 1)));
        if (r === 0) break;
        await new Promise((r2) => setTimeout(r2, 50)); // polling an external daemon's readiness
      }
      return ['--ioengine=nbd', `--uri=nbd://127.0.0.1:${port}/`];
    },
    async teardown() {
      child?.kill('SIGTERM');
      if (child && child.exitCode === null) await new Promise((r) => child!.once('exit', r));
    },
  };
}

export function controllerExportTarget(volume: string): Target {
  return {
    name: 'controller export',
    setup: async (c) => ['--ioengine=nbd', `--uri=nbd://${c.nbdEndpoint().host}:${c.nbdEndpoint().port}/${volume}`],
    teardown: async () => {},
  };
}

/** A block function's config for the benches: loopback, no restarts, a 256-entry queue. */
export function benchFunction(name: string, fields: Partial<FunctionConfig> & Pick<FunctionConfig, 'deploy'>, volume = 'bench', fn = 'nbd-export'): FunctionConfig {
  return {
    name,
    function: fn,
    volume,
    notify: 'adaptive',
    idle: 'adaptive',
    memory: 64 * MiB,
    heapMiB: 256,
    queueSize: 256,
    listen: { host: '127.0.0.1', port: 0 },
    restart: 'never',
    options: { exportName: volume },
    ...fields,
  } as FunctionConfig;
}

/** A function deployed on the running controller for the length of a target. */
export function deployedTarget(name: string, fields: Partial<FunctionConfig> & Pick<FunctionConfig, 'deploy'>, volume = 'bench', fn = 'nbd-export'): Target {
  const id = name.replace(/\W/g, '-');
  return {
    name,
    async setup(c) {
      const a = await c.deploy(benchFunction(id, fields, volume, fn));
      return ['--ioengine=nbd', `--uri=nbd://${a.host}:${a.port}/${volume}`];
    },
    teardown: (c) => c.undeploy(id),
  };
}

/** Random, synced data: reads then really reach the disk, with no zero-page shortcut. */
export function prefill(path: string, size: number): void {
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(4 * MiB);
  for (let off = 0; off < size; off += chunk.length) {
    randomFillSync(chunk);
    writeSync(fd, chunk, 0, Math.min(chunk.length, size - off), off);
  }
  fsyncSync(fd);
  closeSync(fd);
}

/** A data directory holding one prefilled volume `name` of `size` bytes, and its config. */
export function prefilledDataDir(dir: string, name: string, size: number, cacheMiB: number) {
  mkdirSync(join(dir, 'data', 'volumes'), { recursive: true });
  prefill(join(dir, 'data', 'volumes', `${name}.img`), size);
  writeFileSync(join(dir, 'data', 'volumes', `${name}.json`), JSON.stringify({ name, uuid: name, size, createdAt: new Date().toISOString() }));
  return parseConfig({ dataDir: join(dir, 'data'), cacheMiB, api: null, nbd: { port: 0 }, volumes: [{ name, size }] }, dir, {});
}

/** Why a deployment kind cannot run here, or undefined when it can (parsed the way the controller would). */
export function unsupportedDeploy(fields: Partial<FunctionConfig>): string | undefined {
  try {
    parseConfig({ dataDir: '/nonexistent', api: null, volumes: [{ name: 'v', sizeMiB: 1 }], functions: [{ name: 'probe', function: 'nbd-export', volume: 'v', deploy: 'guest', ...fields }] }, '/', {});
    return undefined;
  } catch (err) {
    return `this build cannot run it: ${(err as Error).message}`;
  }
}

/** Runs `fn` on a controller started from `config`, and stops it however `fn` ends. */
export async function withController<T>(config: Config, fn: (c: Controller) => Promise<T>): Promise<T> {
  const { Controller } = await import('../../src/controller/controller.ts');
  const c = await Controller.start(config);
  try {
    return await fn(c);
  } finally {
    await c.stop();
  }
}

/** Runs `fn` with fio's arguments that reach `t`, and tears `t` down however `fn` ends. */
export async function withTarget<T>(c: Controller, t: Target, fn: (reach: string[]) => Promise<T>): Promise<T> {
  const reach = await t.setup(c);
  try {
    return await fn(reach);
  } finally {
    await t.teardown(c);
  }
}

/** Runs `fn` in a fresh scratch directory under `parent`, removed however `fn` ends. */
export async function withScratch<T>(parent: string, prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(parent, prefix));
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** fio's arguments for one timed 4 KiB (or `bs`) job over the first `size` bytes, random offsets, no warm-up map. */
export function fioArgs(o: { rw: string; qd: number; size: number; seconds: number; reach: string[]; bs?: string }): string[] {
  return ['--name=b', `--bs=${o.bs ?? '4k'}`, `--iodepth=${o.qd}`, `--size=${o.size}`, '--norandommap', '--randrepeat=0', ...o.reach, `--rw=${o.rw}`, '--time_based', `--runtime=${o.seconds}`];
}
