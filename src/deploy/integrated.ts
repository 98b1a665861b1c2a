import type { FunctionConfig } from '../config/config.ts';
import type { BlockDevice } from '../block/types.ts';
import type { RunningFunction } from '../functions/types.ts';
import { loadFunction, parseOptions } from '../functions/registry.ts';
import type { Deployment, DeploymentStatus } from './types.ts';

/**
 * The function compiled into the controller: it runs in the controller's own
 * process and calls the volume directly. The bare-metal baseline every other
 * deployment is measured against, and the one without isolation: its crash is
 * the controller's crash.
 */
export class IntegratedDeployment implements Deployment {
  private running: RunningFunction | undefined;
  private state: DeploymentStatus['state'] = 'stopped';

  constructor(
    private readonly cfg: FunctionConfig,
    private readonly volume: BlockDevice,
    private readonly log: (m: string) => void,
  ) {}

  get name(): string {
    return this.cfg.name;
  }

  async start(): Promise<{ host: string; port: number }> {
    this.state = 'starting';
    const fn = await loadFunction(this.cfg.function);
    const options = parseOptions(fn, this.cfg.options);
    this.running = await fn.start({
      device: this.volume,
      listen: this.cfg.listen,
      options,
      instance: this.cfg.name,
      log: (m) => this.log(`${this.cfg.name}: ${m}`),
    });
    this.state = 'running';
    return this.running.address;
  }

  async stop(): Promise<void> {
    this.state = 'stopping';
    await this.running?.stop();
    this.running = undefined;
    this.state = 'stopped';
  }

  async status(): Promise<DeploymentStatus> {
    const stats: Record<string, number> = {};
    for (const [k, v] of Object.entries(this.running?.stats() ?? {})) stats[`fn_${k}`] = v;
    return {
      name: this.cfg.name,
      function: this.cfg.function,
      volume: this.cfg.volume,
      deploy: 'integrated',
      state: this.state,
      address: this.running?.address ?? null,
      restarts: 0,
      lastError: null,
      stats,
    };
  }
}
