import { startFailed } from '../../util/errors.ts';
import { Worker } from 'node:worker_threads';
import { EventEmitter } from 'node:events';
import type { FunctionConfig } from '../../config/config.ts';
import type { BlockDevice } from '../../block/types.ts';
import type { Poller } from '../../queue/poller.ts';
import { createRegion } from '../../queue/layout.ts';
import { VirtioBlkDevice, writebackFor } from '../../queue/blk-device.ts';
import { Restarter, restartStatus } from '../restart-policy.ts';
import { StatsRequests } from '../stats-requests.ts';
import type { Deployment, DeploymentState, DeploymentStatus } from '../types.ts';
import type { FromGuest, GuestBootData, GuestWorkerData, ToGuest } from './messages.ts';
import { guestEntry } from './entry.ts';
import { withAffinity } from '../../native/sched.ts';

/**
 * A thread guest, seen from the controller: a worker thread with its own V8 heap
 * (bounded by resourceLimits) and a statically sized shared region holding its
 * virtqueue and data buffers. The device side of the queue runs here, in the
 * controller's poller, against the guest's volume.
 *
 * Containment: an exception, an out-of-memory or a terminate ends only the
 * worker. Requests the device had already taken are finished against the volume
 * (drain) before anything else may use it; requests still in the ring die with
 * the region and were never acknowledged. A fresh region is made for every
 * start, so a restarted guest never sees its predecessor's queue.
 *
 * Fast restart: guest code is compiled JavaScript (build/guest, see entry.ts),
 * and with `standby` a spare guest is spawned once this one runs: its region
 * made, its function's code loaded, waiting for `boot`. A crash then costs a
 * message and the function's own start, not a process or thread start.
 */
const STOP_TIMEOUT_MS = 5000;
/** First restart delay; doubles per crash in a row (restart-policy.ts), so a crash loop still backs off. */
const RESTART_BASE_MS = 10;
/** How long after a (re)start the standby is made: the new guest's first clients come first. */
const STANDBY_DELAY_MS = 500;

/** What runs a guest: a worker thread, or a child process (ProcessGuest). Emits 'message', 'error' and 'exit' (code). */
export interface GuestHost extends EventEmitter {
  postMessage(m: ToGuest): void;
  terminate(): Promise<unknown>;
}

interface Standby {
  region: GuestRegion;
  host: GuestHost;
  dead: boolean;
  /** Its function's code is loaded: booting it costs only the function's start. */
  warm: boolean;
}

/** A worker thread as a GuestHost. */
class WorkerHost extends EventEmitter implements GuestHost {
  constructor(private readonly worker: Worker) {
    super();
    worker.on('message', (m) => this.emit('message', m));
    worker.on('error', (e) => this.emit('error', e));
    worker.once('exit', (code) => this.emit('exit', code));
  }

  postMessage(m: ToGuest): void {
    this.worker.postMessage(m);
  }

  terminate(): Promise<number> {
    return this.worker.terminate();
  }
}

/** A guest's region and how to let it go once the guest is gone and its requests drained. */
export interface GuestRegion {
  region: SharedArrayBuffer | ArrayBuffer;
  dispose(): void;
}

export class ThreadGuest implements Deployment {
  protected worker: GuestHost | undefined;
  private device: VirtioBlkDevice | undefined;
  private state: DeploymentState = 'stopped';
  private address: { host: string; port: number } | null = null;
  private restarts = 0;
  private lastError: string | null = null;
  private readonly restarter: Restarter;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly statsRequests = new StatsRequests();
  private exited: Promise<void> = Promise.resolve();
  private everReady = false;
  private standby: Standby | undefined;
  private readonly useStandby: boolean;

  constructor(
    protected readonly cfg: FunctionConfig,
    protected readonly volume: BlockDevice,
    private readonly poller: Poller,
    private readonly spinBudgetUs: number,
    protected readonly log: (m: string) => void,
  ) {
    this.restarter = new Restarter(cfg.restart, { baseMs: RESTART_BASE_MS });
    this.useStandby = cfg.standby ?? cfg.kind === 'process';
  }

  get name(): string {
    return this.cfg.name;
  }

  async start(): Promise<{ host: string; port: number }> {
    this.state = 'starting';
    return this.launch();
  }

  /** A fresh region for every start: a restarted guest never sees its predecessor's queue. */
  protected makeRegion(): GuestRegion {
    const cfg = this.cfg;
    const region = createRegion({
      queueSize: cfg.queueSize,
      dataBytes: cfg.memory,
      mode: cfg.notify,
      capacityBytes: this.volume.size,
      // A virtual volume (another function's export) may cache writes, and a file
      // volume's writes need no sync each when the guest flushes: write-back then.
      writeback: writebackFor(this.volume),
    });
    return { region, dispose: () => {} };
  }

