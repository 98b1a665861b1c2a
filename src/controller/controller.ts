import type { Config, FunctionConfig } from '../config/config.ts';
import { BlockCache } from './block-cache.ts';
import { VolumeStore } from './volume-store.ts';
import { Poller } from './poller.ts';
import { lockDataDir } from './data-dir-lock.ts';
import { NbdServer } from '../nbd/server.ts';
import { ThreadGuest } from '../guest/thread-guest.ts';
import { IntegratedDeployment } from '../deploy/integrated.ts';
import { GatewayDeployment } from '../deploy/gateway.ts';
import type { Deployment, DeploymentStatus } from '../deploy/types.ts';
import { hasFunction, functionNames, clientUrl, defaultExportName } from '../functions/registry.ts';
import { VirtualVolume } from './virtual-volume.ts';
import type { BlockDevice } from '../block/types.ts';
import { ConfigError } from '../config/config.ts';

/**
 * The storage controller: volumes on a data directory, the shared read cache,
 * the poller that services every guest queue, the NBD export of every volume,
 * and the deployed functions. `start` brings all of it up from a Config;
 * `stop` takes it down cleanly (clients' in-flight I/O finished, volumes synced).
 */
export interface Endpoint {
  name: string;
  kind: string;
  url: string;
}

export class Controller {
  readonly store: VolumeStore;
  readonly cache: BlockCache;
  readonly poller: Poller;
  private nbd: NbdServer | undefined;
  private nbdAddress: { host: string; port: number } | undefined;
  private readonly deployments = new Map<string, Deployment>();
  private readonly deployed = new Map<string, FunctionConfig>();
  private readonly virtual = new Map<string, VirtualVolume>();
  private readonly unlock: () => void;
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly config: Config,
    readonly log: (m: string) => void,
  ) {
    this.unlock = lockDataDir(config.dataDir);
    this.cache = new BlockCache(config.cacheBytes);
    this.store = new VolumeStore(config.dataDir, this.cache, log, config.direct);
    this.poller = new Poller(config.spinBudgetUs);
  }

  static async start(config: Config, log: (m: string) => void = () => {}): Promise<Controller> {
    for (const [i, f] of config.functions.entries()) {
      if (!hasFunction(f.function)) {
        throw new ConfigError(`functions[${i}].function`, `unknown function '${f.function}' (known: ${functionNames().join(', ')})`);
      }
    }
    const c = new Controller(config, log);
    try {
      c.ensureVolumes();
      if (config.nbd) await c.startNbd(config.nbd);
      for (const f of config.functions) await c.deploy(f);
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  private ensureVolumes(): void {
    for (const v of this.config.volumes) {
      if (v.provider !== undefined) continue; // virtual: exists once its provider runs
      if (!this.store.exists(v.name)) this.store.create(v.name, v.size);
      else {
        const m = this.store.manifest(v.name);
        if (m.size !== v.size) this.log(`volume ${v.name}: config says ${v.size} bytes, volume has ${m.size}; keeping ${m.size} (use 'storvisor volume resize')`);
      }
    }
  }

  private async startNbd(at: { host: string; port: number }): Promise<void> {
    this.nbd = new NbdServer({
      exports: (name) => (this.exportable(name) ? { name, device: this.device(name) } : undefined),
      defaultExport: this.config.volumes.find((v) => !this.config.functions.some((f) => f.volume === v.name && f.deploy !== 'gateway'))?.name,
      log: (m) => this.log(`nbd: ${m}`),
    });
    this.nbdAddress = await this.nbd.listen(at.host, at.port);
  }

  /**
   * A volume is on the controller's NBD export unless a function inside the
   * controller (integrated or guest) owns it: a second writer underneath a
   * filesystem or a database would corrupt it. A gateway's volume is exported,
   * since that is how the gateway reaches it.
   */
  private exportable(name: string): boolean {
    if (!this.virtual.has(name) && !this.store.exists(name)) return false;
    for (const f of this.deployed.values()) if (f.volume === name && f.deploy !== 'gateway') return false;
    return true;
  }

  /** The controller's NBD endpoint (gateways connect here). */
  nbdEndpoint(): { host: string; port: number } {
    if (!this.nbdAddress) throw new Error('the controller NBD export is disabled (config nbd: null); gateways need it');
    return this.nbdAddress;
  }

  /** The block device behind a volume name: a virtual volume, or a controller volume. */
  private device(name: string): BlockDevice {
    const v = this.virtual.get(name);
    if (v) return v;
    if (this.config.volumes.some((c) => c.name === name && c.provider !== undefined)) {
      throw new Error(`virtual volume '${name}' is not available: its provider is not running`);
    }
    return this.store.openVolume(name);
  }

  async deploy(f: FunctionConfig): Promise<{ host: string; port: number }> {
    if (this.deployments.has(f.name)) throw new Error(`a function named '${f.name}' is already deployed`);
    const volume = this.device(f.volume);
    let d: Deployment;
    switch (f.deploy) {
      case 'integrated':
        d = new IntegratedDeployment(f, volume, this.log);
        break;
      case 'guest':
        d = new ThreadGuest(f, volume, this.poller, this.config.spinBudgetUs, this.log);
        break;
      case 'gateway':
        d = new GatewayDeployment(f, () => this.nbdEndpoint(), this.log);
        break;
    }
    this.deployments.set(f.name, d);
    this.deployed.set(f.name, f);
    const address = await d.start();
    for (const v of this.config.volumes) {
      if (v.provider !== f.name) continue;
      const exportName = String(f.options.exportName ?? defaultExportName(f.function));
      this.virtual.set(v.name, await VirtualVolume.connect(v.name, { ...address, exportName }));
      this.log(`volume ${v.name}: virtual, provided by ${f.name} (${f.function}), ${this.virtual.get(v.name)!.size} bytes`);
    }
    return address;
  }

  /** Stop one deployment, first closing the virtual volumes it provides. */
  private async stopDeployment(name: string, d: Deployment): Promise<void> {
    for (const v of this.config.volumes) {
      if (v.provider !== name) continue;
      await this.virtual.get(v.name)?.close();
      this.virtual.delete(v.name);
    }
    await d.stop();
  }

  deployment(name: string): Deployment | undefined {
    return this.deployments.get(name);
  }

  async undeploy(name: string): Promise<void> {
    const d = this.deployments.get(name);
    if (!d) return;
    this.deployments.delete(name);
    await this.stopDeployment(name, d);
    this.deployed.delete(name);
  }

  /** Every client-facing endpoint: the controller's NBD export of each volume, then each function. */
  async endpoints(): Promise<Endpoint[]> {
    const out: Endpoint[] = [];
    if (this.nbdAddress) {
      const { host, port } = this.nbdAddress;
      for (const v of [...this.store.list(), ...this.virtual.values()]) {
        if (this.exportable(v.name)) out.push({ name: v.name, kind: 'controller NBD export', url: `nbd://${host}:${port}/${v.name}` });
      }
    }
    for (const f of this.config.functions) {
      const s = await this.deployments.get(f.name)?.status();
      if (!s?.address) continue;
      const how = f.deploy === 'guest' ? `guest/${f.notify}` : f.deploy;
      out.push({ name: f.name, kind: `${f.function} (${how}) on ${f.volume}`, url: clientUrl(f.function, s.address, f.options) });
    }
    return out;
  }

  async status(): Promise<{ volumes: unknown[]; functions: DeploymentStatus[]; cache: unknown; poller: unknown; nbd: unknown }> {
    const open = new Map(this.store.openVolumes().map((v) => [v.name, v]));
    return {
      volumes: [
        ...this.store.list().map((m) => ({ ...m, open: open.has(m.name), direct: open.get(m.name)?.direct, stats: open.get(m.name)?.stats() })),
        ...[...this.virtual.values()].map((v) => ({ name: v.name, size: v.size, virtual: true, provider: this.config.volumes.find((c) => c.name === v.name)?.provider })),
      ],
      functions: await Promise.all([...this.deployments.values()].map((d) => d.status())),
      cache: this.cache.stats(),
      poller: { ...this.poller.counters, spinning: this.poller.spinningCount() },
      nbd: this.nbd ? { address: this.nbdAddress, ...this.nbd.stats() } : null,
    };
  }

  /** Stop clients' traffic, finish in-flight I/O, sync and close volumes. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      // Consumers before providers: a function on a virtual volume flushes through it.
      for (const [name, d] of [...this.deployments].reverse()) await this.stopDeployment(name, d).catch(() => {});
      this.deployments.clear();
      this.deployed.clear();
      await this.nbd?.close();
      this.poller.stop();
      await this.store.closeAll();
      this.unlock();
    })();
    return this.stopping;
  }
}
