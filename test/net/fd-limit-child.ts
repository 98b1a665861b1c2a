/**
 * A process with few descriptors (the parent runs it under `ulimit -n 300`)
 * serving the database function and an NBD export with default limits.
 * Prints {"db": port, "nbd": port, "maxConnections": n} and runs until stdin closes.
 */
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import database from '../../src/functions/database/index.ts';
import { NbdServer } from '../../src/nbd/server.ts';
import { DEFAULT_LIMITS } from '../../src/net/tcp-service.ts';

const fn = await database.start({
  device: new MemoryBlockDevice(16 << 20),
  listen: { host: '127.0.0.1', port: 0 },
  options: database.parseOptions!({}),
  instance: 'fd-limit',
  log: () => {},
});
const nbd = new NbdServer({ exports: [{ name: 'vol', device: new MemoryBlockDevice(16 << 20) }], defaultExport: 'vol' });
const { port } = await nbd.listen('127.0.0.1', 0);
process.stdout.write(JSON.stringify({ db: fn.address.port, nbd: port, maxConnections: DEFAULT_LIMITS.maxConnections }) + '\n');
process.stdin.resume();
process.stdin.on('end', async () => {
  await Promise.all([fn.stop(), nbd.close()]);
  process.exit(0);
});
