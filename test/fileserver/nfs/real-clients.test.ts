import { realClientSuite } from './helpers/real-clients.ts';
import { startMemoryServer } from './helpers/server.ts';

realClientSuite(
  'memory-fs',
  async () => {
    const s = await startMemoryServer();
    return { port: s.port, stop: () => s.server.stop() };
  },
  { bigDir: 10_000 },
);
