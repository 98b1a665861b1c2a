import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

/**
 * The function suites of `npm run bench -- <suite>`:
 *   nfs       bench/fileserver.ts's compare mode: storvisor (integrated, guest/adaptive)
 *             and nfs-ganesha, cached and uncached, load generator in its own process
 *   database  bench/database.ts: SET/GET against redis-server, CPU per command, compaction latency
 */
const loadGen = fileURLToPath(new URL('./fileserver.ts', import.meta.url));

/** `npm run bench -- nfs`: the compare mode in its own process, written to resultsDir. */
export async function nfsBench(resultsDir: string): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', loadGen, '--out', resultsDir], { stdio: ['ignore', 'inherit', 'inherit'] });
  const [code] = await once(child, 'exit');
  if (code !== 0) throw new Error(`nfs bench (bench/fileserver.ts) exited with ${code}`);
}

export { databaseSuite as databaseBench } from './database.ts';
