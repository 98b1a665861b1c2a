import { NbdClient } from '../nbd/client.ts';
import { loadFunction, parseOptions } from '../functions/registry.ts';

/**
 * A gateway: the traditional external box, as a separate OS process. It reaches
 * the controller's volume over NBD on TCP (one network hop per I/O) and runs the
 * same function module as the other deployments.
 *
 * Parent protocol (IPC): receives { nbd, exportName, functionName, name, listen,
 * options }; sends { type: 'ready', address } | { type: 'log' } | { type: 'stats' }.
 */
interface GatewayInit {
  nbd: { host: string; port: number };
  exportName: string;
  functionName: string;
  name: string;
  listen: { host: string; port: number };
  options: Record<string, unknown>;
}

const send = (m: unknown) => process.send?.(m);

process.once('message', async (init: GatewayInit) => {
  try {
    const device = await NbdClient.connect({ host: init.nbd.host, port: init.nbd.port, exportName: init.exportName });
    const fn = await loadFunction(init.functionName);
    const options = parseOptions(fn, init.options);
    const running = await fn.start({
      device,
      listen: init.listen,
      options,
      instance: init.name,
      log: (msg) => send({ type: 'log', msg }),
    });
    process.on('message', async (m: { type: string; id?: number }) => {
      if (m.type === 'stats') send({ type: 'stats', id: m.id, stats: running.stats() });
      if (m.type === 'stop') {
        await running.stop();
        await device.close();
        process.exit(0);
      }
    });
    send({ type: 'ready', address: running.address });
  } catch (err) {
    send({ type: 'fatal', error: (err as Error).stack ?? String(err) });
    process.exit(1);
  }
});
