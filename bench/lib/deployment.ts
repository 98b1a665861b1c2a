import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { parseConfig, type DeployKind, type GuestKind, type NotifyMode } from '../../src/config/config.ts';
import { Controller } from '../../src/controller/controller.ts';

/**
 * One function in one deployment on a fresh controller and volume, for the
 * function benchmarks: each deployment starts from the same empty state.
 */
export interface DeploymentUnderTest {
  label: string;
  deploy: DeployKind;
  notify?: NotifyMode;
  /** More of the function's config (a process guest's cores, priority, ...). */
  extra?: Record<string, unknown>;
  /** Guests: a worker thread (default) or its own process. */
  kind?: GuestKind;
}

export const DEPLOYMENTS: DeploymentUnderTest[] = [
  { label: 'integrated', deploy: 'integrated' },
  { label: 'guest/poll', deploy: 'guest', notify: 'poll' },
  { label: 'guest/adaptive', deploy: 'guest', notify: 'adaptive' },
  { label: 'guest/notify', deploy: 'guest', notify: 'notify' },
  { label: 'process/poll', deploy: 'guest', kind: 'process', notify: 'poll' },
  { label: 'process/adaptive', deploy: 'guest', kind: 'process', notify: 'adaptive' },
  { label: 'process/notify', deploy: 'guest', kind: 'process', notify: 'notify' },
  { label: 'gateway', deploy: 'gateway' },
];

export async function startDeployment(
  d: DeploymentUnderTest,
  fn: { function: string; options: Record<string, unknown>; volumeMiB: number; cacheMiB: number },
): Promise<{ host: string; port: number; stats(): Promise<Record<string, number>>; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'storvisor-fbench-'));
  const config = parseConfig(
    {
      dataDir: dir,
      cacheMiB: fn.cacheMiB,
      api: null,
      nbd: { port: 0 },
      volumes: [{ name: 'vol', sizeMiB: fn.volumeMiB }],
      functions: [
        {
          name: 'fn',
          function: fn.function,
          volume: 'vol',
          deploy: d.deploy,
          notify: d.notify ?? 'adaptive',
          restart: 'never',
          // No warm spare: it would only sit beside the measurement.
          ...(d.deploy === 'guest' ? { kind: d.kind ?? 'thread', standby: false } : {}),
          ...d.extra,
          options: fn.options,
        },
      ],
    },
    dir,
    {},
  );
  const controller = await Controller.start(config);
  const f = (await controller.status()).functions[0]!;
  if (!f.address) {
    await controller.stop();
    throw new Error(`${d.label}: the function did not start (${f.state}: ${f.lastError ?? 'no error recorded'})`);
  }
  const address = f.address;
  return {
    ...address,
    /** The function's counters (fn_*), as the controller's status reports them. */
    async stats() {
      return ((await controller.status()).functions[0]?.stats ?? {}) as Record<string, number>;
    },
    async stop() {
      await controller.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
