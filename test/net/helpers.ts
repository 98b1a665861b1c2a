import { connect, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

setFlagsFromString('--expose_gc');
const gc = runInNewContext('gc') as () => void;

/** Collect garbage, so memory figures show what is held, not what is dead but not yet collected. */
export function forceGc(): void {
  gc();
}

/** Poll `cond` until it holds; fails after `ms` with `what`. (A condition with a deadline, not a sleep.) */
export async function waitFor(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Connect to 127.0.0.1:port; the socket's `closed` promise settles on 'close'. */
export async function open(port: number): Promise<Socket & { gone: Promise<void> }> {
  const s = connect({ host: '127.0.0.1', port }) as Socket & { gone: Promise<void> };
  s.on('error', () => {});
  s.gone = new Promise((r) => s.once('close', () => r()));
  s.resume(); // flowing, so the end of the stream (and 'close') is seen without a reader
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  return s;
}

/** Resolve with the first of `p` or a failure after `ms`. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    }),
  ]);
}

/** Memory that network buffers use: Buffers live outside the V8 heap. */
export function bufferMemory(): number {
  return process.memoryUsage().arrayBuffers;
}