  /** Start what runs the guest, up to loading its code; it starts serving when sent `boot`. */
  protected spawnHost(region: GuestRegion): GuestHost {
    const cfg = this.cfg;
    const entry = guestEntry('thread', cfg.function);
    // worker-boot.mjs registers tsx itself; a compiled entry with a .ts function module needs it too.
    const file = entry.compiled && entry.execArgv.length > 0 ? new URL('./worker-boot.mjs', import.meta.url) : entry.file;
    const workerData: GuestWorkerData = { region: region.region as SharedArrayBuffer, functionName: cfg.function };
    // A thread inherits its creator's CPU mask: not the poller's core, when the poller is pinned.
    return withAffinity(undefined, () => new WorkerHost(new Worker(file, {
      workerData,
      name: `guest:${cfg.name}`,
      resourceLimits: {
        maxOldGenerationSizeMb: cfg.heapMiB,
        maxYoungGenerationSizeMb: Math.max(4, Math.min(64, cfg.heapMiB / 8)),
      },
    })));
  }

  /** Spawn the spare that the next restart will boot (once the guest runs; never while stopping). */
  private prepareStandby(): void {
    if (!this.useStandby || this.standby || this.state !== 'running') return;
    let sb: Standby;
    try {
      const region = this.makeRegion();
      try {
        sb = { region, host: this.spawnHost(region), dead: false, warm: false };
      } catch (err) {
        region.dispose();
        throw err;
      }
    } catch (err) {
      this.log(`guest ${this.cfg.name}: no warm standby: ${(err as Error).message}`);
      return;
    }
    sb.host.on('error', () => {});
    const onPrepared = (m: FromGuest) => {
      if (m.type !== 'prepared') return;
      sb.warm = true;
      sb.host.off('message', onPrepared);
    };
    sb.host.on('message', onPrepared);
    sb.host.once('exit', () => {
      sb.dead = true;
      if (this.standby !== sb) return; // promoted: its exit is the guest's, handled by launch()
      this.standby = undefined;
      sb.region.dispose();
    });
    this.standby = sb;
  }

  private dropStandby(): Promise<unknown> {
    const sb = this.standby;
    this.standby = undefined;
    if (!sb) return Promise.resolve();
    const gone = sb.host.terminate();
    sb.region.dispose();
    return gone;
  }

  /** Kind-specific facts for /status (a process guest's pid, cores, priority, huge pages). */
  protected guestInfo(): Record<string, unknown> {
    return { kind: 'thread', idle: this.cfg.idle };
  }

  private launch(): Promise<{ host: string; port: number }> {
    const cfg = this.cfg;
    this.restarter.started();
    // A warm standby when there is a live one; else a fresh region and host.
    const sb = this.standby;
    this.standby = undefined;
    let guestRegion: GuestRegion;
    let worker: GuestHost;
    if (sb && !sb.dead) {
      guestRegion = sb.region;
      worker = sb.host;
    } else {
      guestRegion = this.makeRegion();
      try {
        worker = this.spawnHost(guestRegion);
      } catch (err) {
        guestRegion.dispose();
        throw err;
      }
    }
    const region = guestRegion.region;
    const device = new VirtioBlkDevice({
      region,
      backend: this.volume,
      name: cfg.name,
      onBroken: (reason) => {
        this.lastError = `queue broken: ${reason}`;
        this.log(`guest ${cfg.name}: misbehaving driver, queue stopped: ${reason}; restarting the guest`);
        void this.worker?.terminate();
      },
    });
    this.device = device;
    this.poller.add(device, cfg.notify);
    const data: GuestBootData = {
      name: cfg.name,
      functionName: cfg.function,
      notify: cfg.notify,
      spinBudgetUs: this.spinBudgetUs,
      idlePoll: cfg.idle === 'poll',
      // Buffers live outside the V8 heap, so resourceLimits alone do not bound them: the guest checks itself.
      bufferLimitBytes: cfg.heapMiB * 2 ** 20,
      // A restarted guest comes back on the port its clients know.
      listen: this.address ?? cfg.listen,
      options: cfg.options,
    };
    this.worker = worker;

    return new Promise((resolve, reject) => {
      let ready = false;
      worker.on('message', (m: FromGuest) => {
        switch (m.type) {
          case 'ready':
            ready = true;
            this.everReady = true;
            this.address = m.address;
            this.state = 'running';
            resolve(m.address);
            // Off the restart's critical path: making a region (populated, locked) and spawning cost the controller's thread time.
            setTimeout(() => this.prepareStandby(), STANDBY_DELAY_MS).unref();
            break;
          case 'log':
            this.log(`guest ${cfg.name}: ${m.msg}`);
            break;
          case 'stats':
            this.statsRequests.answer(m.id, m.stats);
            break;
          case 'fatal':
            this.lastError = m.error;
            break;
          case 'stopped':
          case 'prepared':
            break;
        }
      });
      worker.on('error', (err) => {
        // An uncaught exception or OOM inside the guest: contained here.
        this.lastError = err.stack ?? String(err);
      });
      let exitDone!: () => void;
      this.exited = new Promise((r) => (exitDone = r));
      worker.once('exit', (code: number) => {
        void this.onExit(device, code, ready).finally(() => {
          guestRegion.dispose();
          exitDone();
        });
        if (!ready) reject(startFailed(`guest ${cfg.name} failed to start: ${this.lastError ?? `exit code ${code}`}`));
      });
      worker.postMessage({ type: 'boot', data });
    });
  }

