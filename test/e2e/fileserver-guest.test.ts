/**
 * The file server function as a thread guest: NFSv3 over the on-volume
 * filesystem, every block I/O crossing the shared-memory queue, driven by
 * libnfs-utils (nfs-cp, nfs-cat, nfs-ls).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseConfig } from '../../src/config/config.ts';
import { Controller } from '../../src/controller/controller.ts';
import { realClientSuite } from '../fileserver/nfs/helpers/real-clients.ts';

for (const notify of ['adaptive', 'poll'] as const) {
  realClientSuite(
    `fileserver in a ${notify} thread guest`,
    async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'storvisor-nfsguest-'));
      const config = parseConfig(
        {
          dataDir: dir,
          cacheMiB: 32,
          api: null,
          nbd: null,
          volumes: [{ name: 'fs', sizeMiB: 256 }],
          functions: [{ name: 'nfs', function: 'fileserver', volume: 'fs', deploy: 'guest', notify }],
        },
        dir,
        {},
      );
      const controller = await Controller.start(config);
      const address = (await controller.status()).functions[0]!.address!;
      return {
        port: address.port,
        async stop() {
          await controller.stop();
          await rm(dir, { recursive: true, force: true });
        },
      };
    },
    { bigDir: 1_000 },
  );
}
