import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { formatCpuList, pinProcess, prioritise, readSched, withAffinity, type SchedReadback } from '../../native/sched.ts';
import { createControllerRegion, type ControllerRegion } from './process-region.ts';
import { ThreadGuest, type GuestHost, type GuestRegion } from './thread-guest.ts';
import { LineChannel } from './line-channel.ts';
import { guestEntry } from './entry.ts';
import type { FromGuest, ToGuest } from './messages.ts';
import { guestViolation } from '../../util/errors.ts';
import { writebackFor } from '../../queue/blk-device.ts';

/**
 * A process guest: the function runs in its own OS process (its own address
 * space and V8 heap), reaching the controller through the same virtqueue in a
 * region both map (a sealed memfd; huge pages when asked and free), with
 * eventfd doorbells. Born on its static cores (the spawning thread is pinned
 * to them for the fork, so no thread of the guest ever ran elsewhere), given
 * its priority, and restarted like a thread guest (ThreadGuest holds the
 * lifecycle: drain on exit, fresh region per start, restart policy).
 *
 * Nothing from the child is trusted: its ring is validated by the device, its
 * region cannot be truncated under us (sealed), its messages are bounded lines
 * of JSON whose shape is checked; a violation kills it (and the restart
 * policy brings it back).
 */
const MAX_MESSAGE_BYTES = 256 * 1024;
const MAX_LOG_CHARS = 2000;

export class ProcessGuest extends ThreadGuest {
  /** Per host (the running guest and its standby): what was spawned and applied. */
  private readonly spawned = new WeakMap<GuestHost, { region: ControllerRegion; pid: number; applied: string[]; refused: string[] }>();
  private lastHuge: { huge: boolean; why: string } | undefined;

  protected override makeRegion(): GuestRegion {
    const cfg = this.cfg;
    const region = createControllerRegion(
      cfg.name,
      { queueSize: cfg.queueSize, dataBytes: cfg.memory, mode: cfg.notify, capacityBytes: this.volume.size, writeback: writebackFor(this.volume) },
      { hugepages: cfg.hugepages ?? false, lock: true },
    );
    if (cfg.hugepages && !region.huge && this.lastHuge?.why !== region.hugeWhy) {
      this.log(`guest ${cfg.name}: huge pages asked for but not used, falling back to normal pages: ${region.hugeWhy}`);
    }
    this.lastHuge = { huge: region.huge, why: region.hugeWhy };
    return Object.assign(region, { dispose: () => region.close() });
  }

  protected override spawnHost(guestRegion: GuestRegion): GuestHost {
    const region = guestRegion as unknown as ControllerRegion & GuestRegion;
    const cfg = this.cfg;
    const entry = guestEntry('process', cfg.function);
    const args = [
      ...entry.execArgv,
      `--max-old-space-size=${cfg.heapMiB}`,
      `--max-semi-space-size=${Math.max(1, Math.min(32, Math.floor(cfg.heapMiB / 16)))}`,
      entry.file,
    ];
    const child = withAffinity(cfg.cores, () =>
      spawn(process.execPath, args, {
        stdio: ['ignore', 'ignore', 'inherit', 'pipe', region.fds.region, region.fds.kick, region.fds.call],
        // A guest's own libuv pool: small (its disk I/O goes through the queue, not the pool).
        env: { ...process.env, STORVISOR_GUEST: cfg.name, UV_THREADPOOL_SIZE: '4' },
      }),
    );
    region.closeFds();
    const applied: string[] = [];
    const refused: string[] = [];
    if (cfg.cores) applied.push(`cores ${formatCpuList(cfg.cores)}`);
    const host = new ProcessHost(child, (why) => {
      this.log(`guest ${cfg.name}: killed: ${why}`);
    });
    this.spawned.set(host, { region, pid: child.pid ?? -1, applied, refused });
    if (child.pid !== undefined) {
      if (cfg.priority) {
        const r = prioritise(child.pid, cfg.priority);
        const what = 'nice' in cfg.priority ? `nice ${cfg.priority.nice}` : `${cfg.priority.policy} ${cfg.priority.rtPriority}`;
        if (r) {
          refused.push(`${what}: ${r}`);
          this.log(`guest ${cfg.name}: priority ${what} not applied: ${r}`);
        } else applied.push(what);
      }
      // Threads started by the child before this point inherited its priority from birth only if it had one: apply again once it is up.
      host.once('message', () => {
        if (cfg.cores) pinProcess(child.pid!, cfg.cores);
        if (cfg.priority) prioritise(child.pid!, cfg.priority);
      });
    }
    host.postMessage({ type: 'prepare', functionName: cfg.function, regionBytes: region.regionBytes });
    return host;
  }

