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
import { hasFunction, functionNames, clientUrlOf, exportNameOf, loadFunction } from '../functions/registry.ts';
import { VirtualVolume } from '../storage/virtual-volume.ts';
import type { BlockDevice } from '../block/types.ts';
import { ConfigError } from '../config/config.ts';
import { alreadyExists, deployFailed, inUse, invalidArgument, limitReached, nbdDisabled, notFound, StorvisorError, volumeUnavailable } from '../util/errors.ts';
import type { Histogram } from '../util/histogram.ts';
import type { VolumeManifest } from '../storage/volume-store.ts';
import { statSync } from 'node:fs';
import type { NotifyMode } from '../config/config.ts';
import { applyRuntimeState, parseFunction, readRuntimeState, writeRuntimeState, type RuntimeState } from './runtime-state.ts';
import { processStats, type ProcessSample } from './process-stats.ts';

/** A log sink: a message, and the function and volume it is about (fields for structured logs). */
export type LogFn = (message: string, fields?: { function?: string; volume?: string }) => void;

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
 *
 * Runtime management (the API's function and volume changes) is kept in
 * <dataDir>/runtime-state.json and applied on top of the config at start
 * (runtime-state.ts), so a restart comes back in the same shape.
 */
export interface Endpoint {
  name: string;
  kind: string;
  url: string;
}

/** Functions one controller runs at most (config and runtime together); a runtime deploy past it is refused. */
export const MAX_FUNCTIONS = 64;
/** A function's config object deployed at runtime, at most (JSON bytes): 64 of them keep the state file small. */
export const MAX_FUNCTION_JSON = 16 * 1024;

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
  /** Failures on the way down, each also logged: nothing is swallowed silently. */
  readonly counters = { stopFailures: 0 };
  private pollerTid = process.pid;

  private constructor(
    readonly config: Config,
    readonly log: LogFn,
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

  static async start(config: Config, log: LogFn = () => {}): Promise<Controller> {
    // What the management API changed last time (see runtime-state.ts), on top of the config file.
    const state = readRuntimeState(config.dataDir);
    config = applyRuntimeState(config, state, log);
    for (const [i, f] of config.functions.entries()) {
      if (!hasFunction(f.function)) {
        throw new ConfigError(`functions[${i}].function`, `unknown function '${f.function}' (known: ${functionNames().join(', ')})`);
      }
    }
    const c = new Controller(config, log);
    c.runtime = state;
    try {
      c.ensureVolumes();
      await c.store.snapshots.recover(); // finish snapshot deletions a crash cut short, before anyone reads
      await c.attachRbdVolumes();
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
      if (v.backend === 'rbd') continue; // attachRbdVolumes
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

  /**
   * RBD volumes: create (or adopt) the image, open it and take its exclusive
   * lock. A volume another controller holds is unavailable here, with the
   * holder named, until `takeoverVolume`.
   */
  private async attachRbdVolumes(): Promise<void> {
    for (const v of this.config.volumes) {
      if (v.backend !== 'rbd') continue;
      try {
        if (!this.store.exists(v.name)) await this.store.createRbd(v.name, v.size, v.rbd!);
        else if (this.store.manifest(v.name).backend !== 'rbd') throw invalidArgument(`the config says backend "rbd", but volume '${v.name}' exists here as a file volume`);
        await this.store.attach(v.name);
      } catch (err) {
        this.volumeErrors.set(v.name, (err as Error).message);
        this.log(`volume ${v.name}: unavailable: ${(err as Error).message}`);
      }
    }
  }

  /**
   * Take an RBD volume over from a dead controller (`storvisor volume takeover`):
   * blocklist the holder, break its lock, take ours, then start the functions
   * that could not start without the volume.
   */
  async takeoverVolume(name: string): Promise<{ volume: string; started: string[] }> {
    const v = this.config.volumes.find((c) => c.name === name);
    if (!this.store.exists(name) && v?.backend === 'rbd') await this.store.createRbd(name, v.size, v.rbd!);
    await this.store.attach(name, { takeover: true });
    this.volumeErrors.delete(name);
    const started: string[] = [];
    for (const f of this.config.functions) {
      if (f.volume !== name || this.deployments.has(f.name)) continue;
      await this.deploy(f);
      started.push(f.name);
    }
    this.log(`volume ${name}: taken over${started.length ? `; started ${started.join(', ')}` : ''}`);
    return { volume: name, started };
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
    if (!this.nbdAddress) throw nbdDisabled('the controller NBD export is disabled (config nbd: null); gateways need it');
    return this.nbdAddress;
  }

  /** The block device behind a volume name: a virtual volume, or a controller volume. */
  private device(name: string): BlockDevice {
    const v = this.virtual.get(name);
    if (v) return v;
    if (this.config.volumes.some((c) => c.name === name && c.provider !== undefined)) {
      throw volumeUnavailable(`virtual volume '${name}' is not available: its provider is not running`);
    }
    const why = this.volumeErrors.get(name);
    if (why !== undefined) throw volumeUnavailable(`volume '${name}' is not available: ${why}`);
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
    const flog = (m: string) => this.log(m, { function: f.name, volume: f.volume });
    try {
      const closed = (await this.nbd?.closeExport(f.volume)) ?? 0;
      if (closed > 0) this.log(`volume ${f.volume}: closed ${closed} NBD connection(s) before deploying ${f.name} on it`);
      const volume = this.device(f.volume);
      switch (f.deploy) {
        case 'integrated':
          d = new IntegratedDeployment(f, volume, flog);
          break;
        case 'guest':
          d = f.kind === 'process'
            ? new ProcessGuest(f, volume, this.poller, this.config.spinBudgetUs, flog)
            : new ThreadGuest(f, volume, this.poller, this.config.spinBudgetUs, flog);
          break;
        case 'gateway':
          d = new GatewayDeployment(f, () => this.nbdEndpoint(), flog);
          break;
      }
      this.deployments.set(f.name, d);
      const address = await d.start();
      for (const v of this.config.volumes) {
        if (v.provider !== f.name) continue;
        const exportName = exportNameOf(await loadFunction(f.function), f.options);
        this.virtual.set(v.name, await VirtualVolume.connect(v.name, { ...address, exportName }));
        this.log(`volume ${v.name}: virtual, provided by ${f.name} (${f.function}), ${this.virtual.get(v.name)!.size} bytes`);
      }
      return address;
    } catch (err) {
      this.failed.set(f.name, (err as Error).message);
      if (d) {
        this.deployments.delete(f.name);
        await this.stopDeployment(f.name, d).catch((e) => this.stopFailed(`function ${f.name} (after its failed start)`, e));
      }
      throw err;
    }
  }

  /**
   * Stop one deployment, first closing the virtual volumes it provides. A
   * virtual volume that fails to close is logged and counted, and the
   * deployment is stopped all the same.
   */
  private async stopDeployment(name: string, d: Deployment): Promise<void> {
    for (const v of this.config.volumes) {
      if (v.provider !== name) continue;
      try {
        await this.virtual.get(v.name)?.close();
      } catch (err) {
        this.stopFailed(`virtual volume ${v.name}`, err);
      }
      this.virtual.delete(v.name);
    }
    await d.stop();
  }

  /** A failure while stopping something: logged and counted, and the rest of the stop goes on. */
  private stopFailed(what: string, err: unknown): void {
    this.counters.stopFailures++;
    this.log(`${what}: stop failed: ${(err as Error)?.message ?? String(err)}`);
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
    const m = this.store.create(name, size);
    if (this.runtime.deletedVolumes.includes(name)) {
      this.saveRuntime({ ...this.runtime, deletedVolumes: this.runtime.deletedVolumes.filter((v) => v !== name) });
    }
    return m;
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
    // A config volume would be re-created at the next start: remember it is gone.
    if (this.config.volumes.some((v) => v.name === name) && !this.runtime.deletedVolumes.includes(name)) {
      this.saveRuntime({ ...this.runtime, deletedVolumes: [...this.runtime.deletedVolumes, name] });
    }
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
    for (const f of this.functions.values()) {
      const s = await this.deployments.get(f.name)?.status();
      if (!s?.address) continue;
      const how = f.deploy === 'guest' ? `guest/${f.notify}` : f.deploy;
      out.push({ name: f.name, kind: `${f.function} (${how}) on ${f.volume}`, url: clientUrlOf(await loadFunction(f.function), s.address, f.options) });
    }
    return out;
  }

  async status(): Promise<{ volumes: unknown[]; functions: DeploymentStatus[]; cache: unknown; poller: unknown; engine: unknown; nbd: unknown; controller: unknown; process: ProcessSample }> {
    const open = new Map(this.store.openVolumes().map((v) => [v.name, v]));
    return {
      volumes: [
        ...this.store.list().map((m) => ({ ...m, ...this.store.backendOf(m.name), usedBytes: this.usedBytes(m.name), open: open.has(m.name), direct: open.get(m.name)?.direct, error: this.volumeErrors.get(m.name), stats: open.get(m.name)?.stats(), latency: this.volumeLatency(open.get(m.name)) })),
        // Configured volumes that could not even be created (an RBD cluster out of reach): named, with why.
        ...[...this.volumeErrors].filter(([n]) => !this.store.exists(n)).map(([name, error]) => ({ name, backend: this.config.volumes.find((v) => v.name === name)?.backend ?? 'file', open: false, error })),
        ...[...this.virtual.values()].map((v) => ({ name: v.name, size: v.size, virtual: true, provider: this.config.volumes.find((c) => c.name === v.name)?.provider })),
      ],
      functions: await Promise.all([...this.functions.values()].map((f) => this.functionStatus(f))),
      cache: this.cache.stats(),
      poller: { ...this.poller.counters, spinning: this.poller.spinningCount(), thread: readThread(process.pid, this.pollerTid), cores: this.config.poller?.cores ?? null },
      engine: { ...defaultEngine().stats(), description: engineDescription() },
      nbd: this.nbd ? { address: this.nbdAddress, ...this.nbd.stats() } : null,
      controller: { ...this.counters },
      process: processStats(),
    };
  }

  private async functionStatus(f: FunctionConfig): Promise<DeploymentStatus> {
    const d = this.deployments.get(f.name);
    if (d) {
      const s = await d.status();
      // Crash restarts of the deployments an operator's restart replaced: the count only grows.
      const earlier = this.earlierRestarts.get(f.name) ?? 0;
      return earlier ? { ...s, restarts: s.restarts + earlier } : s;
    }
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

  // ---- runtime management (the management API): functions, persisted in runtime-state.json ----

  /** What the API changed, applied at the next start (see runtime-state.ts). */
  private runtime: RuntimeState = { version: 1, deletedVolumes: [], removedFunctions: [], addedFunctions: [], notify: {} };

  /** Per function: crash restarts of deployments replaced by a restart or a notify change (undeploy forgets them). */
  private readonly earlierRestarts = new Map<string, number>();

  /** Management changes run one at a time (a deploy and a delete of its volume cannot interleave). */
  private management: Promise<unknown> = Promise.resolve();

  /** Run `fn` after every management change before it, alone. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.management.then(fn, fn);
    this.management = run.catch(() => {});
    return run;
  }

  private saveRuntime(next: RuntimeState): void {
    writeRuntimeState(this.config.dataDir, next);
    this.runtime = next;
  }

  /** Bytes the volume's image occupies on disk (thin volumes: what was written). */
  private usedBytes(name: string): number | undefined {
    try {
      return statSync(this.store.imagePath(name)).blocks * 512;
    } catch {
      return undefined;
    }
  }

  /** A volume's latency histograms (cumulative counts per power-of-two µs bucket; see util/histogram.ts). */
  private volumeLatency(v: { latency: { read: Histogram; write: Histogram } } | undefined): unknown {
    if (!v) return undefined;
    const h = (x: Histogram) => ({ buckets: [...x.buckets], count: x.count, sumUs: x.sumUs });
    return { read: h(v.latency.read), write: h(v.latency.write) };
  }

  /** Every function the controller answers for, running or failed. */
  async listFunctions(): Promise<DeploymentStatus[]> {
    return Promise.all([...this.functions.values()].map((f) => this.functionStatus(f)));
  }

  async functionInfo(name: string): Promise<DeploymentStatus> {
    const f = this.functions.get(name);
    if (!f) throw notFound(`function '${name}'`);
    return this.functionStatus(f);
  }

  /**
   * Deploy a function on a running controller from its config object (the
   * same fields as in the config file). Its volume must exist and must not be
   * in another in-controller function's hands. Persisted: it comes back after
   * a restart, on the port it got (a port 0 is pinned to the one bound).
   */
  async deployFunction(raw: Record<string, unknown>): Promise<DeploymentStatus> {
    // Bounded: each guest holds memory and a queue, and every deploy is a record in the state file.
    if (this.functions.size >= MAX_FUNCTIONS) throw limitReached(`${MAX_FUNCTIONS} functions are deployed already; undeploy one first`);
    if (JSON.stringify(raw).length > MAX_FUNCTION_JSON) throw invalidArgument(`a function's config must be under ${MAX_FUNCTION_JSON} bytes of JSON`);
    const f = parseFunction(raw, this.config.dataDir);
    if (!hasFunction(f.function)) throw invalidArgument(`unknown function '${f.function}' (known: ${functionNames().join(', ')})`);
    if (this.functions.has(f.name)) throw alreadyExists(`function '${f.name}'`);
    if (!this.virtual.has(f.volume) && !this.store.exists(f.volume)) throw notFound(`volume '${f.volume}'`);
    if (this.volumeErrors.has(f.volume)) throw new StorvisorError('SV_ERR_VOLUME_UNAVAILABLE', 'EIO', `volume '${f.volume}' is not available: ${this.volumeErrors.get(f.volume)}`);
    if (f.deploy !== 'gateway') {
      const users = [...this.functions.values()].filter((g) => g.volume === f.volume).map((g) => `'${g.name}'`);
      if (users.length > 0) throw inUse(`volume '${f.volume}' is used by function ${users.join(', ')}: a second writer would corrupt it; undeploy it first`);
    }
    let address: { host: string; port: number };
    try {
      address = await this.deploy(f);
    } catch (err) {
      await this.undeploy(f.name).catch(() => {}); // a runtime deploy that fails leaves nothing behind
      throw deployFailed(`function '${f.name}' did not start: ${(err as Error).message}`, err);
    }
    // A port 0 is pinned to the port bound, here (restart, notify) and in the state (the next start).
    const listen = { host: f.listen.host, port: f.listen.port || address.port };
    this.functions.set(f.name, { ...f, listen });
    const persisted = { ...raw, listen };
    const notify = { ...this.runtime.notify };
    delete notify[f.name];
    this.saveRuntime({ ...this.runtime, addedFunctions: [...this.runtime.addedFunctions.filter((a) => a.name !== f.name), persisted], notify });
    this.log(`function ${f.name}: deployed at runtime (${f.function}, ${f.deploy}) on volume ${f.volume}`, { function: f.name, volume: f.volume });
    return this.functionStatus(this.functions.get(f.name)!);
  }

  /** Undeploy a function (stopping it cleanly, its volume synced); persisted. */
  async undeployFunction(name: string): Promise<void> {
    const f = this.functions.get(name);
    if (!f) throw notFound(`function '${name}'`);
    this.refuseIfProviding(f, 'undeploy');
    await this.undeploy(name);
    this.earlierRestarts.delete(name);
    const added = this.runtime.addedFunctions.some((a) => a.name === name);
    const notify = { ...this.runtime.notify };
    delete notify[name];
    this.saveRuntime({
      ...this.runtime,
      addedFunctions: this.runtime.addedFunctions.filter((a) => a.name !== name),
      removedFunctions: added || this.runtime.removedFunctions.includes(name) ? this.runtime.removedFunctions : [...this.runtime.removedFunctions, name],
      notify,
    });
    this.log(`function ${name}: undeployed at runtime`, { function: name, volume: f.volume });
  }

  /** Stop and start a function again with the same config (not a change of shape: nothing persisted). */
  async restartFunction(name: string): Promise<DeploymentStatus> {
    const f = this.functions.get(name);
    if (!f) throw notFound(`function '${name}'`);
    this.refuseIfProviding(f, 'restart');
    await this.redeploy(f);
    this.log(`function ${name}: restarted by the operator`, { function: name, volume: f.volume });
    return this.functionStatus(f);
  }

  /** Change a guest's queue notification mode (the guest restarts on a fresh queue); persisted. */
  async setNotify(name: string, mode: NotifyMode): Promise<DeploymentStatus> {
    const modes: NotifyMode[] = ['poll', 'notify', 'adaptive', 'poll-guest', 'poll-controller'];
    if (!modes.includes(mode)) throw invalidArgument(`"notify" must be one of ${modes.join(', ')} (got ${JSON.stringify(mode)})`);
    const f = this.functions.get(name);
    if (!f) throw notFound(`function '${name}'`);
    if (f.deploy !== 'guest') throw invalidArgument(`function '${name}' is deployed ${f.deploy}: only guests have a queue notification mode`);
    this.refuseIfProviding(f, 'change the notification mode of');
    const next = { ...f, notify: mode };
    await this.redeploy(next);
    if (this.runtime.addedFunctions.some((a) => a.name === name)) {
      this.saveRuntime({ ...this.runtime, addedFunctions: this.runtime.addedFunctions.map((a) => (a.name === name ? { ...a, notify: mode } : a)) });
    } else {
      this.saveRuntime({ ...this.runtime, notify: { ...this.runtime.notify, [name]: mode } });
    }
    this.log(`function ${name}: notification mode now ${mode}`, { function: name, volume: f.volume });
    return this.functionStatus(next);
  }

  /** Stop `f`'s deployment and start `next` in its place (same name, same volume, still claimed throughout). */
  private async redeploy(next: FunctionConfig): Promise<void> {
    const d = this.deployments.get(next.name);
    this.deployments.delete(next.name);
    if (d) {
      const restarts = (await d.status().catch(() => undefined))?.restarts ?? 0;
      this.earlierRestarts.set(next.name, (this.earlierRestarts.get(next.name) ?? 0) + restarts);
      await this.stopDeployment(next.name, d);
    }
    // The volume stays claimed throughout (never on the export); deploy() replaces the config in place.
    await this.deploy(next); // on failure it is recorded as failed and its volume stays claimed
  }

  /** A function whose virtual volume another function uses cannot be stopped from under it. */
  private refuseIfProviding(f: FunctionConfig, what: string): void {
    for (const v of this.config.volumes) {
      if (v.provider !== f.name) continue;
      const users = [...this.functions.values()].filter((g) => g.volume === v.name).map((g) => `'${g.name}'`);
      if (users.length > 0) throw inUse(`cannot ${what} function '${f.name}': it provides volume '${v.name}', used by ${users.join(', ')}; undeploy those first`);
    }
  }

  /** Stop clients' traffic, finish in-flight I/O, sync and close volumes. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      // Consumers before providers: a function on a virtual volume flushes through it.
      for (const [name, d] of [...this.deployments].reverse()) {
        await this.stopDeployment(name, d).catch((err) => this.stopFailed(`function ${name}`, err));
      }
      this.deployments.clear();
      await this.nbd?.close().catch((err) => this.stopFailed('the NBD export', err));
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
