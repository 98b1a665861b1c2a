import type { Config, FunctionConfig } from '../config/config.ts';
import { BlockCache } from '../storage/block-cache.ts';
import { VolumeStore } from '../storage/volume-store.ts';
import { Poller } from '../queue/poller.ts';
import { defaultEngine, engineDescription } from '../storage/engine.ts';
import { lockDataDir } from './data-dir-lock.ts';
import { NbdServer } from '../nbd/server.ts';
import { ThreadGuest } from '../deploy/guest/thread-guest.ts';
import { ProcessGuest } from '../deploy/guest/process-guest.ts';
import { pinSelf, readThread } from '../native/sched.ts';
import { IntegratedDeployment } from '../deploy/integrated.ts';
import { GatewayDeployment } from '../deploy/gateway.ts';
import type { Deployment, DeploymentStatus } from '../deploy/types.ts';
import { hasFunction, functionNames, clientUrl, defaultExportName } from '../functions/registry.ts';
import { VirtualVolume } from '../storage/virtual-volume.ts';
import type { BlockDevice } from '../block/types.ts';
import { ConfigError } from '../config/config.ts';
import { alreadyExists, inUse, notFound, StorvisorError } from '../util/errors.ts';
import type { VolumeManifest } from '../storage/volume-store.ts';

