/** The real-client checks again, over the on-volume filesystem on a FileBlockDevice, through the function module. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FileBlockDevice } from '../../../src/block/file-device.ts';
import { realClientSuite } from './helpers/real-clients.ts';

realClientSuite(
  'volume fs on a FileBlockDevice',
  async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'storvisor-nfsvol-'));
    const device = await FileBlockDevice.open(path.join(dir, 'volume.img'), 256 << 20);
    const { default: fileserver } = await import('../../../src/functions/fileserver/index.ts');
    const running = await fileserver.start({
      device,
      listen: { host: '127.0.0.1', port: 0 },
      options: { exportPath: '/export' },
      instance: 'test',
      log: () => {},
    });
    return {
      port: running.address.port,
      async stop() {
        await running.stop();
        await device.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  },
  // 10,000 entries are listed over memory-fs; here 2,000 keep the suite fast (each CREATE is a journal commit + fdatasync).
  { bigDir: 2_000 },
);