  protected override guestInfo(): Record<string, unknown> {
    const cfg = this.cfg;
    const cur = this.worker ? this.spawned.get(this.worker) : undefined;
    let readback: SchedReadback | null = null;
    if (cur && this.worker && cur.pid > 0) readback = readSched(cur.pid);
    return {
      kind: 'process',
      idle: cfg.idle,
      pid: this.worker ? (cur?.pid ?? null) : null,
      cores: cfg.cores ? formatCpuList(cfg.cores) : null,
      affinity: readback?.affinity ?? null,
      threads: readback?.threads ?? null,
      nice: readback?.nice ?? null,
      policy: readback?.policy ?? null,
      rtPriority: readback?.rtPriority ?? null,
      priorityApplied: cur?.applied ?? [],
      priorityRefused: cur?.refused ?? [],
      hugepages: this.lastHuge?.huge ?? false,
      hugepagesWhyNot: cfg.hugepages && this.lastHuge && !this.lastHuge.huge ? this.lastHuge.why : null,
      memoryLocked: cur?.region.locked ?? false,
    };
  }

  /** The guest's pid while it runs (tests, `storvisor status`). */
  pid(): number | null {
    return (this.worker && this.spawned.get(this.worker)?.pid) || null;
  }
}

const isFromGuest = (m: Record<string, unknown>): m is FromGuest & Record<string, unknown> => {
  switch (m.type) {
    case 'ready': {
      const a = m.address as { host?: unknown; port?: unknown } | null;
      return typeof a === 'object' && a !== null && typeof a.host === 'string' && Number.isInteger(a.port);
    }
    case 'log':
      return typeof m.msg === 'string';
    case 'stats':
      return Number.isInteger(m.id) && typeof m.stats === 'object' && m.stats !== null && Object.values(m.stats).every((v) => typeof v === 'number');
    case 'fatal':
      return typeof m.error === 'string';
    case 'stopped':
    case 'prepared':
      return true;
    default:
      return false;
  }
};

/** A child process dressed as the worker ThreadGuest expects (postMessage, terminate, message/error/exit). */
class ProcessHost extends EventEmitter implements GuestHost {
  private readonly channel: LineChannel;
  private readonly exited: Promise<void>;

  constructor(
    private readonly child: ChildProcess,
    private readonly onViolation: (why: string) => void,
  ) {
    super();
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.channel.destroy();
        resolve();
        this.emit('exit', code ?? (signal ? 128 + signalNumber(signal) : 1));
      });
    });
    child.once('error', (err) => this.emit('error', err));
    this.channel = new LineChannel(
      child.stdio[3] as Socket,
      MAX_MESSAGE_BYTES,
      (m) => {
        if (!isFromGuest(m)) return this.violation(`a malformed message (type ${JSON.stringify(String(m.type)).slice(0, 40)})`);
        if (m.type === 'log' || m.type === 'fatal') {
          const key = m.type === 'log' ? 'msg' : 'error';
          const text = (m as Record<string, string>)[key]!;
          if (text.length > MAX_LOG_CHARS) (m as Record<string, string>)[key] = `${text.slice(0, MAX_LOG_CHARS)}…`;
        }
        this.emit('message', m);
      },
      (why) => this.violation(why),
    );
  }

  private violation(why: string): void {
    this.onViolation(`it sent ${why}`);
    this.emit('error', guestViolation(`guest process sent ${why}`));
    this.child.kill('SIGKILL');
  }

  postMessage(m: ToGuest): void {
    this.channel.send(m);
  }

  /** kill -9: a process guest's terminate is a crash from outside. */
  terminate(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    return this.exited;
  }
}

function signalNumber(signal: NodeJS.Signals): number {
  return signal === 'SIGKILL' ? 9 : signal === 'SIGTERM' ? 15 : signal === 'SIGSEGV' ? 11 : signal === 'SIGABRT' ? 6 : 1;
}

