import { spawnSync } from 'node:child_process';

/** The Debian package each real client comes from (what .ci/run installs). */
const PACKAGE: Record<string, string> = {
  fio: 'fio',
  nbdinfo: 'libnbd-bin',
  nbdcopy: 'libnbd-bin',
  'qemu-img': 'qemu-utils',
  nbdkit: 'nbdkit',
  'nfs-ls': 'libnfs-utils',
  'nfs-cp': 'libnfs-utils',
  'nfs-cat': 'libnfs-utils',
  'redis-server': 'redis-server',
  'redis-cli': 'redis-tools',
  'redis-benchmark': 'redis-tools',
  mke2fs: 'e2fsprogs',
  promtool: 'prometheus',
  sockperf: 'sockperf',
  iperf3: 'iperf3',
};

const found = new Map<string, boolean>();
const onPath = (tool: string): boolean => {
  let ok = found.get(tool);
  if (ok === undefined) found.set(tool, (ok = spawnSync('sh', ['-c', `command -v '${tool}'`]).status === 0));
  return ok;
};

/**
 * Fail (never skip) when a real client a test drives is missing: a machine
 * without them must not pass while testing less. .ci/run installs them all.
 */
export function requireTools(...tools: string[]): void {
  const missing = tools.filter((t) => !onPath(t));
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((t) => PACKAGE[t] ?? t))];
  throw new Error(`required tool(s) missing: ${missing.join(', ')} (apt-get install ${packages.join(' ')}; .ci/run installs them)`);
}
