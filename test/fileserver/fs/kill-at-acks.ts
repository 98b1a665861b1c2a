import { spawn } from 'node:child_process';

/**
 * Runs a crash runner (`node --import tsx RUNNER IMAGE`) that prints `BEGIN a b`
 * and `ACK a b` lines, hands each line read to `onLine`, and kill -9s the runner
 * as soon as `done()` says so. Lines after that decision are not read: the test's
 * model is what was seen before the kill. Fails if the runner exits by itself or
 * does not get there in 60 s.
 */
export async function killAtAcks(runner: string, image: string, onLine: (kind: string, a: string, b: string) => void, done: () => boolean): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', runner, image], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let buf = '';
  let killed = false;
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const deadline = setTimeout(() => reject(new Error(`the runner did not reach its kill point in 60 s: ${stderr}`)), 60_000);
    child.stdout.on('data', (d: Buffer) => {
      if (killed) return;
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const [k, a, b] = buf.slice(0, nl).split(' ');
        buf = buf.slice(nl + 1);
        onLine(k!, a!, b!);
        if (k === 'ACK' && done()) {
          killed = true;
          child.kill('SIGKILL');
          clearTimeout(deadline);
          resolve();
          return;
        }
      }
    });
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`runner exited early (${code}): ${stderr}`));
    });
  });
  await exited;
}
