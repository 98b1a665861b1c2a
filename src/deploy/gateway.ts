import { startFailed } from '../util/errors.ts';
import { fork, type ChildProcess } from 'node:child_process';
import { withAffinity } from '../native/sched.ts';
import { fileURLToPath } from 'node:url';
import type { FunctionConfig } from '../config/config.ts';
import { tsxExecArgv } from '../util/runtime.ts';
import { Restarter, restartStatus } from './restart-policy.ts';
import { StatsRequests } from './stats-requests.ts';
import type { Deployment, DeploymentState, DeploymentStatus } from './types.ts';

/**
 * The controller's handle on a gateway process (see gateway-main.ts): it forks
 * it, points it at the controller's NBD export of the volume, restarts it per
 * policy, and relays its stats.
 */
const STOP_TIMEOUT_MS = 5000;

export class GatewayDeployment implements Deployment {
  private child: ChildProcess | undefined;
  private state: DeploymentState = 'stopped';
  private address: { host: string; port: number } | null = null;
  private restarts = 0;
  private lastError: string | null = null;
  private readonly restarter: Restarter;
  private exited: Promise<void> = Promise.resolve();
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly statsRequests = new StatsRequests();
  private everReady = false;

  constructor(
    private readonly cfg: FunctionConfig,
    private readonly nbd: () => { host: string; port: number },
    private readonly log: (m: string) => void,
  ) {
    this.restarter = new Restarter(cfg.restart);
  }

  get name(): string {
    return this.cfg.name;
  }

  start(): Promise<{ host: string; port: number }> {
    this.state = 'starting';
    this.restarter.started();
    // Not on a pinned poller's core: a child inherits the spawning thread's CPU mask.
    const child = withAffinity(undefined, () =>
      fork(fileURLToPath(new URL('./gateway-main.ts', import.meta.url)), [], {
        execArgv: tsxExecArgv(),
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      }),
    );
    this.child = child;
    let exitDone!: () => void;
    this.exited = new Promise((r) => (exitDone = r));
    return new Promise((resolve, reject) => {
      let ready = false;
      child.on('message', (m: any) => {
        if (m.type === 'ready') {
          ready = true;
          this.everReady = true;
          this.address = m.address;
          this.state = 'running';
          resolve(m.address);
        } else if (m.type === 'log') this.log(`gateway ${this.cfg.name}: ${m.msg}`);
        else if (m.type === 'fatal') this.lastError = m.error;
        else if (m.type === 'stats') {
          this.statsRequests.answer(m.id, m.stats);
        }
      });
      child.once('exit', (code, signal) => {
        this.child = undefined;
        this.statsRequests.cancelAll();
        exitDone();
        if (this.state === 'stopping') {
          this.state = 'stopped';
          if (!ready) reject(startFailed(`gateway ${this.cfg.name} stopped before it was ready`));
          return;
        }
        this.state = 'crashed';
        if (!ready) reject(startFailed(`gateway ${this.cfg.name} failed to start: ${this.lastError ?? `exit ${code ?? signal}`}`));
        // Never started at all: a deployment failure, reported by start(). Once it has run, it always comes back.
        if (!this.everReady) return;
        this.log(`gateway ${this.cfg.name}: exited unexpectedly (${code ?? signal})`);
        const plan = this.restarter.next(true);
        if (plan === null) return;
        this.state = 'restarting';
        this.log(`gateway ${this.cfg.name}: restarting in ${plan.delayMs} ms (crash ${plan.consecutive} in a row)`);
        this.restartTimer = setTimeout(() => {
          this.restarts++;
          this.start().catch((err) => this.log(`gateway ${this.cfg.name}: restart failed: ${(err as Error).message}`));
        }, plan.delayMs);
      });
      child.send({
        nbd: this.nbd(),
        exportName: this.cfg.volume,
        functionName: this.cfg.function,
        name: this.cfg.name,
        listen: this.address ?? this.cfg.listen,
        options: this.cfg.options,
      });
    });
  }

  async stop(): Promise<void> {
    clearTimeout(this.restartTimer);
    this.restarter.cancel();
    const child = this.child;
    if (!child) {
      this.state = 'stopped';
      return;
    }
    this.state = 'stopping';
    child.send({ type: 'stop' });
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
  }

  async status(): Promise<DeploymentStatus> {
    let stats: Record<string, number> = {};
    const child = this.child;
    if (child && this.state === 'running') {
      const fromChild = await this.statsRequests.request((id) => child.send({ type: 'stats', id }));
      stats = Object.fromEntries(Object.entries(fromChild).map(([k, v]) => [`fn_${k}`, v]));
    }
    return {
      name: this.cfg.name,
      function: this.cfg.function,
      volume: this.cfg.volume,
      deploy: 'gateway',
      state: this.state,
      address: this.address,
      restarts: this.restarts,
      lastError: this.lastError,
      nextRestart: restartStatus(this.restarter),
      stats,
    };
  }
}
