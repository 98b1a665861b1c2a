/**
 * Child process for the crash test: the fileserver function on a FileBlockDevice.
 * Prints "PORT <n>" once serving; SIGTERM stops it cleanly; SIGKILL is the crash.
 * Usage: node --import tsx crash-runner.ts <image> <bytes>
 */
import { FileBlockDevice } from '../../../../src/block/file-device.ts';
import fileserver from '../../../../src/functions/fileserver/index.ts';

const [image, size] = process.argv.slice(2);
const device = await FileBlockDevice.open(image!, Number(size));
const running = await fileserver.start({
  device,
  listen: { host: '127.0.0.1', port: 0 },
  options: { exportPath: '/export' },
  instance: 'crash-test',
  log: (m) => process.stderr.write(m + '\n'),
});
process.stdout.write(`PORT ${running.address.port}\n`);
process.on('SIGTERM', async () => {
  await running.stop();
  await device.close();
  process.exit(0);
});
