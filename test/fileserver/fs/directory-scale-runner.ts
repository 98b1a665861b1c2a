/**
 * The 100,000-entry directory workload, run in its own process by
 * directory-scale.test.ts: node's test runner tracks async context through
 * every promise, which slows this promise-heavy loop several times over and
 * would measure the harness instead of the filesystem. Prints one JSON line.
 */
import { fsck } from '../../../src/functions/fileserver/fs/index.ts';
import { listAll, memFs, OWNER, ROOT, ROOT_GEN } from './helpers.ts';

const N = Number(process.argv[2] ?? 100_000);
/** Requests in flight at once, as many NFS clients would have. */
const WINDOW = 256;

async function inWindows(n: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < n; i += WINDOW) {
    await Promise.all(Array.from({ length: Math.min(WINDOW, n - i) }, (_, k) => fn(i + k)));
  }
}

const { fs, dev } = await memFs(256, { mkfs: { inodes: N + 10_000 } });
const d = await fs.mkdir(ROOT, ROOT_GEN, 'big', OWNER);
const o = { ...OWNER, exclusive: true };
const cpu0 = process.cpuUsage();
let t0 = performance.now();
await inWindows(N, (i) => fs.create(d.ino, d.generation, `entry-${i}`, o));
const createMs = performance.now() - t0;
t0 = performance.now();
const inos = new Set<number>();
await inWindows(N, async (i) => inos.add((await fs.lookup(d.ino, d.generation, `entry-${i}`)).ino));
const lookupMs = performance.now() - t0;
t0 = performance.now();
const all = await listAll(fs, d.ino, d.generation, 1000);
const readdirMs = performance.now() - t0;
const cpuMs = process.cpuUsage(cpu0).user / 1000;
await fs.close();
const report = await fsck(dev);
console.log(
  JSON.stringify({
    createMs,
    lookupMs,
    readdirMs,
    cpuMs,
    distinctInodes: inos.size,
    listed: all.length,
    distinctNames: new Set(all.map((e) => e.name)).size,
    distinctCookies: new Set(all.map((e) => e.cookie)).size,
    zeroCookies: all.filter((e) => e.cookie === 0).length,
    fsckProblems: report.problems,
    fsckEntries: report.stats.dirEntries,
  }),
);