  private async onExit(device: VirtioBlkDevice, code: number, wasReady: boolean): Promise<void> {
    this.worker = undefined;
    this.poller.remove(device);
    await device.drain(); // finish what the device took before the volume changes hands
    this.statsRequests.cancelAll();
    if (this.state === 'stopping') {
      this.state = 'stopped';
      return;
    }
    const why = this.lastError?.split('\n')[0] ?? `exit code ${code}`;
    this.state = 'crashed';
    this.log(`guest ${this.cfg.name}: stopped unexpectedly (${why})`);
    // A guest that never came up is a deployment failure (reported by start()), not a crash loop.
    // Once it has run, it is never given up on: a restart that fails is retried with more back-off.
    if (!wasReady && !this.everReady) return;
    this.scheduleRestart();
  }

  private scheduleRestart(): void {
    const plan = this.restarter.next(true);
    if (plan === null) {
      this.log(`guest ${this.cfg.name}: not restarting (policy '${this.cfg.restart}')`);
      return;
    }
    this.state = 'restarting';
    this.log(`guest ${this.cfg.name}: restarting in ${plan.delayMs} ms (crash ${plan.consecutive} in a row)`);
    this.restartTimer = setTimeout(() => {
      this.restarts++;
      let launched: Promise<{ host: string; port: number }>;
      try {
        launched = this.launch();
      } catch (err) {
        // Nothing started, so no exit will follow: schedule the next attempt here.
        this.lastError = (err as Error).message;
        this.state = 'crashed';
        this.scheduleRestart();
        return;
      }
      launched.then(
        (a) => this.log(`guest ${this.cfg.name}: restarted on ${a.host}:${a.port}`),
        (err) => this.log(`guest ${this.cfg.name}: restart failed: ${(err as Error).message}`),
      );
    }, plan.delayMs);
  }

  async stop(): Promise<void> {
    clearTimeout(this.restartTimer);
    this.restarter.cancel();
    await this.dropStandby();
    const worker = this.worker;
    if (!worker) {
      this.state = 'stopped';
      return;
    }
    this.state = 'stopping';
    worker.postMessage({ type: 'stop' } satisfies ToGuest);
    const timer = setTimeout(() => void worker.terminate(), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
  }

  /** Kill the guest as a crash would (for tests and `storvisor guest kill`). */
  async kill(): Promise<void> {
    this.lastError = 'killed';
    await this.worker?.terminate();
  }

  /** Resolves after the current worker has exited and its in-flight requests are drained. */
  whenExited(): Promise<void> {
    return this.exited;
  }

  async status(): Promise<DeploymentStatus> {
    const stats: Record<string, number> = {};
    const worker = this.worker;
    if (worker && this.state === 'running') {
      const fromGuest = await this.statsRequests.request((id) => worker.postMessage({ type: 'stats', id } satisfies ToGuest));
      Object.assign(stats, fromGuest);
    }
    const q = this.device?.stats();
    if (q) {
      for (const [k, v] of Object.entries(q)) if (typeof v === 'number') stats[`queue_${k}`] = v;
    }
    return {
      name: this.cfg.name,
      function: this.cfg.function,
      volume: this.cfg.volume,
      deploy: 'guest',
      notify: this.cfg.notify,
      state: this.state,
      address: this.address,
      restarts: this.restarts,
      lastError: this.lastError,
      nextRestart: restartStatus(this.restarter),
      guest: { ...this.guestInfo(), standby: this.standby ? (this.standby.warm ? 'warm' : 'starting') : this.useStandby ? 'none' : 'off' },
      stats,
      latency: q ? { buckets: q.latencyUs, count: q.latencyCount, sumUs: q.latencySumUs } : undefined,
    };
  }
}