/**
 * The storage controller: volumes on a data directory, the shared read cache,
 * the poller that services every guest queue, the NBD export of every volume,
 * and the deployed functions. `start` brings all of it up from a Config;
 * `stop` takes it down cleanly (clients' in-flight I/O finished, volumes synced).
 *
 * One failure does not take the rest down: a volume that cannot be created or a
 * function that cannot start is logged and shown in /status as `failed` with its
 * reason, and everything else is served.
 *
 * Ownership: a volume that a function inside the controller (integrated or
 * guest) uses is that function's alone. Ownership is decided from the config
 * before the NBD export listens, so such a volume is never on the export, not
 * even in the instant before its function has started; a function deployed
 * later claims its volume first and then closes the export's connections to it.
 * A volume any function uses (gateways included) or that has connections on
 * the export cannot be shrunk or deleted (SV_ERR_IN_USE); growing is fine.
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
  /** Every function the controller answers for, running or failed, in deployment order. */
  private readonly functions = new Map<string, FunctionConfig>();
  /** Functions that could not be started, and why. */
  private readonly failed = new Map<string, string>();
  /** Volume name -> the in-controller functions that own it (never on the NBD export). */
  private readonly owners = new Map<string, Set<string>>();
  /** Volumes that could not be created, and why. */
  private readonly volumeErrors = new Map<string, string>();
  private readonly virtual = new Map<string, VirtualVolume>();
  private readonly unlock: () => void;
  private stopping: Promise<void> | undefined;
  private pollerTid = process.pid;

  private constructor(
    readonly config: Config,
    readonly log: (m: string) => void,
  ) {
    this.unlock = lockDataDir(config.dataDir);
    this.cache = new BlockCache(config.cacheBytes);
    this.store = new VolumeStore(config.dataDir, this.cache, log, config.direct, config.overcommit);
    this.poller = new Poller(config.spinBudgetUs, defaultEngine(), { spinOnEngine: process.env.STORVISOR_ENGINE_SPIN !== '0' });
    log(`backend: ${engineDescription()}`);
    const pc = config.poller;
    if (pc?.cores || pc?.priority) {
      // The poller is the controller's main thread: pin and prioritise it (threads it starts later inherit this).
      const { refused, tid } = pinSelf(pc.cores, pc.priority);
      this.pollerTid = tid;
      for (const r of refused) log(`poller: not applied: ${r}`);
    }
    for (const f of config.functions) this.claim(f);
  }

  /** An integrated or guest function owns its volume; a gateway reaches its volume through the export. */
  private claim(f: FunctionConfig): void {
    if (f.deploy === 'gateway') return;
    let set = this.owners.get(f.volume);
    if (!set) this.owners.set(f.volume, (set = new Set()));
    set.add(f.name);
  }

  private unclaim(f: FunctionConfig): void {
    const set = this.owners.get(f.volume);
    set?.delete(f.name);
    if (set?.size === 0) this.owners.delete(f.volume);
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
      for (const f of config.functions) {
        try {
          await c.deploy(f);
        } catch (err) {
          // Recorded as failed by deploy(); the others still start.
          log(`function ${f.name}: failed to start, serving the others: ${(err as Error).message}`);
        }
      }
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  private ensureVolumes(): void {
    for (const v of this.config.volumes) {
      if (v.provider !== undefined) continue; // virtual: exists once its provider runs
      try {
        if (!this.store.exists(v.name)) this.store.create(v.name, v.size);
        else {
          const m = this.store.manifest(v.name);
          if (m.size !== v.size) this.log(`volume ${v.name}: config says ${v.size} bytes, volume has ${m.size}; keeping ${m.size} (use 'storvisor volume resize')`);
        }
      } catch (err) {
        // Its functions fail to start with this reason; the rest is served.
        this.volumeErrors.set(v.name, (err as Error).message);
        this.log(`volume ${v.name}: unavailable: ${(err as Error).message}`);
      }
    }
  }

  private async startNbd(at: { host: string; port: number }): Promise<void> {
    this.nbd = new NbdServer({
      exports: (name) => (this.exportable(name) ? { name, device: this.device(name) } : undefined),
      defaultExport: this.config.volumes.find((v) => !this.owners.has(v.name))?.name,
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
    if (this.owners.has(name) || this.volumeErrors.has(name)) return false;
    return this.virtual.has(name) || this.store.exists(name);
  }

  /** The controller's NBD endpoint (gateways connect here). */
  nbdEndpoint(): { host: string; port: number } {
    if (!this.nbdAddress) throw new StorvisorError('SV_ERR_NBD_DISABLED', 'ENOTSUP', 'the controller NBD export is disabled (config nbd: null); gateways need it');
    return this.nbdAddress;
  }

  /** The block device behind a volume name: a virtual volume, or a controller volume. */
  private device(name: string): BlockDevice {
    const v = this.virtual.get(name);
    if (v) return v;
    if (this.config.volumes.some((c) => c.name === name && c.provider !== undefined)) {
      throw new StorvisorError('SV_ERR_VOLUME_UNAVAILABLE', 'EIO', `virtual volume '${name}' is not available: its provider is not running`);
    }
    const why = this.volumeErrors.get(name);
    if (why !== undefined) throw new StorvisorError('SV_ERR_VOLUME_UNAVAILABLE', 'EIO', `volume '${name}' is not available: ${why}`);
    return this.store.openVolume(name);
  }

  /**
   * Deploy function `f`. Its volume is claimed first and the export's
   * connections to it are closed, so the function is its only writer. On
   * failure, the function is recorded as failed (its volume stays claimed:
   * its data is not for anyone else) and the error is thrown.
   */
  async deploy(f: FunctionConfig): Promise<{ host: string; port: number }> {
    if (this.deployments.has(f.name)) throw alreadyExists(`a deployed function named '${f.name}'`);
    this.functions.set(f.name, f);
    this.failed.delete(f.name);
    this.claim(f);
    let d: Deployment | undefined;
    try {
      const closed = (await this.nbd?.closeExport(f.volume)) ?? 0;
      if (closed > 0) this.log(`volume ${f.volume}: closed ${closed} NBD connection(s) before deploying ${f.name} on it`);
      const volume = this.device(f.volume);
      switch (f.deploy) {
        case 'integrated':
          d = new IntegratedDeployment(f, volume, this.log);
          break;
        case 'guest':
          d = f.kind === 'process'
            ? new ProcessGuest(f, volume, this.poller, this.config.spinBudgetUs, this.log)
            : new ThreadGuest(f, volume, this.poller, this.config.spinBudgetUs, this.log);
          break;
        case 'gateway':
          d = new GatewayDeployment(f, () => this.nbdEndpoint(), this.log);
          break;
      }
      this.deployments.set(f.name, d);
      const address = await d.start();
      for (const v of this.config.volumes) {
        if (v.provider !== f.name) continue;
        const exportName = String(f.options.exportName ?? defaultExportName(f.function));
        this.virtual.set(v.name, await VirtualVolume.connect(v.name, { ...address, exportName }));
        this.log(`volume ${v.name}: virtual, provided by ${f.name} (${f.function}), ${this.virtual.get(v.name)!.size} bytes`);
      }
      return address;
    } catch (err) {
      this.failed.set(f.name, (err as Error).message);
      if (d) {
        this.deployments.delete(f.name);
        await this.stopDeployment(f.name, d).catch(() => {});
      }
      throw err;
    }
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
    const f = this.functions.get(name);
    const d = this.deployments.get(name);
    this.deployments.delete(name);
    if (d) await this.stopDeployment(name, d);
    this.functions.delete(name);
    this.failed.delete(name);
    if (f) this.unclaim(f);
  }

  /** What keeps volume `name` from being shrunk or deleted: functions on it, and connections on the export. */
  volumeUsers(name: string): string[] {
    const users: string[] = [];
    for (const f of this.functions.values()) {
      if (f.volume === name) users.push(`function '${f.name}' (${f.deploy}${this.failed.has(f.name) ? ', failed' : ''})`);
    }
    const conns = this.nbd?.connectionsTo(name) ?? 0;
    if (conns > 0) users.push(`${conns} connection(s) on the controller's NBD export`);
    return users;
  }

  /** Create a volume (management API). It is on the NBD export at once unless a function claims its name. */
  createVolume(name: string, size: number): VolumeManifest {
    if (this.config.volumes.some((v) => v.name === name && v.provider !== undefined)) {
      throw alreadyExists(`volume '${name}' (a virtual volume in the config)`);
    }
    return this.store.create(name, size);
  }

  /** Resize a volume (management API): growing is always allowed, shrinking only with allowShrink and nobody using it. */
  async resizeVolume(name: string, size: number, opts: { allowShrink?: boolean } = {}): Promise<VolumeManifest> {
    if (this.virtual.has(name)) throw inUse(`volume '${name}' is virtual: its provider decides its size`);
    const current = this.store.manifest(name);
    if (size < current.size) this.refuseIfUsed(name, `shrink volume '${name}'`);
    return this.store.resize(name, size, opts);
  }

  /** Delete a volume (management API), only when nobody uses it. */
  async deleteVolume(name: string): Promise<void> {
    if (this.virtual.has(name)) throw inUse(`volume '${name}' is virtual: undeploy its provider instead`);
    if (!this.store.exists(name)) throw notFound(`volume '${name}'`);
    this.refuseIfUsed(name, `delete volume '${name}'`);
    await this.store.closeVolume(name); // the handle an earlier NBD client left open
    await this.store.delete(name);
  }

  private refuseIfUsed(name: string, what: string): void {
    const users = this.volumeUsers(name);
    if (users.length > 0) throw inUse(`cannot ${what}: it is in use by ${users.join(' and ')}; stop them first`);
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

  async status(): Promise<{ volumes: unknown[]; functions: DeploymentStatus[]; cache: unknown; poller: unknown; engine: unknown; nbd: unknown }> {
    const open = new Map(this.store.openVolumes().map((v) => [v.name, v]));
    return {
      volumes: [
        ...this.store.list().map((m) => ({ ...m, open: open.has(m.name), direct: open.get(m.name)?.direct, stats: open.get(m.name)?.stats() })),
        ...[...this.virtual.values()].map((v) => ({ name: v.name, size: v.size, virtual: true, provider: this.config.volumes.find((c) => c.name === v.name)?.provider })),
      ],
      functions: await Promise.all([...this.functions.values()].map((f) => this.functionStatus(f))),
      cache: this.cache.stats(),
      poller: { ...this.poller.counters, spinning: this.poller.spinningCount(), thread: readThread(process.pid, this.pollerTid), cores: this.config.poller?.cores ?? null },
      engine: { ...defaultEngine().stats(), description: engineDescription() },
      nbd: this.nbd ? { address: this.nbdAddress, ...this.nbd.stats() } : null,
    };
  }

  private async functionStatus(f: FunctionConfig): Promise<DeploymentStatus> {
    const d = this.deployments.get(f.name);
    if (d) return d.status();
    return {
      name: f.name,
      function: f.function,
      volume: f.volume,
      deploy: f.deploy,
      state: 'failed',
      address: null,
      restarts: 0,
      lastError: this.failed.get(f.name) ?? 'not running',
      stats: {},
    };
  }

  /** Stop clients' traffic, finish in-flight I/O, sync and close volumes. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      // Consumers before providers: a function on a virtual volume flushes through it.
      for (const [name, d] of [...this.deployments].reverse()) await this.stopDeployment(name, d).catch(() => {});
      this.deployments.clear();
      await this.nbd?.close();
      this.poller.stop();
      try {
        await this.store.closeAll(); // a failed final sync is logged by the store and reported to the caller
      } finally {
        this.unlock();
      }
    })();
    return this.stopping;
  }
}
