import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A single-node Ceph cluster for one test file (scripts/ceph/cluster.sh):
 * started in before(), stopped in after(). A missing Ceph install fails the
 * test with the install command; it does not skip.
 */
const script = fileURLToPath(new URL('../../scripts/ceph/cluster.sh', import.meta.url));
const exec = promisify(execFile);

export interface Cluster {
  dir: string;
  conf: string;
  /** The daemons' log directory (for a failing test's message). */
  logs: string;
  stopOsd(): Promise<void>;
  startOsd(): Promise<void>;
  /** `ceph ...` against this cluster; resolves with stdout. */
  ceph(...args: string[]): Promise<string>;
  /** `rbd ...` against this cluster. */
  rbd(...args: string[]): Promise<string>;
  stop(): Promise<void>;
  /** Seconds the start took. */
  startSeconds: number;
}

export async function startCluster(): Promise<Cluster> {
  const t0 = performance.now();
  let conf: string;
  try {
    conf = (await exec(script, ['start'], { timeout: 180_000 })).stdout.trim().split('\n').pop()!;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`the test Ceph cluster did not start (apt-get install ceph-mon ceph-osd ceph-mgr ceph-common librbd-dev):\n${e.stderr ?? e.message}`);
  }
  const dir = dirname(conf);
  const run = async (args: string[]) => (await exec(script, args, { timeout: 120_000 })).stdout;
  return {
    dir,
    conf,
    logs: `${dir}/log`,
    startSeconds: (performance.now() - t0) / 1000,
    stopOsd: async () => void (await run(['stop-osd', dir])),
    startOsd: async () => void (await run(['start-osd', dir])),
    ceph: async (...args) => (await exec('ceph', ['-c', conf, ...args], { timeout: 60_000 })).stdout,
    rbd: async (...args) => (await exec('rbd', ['-c', conf, ...args], { timeout: 60_000 })).stdout,
    stop: async () => void (await run(['stop', dir])),
  };
}

/** Where an RBD volume's image lives in this cluster (the config's volumes[i].rbd). */
export function rbdConfig(c: Cluster, image: string, timeoutSec = 30): Record<string, unknown> {
  return { conf: c.conf, user: 'admin', pool: 'rbd', image, timeoutSec };
}
