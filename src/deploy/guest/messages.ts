import type { NotifyMode } from '../../config/config.ts';

/** What the controller hands a guest at birth (a process guest gets its region as fds). */
export interface GuestBootData {
  name: string;
  functionName: string;
  notify: NotifyMode;
  spinBudgetUs: number;
  idlePoll: boolean;
  /** Most bytes of Buffers/ArrayBuffers the guest may hold (they live outside the V8 heap limit). */
  bufferLimitBytes: number;
  listen: { host: string; port: number };
  options: Record<string, unknown>;
}

/** A thread guest's workerData: its region, and its function (loaded ahead, so a standby starts at once). */
export interface GuestWorkerData {
  region: SharedArrayBuffer;
  functionName: string;
}

/**
 * Controller → guest. A guest is spawned first (`prepare` for a process: it
 * maps its region and loads its function's code), then `boot`ed: a warm
 * standby waits between the two until a crashed guest needs replacing.
 */
export type ToGuest =
  | { type: 'prepare'; functionName: string; regionBytes: number }
  | { type: 'boot'; data: GuestBootData }
  | { type: 'stop' }
  | { type: 'stats'; id: number };

export type FromGuest =
  /** Spawned and its function's code loaded: ready to boot. */
  | { type: 'prepared' }
  | { type: 'ready'; address: { host: string; port: number } }
  | { type: 'log'; msg: string }
  | { type: 'stats'; id: number; stats: Record<string, number> }
  | { type: 'stopped' }
  | { type: 'fatal'; error: string };
