import { createServer } from 'node:net';
import { once } from 'node:events';

/** A TCP port free on loopback right now (for peers that cannot listen on port 0 and report it). */
export async function freePort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}
