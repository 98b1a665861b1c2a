import { spawnSync, spawn } from 'node:child_process';
import { parseConfig, type Config } from '../../src/config/config.ts';
import { Controller } from '../../src/controller/controller.ts';
import { tempDir } from './tmp.ts';

type T = { after: (fn: () => unknown) => void };

/** A controller in this process on a fresh data directory, every port picked by the kernel. */
export async function startController(t: T, raw: Record<string, unknown>): Promise<Controller> {
  const dataDir = tempDir(t);
  const config: Config = parseConfig({ cacheMiB: 16, api: null, nbd: { port: 0 }, ...raw, dataDir }, dataDir, {});
  const c = await Controller.start(config);
  t.after(() => c.stop());
  return c;
}

/** Run a tool to completion; resolves with its output, rejects with stderr on failure. */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve({ stdout, stderr });
      else reject(new Error(`${cmd} ${args.join(' ')} failed (${code ?? signal}):\n${stderr}\n${stdout.slice(-2000)}`));
    });
  });
}

export function nbdUri(a: { host: string; port: number }, name = ''): string {
  return `nbd://${a.host}:${a.port}/${name}`;
}

/** fio's nbd engine with crc32c verification; resolves with the JSON job result. */
export async function fioVerify(uri: string, rw: string, extra: string[] = []): Promise<{ error: number; readIos: number; writeIos: number }> {
  const { stdout } = await run('fio', [
    '--name=verify',
    '--ioengine=nbd',
    `--uri=${uri}`,
    `--rw=${rw}`,
    '--bs=4k',
    '--size=16M',
    '--iodepth=16',
    '--verify=crc32c',
    '--verify_fatal=1',
    '--verify_state_save=0',
    '--output-format=json',
    ...extra,
  ]);
  const job = JSON.parse(stdout.slice(stdout.indexOf('{'))).jobs[0];
  return { error: job.error, readIos: job.read.total_ios, writeIos: job.write.total_ios };
}

/**
 * Wait until deployment `name` is running with at least `restarts` restarts
 * behind it; fails if it stays down. Polls the status (a condition), it does
 * not sleep in place of synchronisation.
 */
export async function waitRunning(c: Controller, name: string, restarts = 0): Promise<{ host: string; port: number }> {
  for (;;) {
    const s = await c.deployment(name)!.status();
    if (s.state === 'running' && s.restarts >= restarts) return s.address!;
    if (s.state === 'crashed' || s.state === 'failed') throw new Error(`${name} stayed down: ${s.lastError}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
