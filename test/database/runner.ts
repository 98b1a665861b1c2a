/**
 * Runs the database function on a FileBlockDevice in its own process, for
 * crash tests (the parent SIGKILLs it) and manual checks:
 *   node --import tsx test/database/runner.ts <image> <size> [always|everysec]
 * Prints one JSON line {"port": N} once it accepts clients.
 */
import { FileBlockDevice } from '../../src/block/file-device.ts';
import database from '../../src/functions/database/index.ts';

const [path, size, appendfsync = 'always'] = process.argv.slice(2);
const device = await FileBlockDevice.open(path, Number(size));
const running = await database.start({
  device,
  listen: { host: '127.0.0.1', port: 0 },
  options: database.parseOptions!({ appendfsync }),
  instance: 'crash-runner',
  log: (msg) => process.stderr.write(`${msg}\n`),
});
process.stdout.write(`${JSON.stringify({ port: running.address.port })}\n`);
process.on('SIGTERM', () => {
  void running.stop().then(() => device.close()).then(() => process.exit(0));
});
