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

export interface GuestWorkerData extends GuestBootData {
  region: SharedArrayBuffer;
}

export interface ProcessBootData extends GuestBootData {
  /** The region's size; its memory arrives as fd 4 (kick eventfd 5, call eventfd 6). */
  regionBytes: number;
}

/** Controller → process guest, the first line on its channel. */
export type ToProcessGuest = ToGuest | { type: 'boot'; data: ProcessBootData };

export type ToGuest = { type: 'stop' } | { type: 'stats'; id: number };

export type FromGuest =
  | { type: 'ready'; address: { host: string; port: number } }
  | { type: 'log'; msg: string }
  | { type: 'stats'; id: number; stats: Record<string, number> }
  | { type: 'stopped' }
  | { type: 'fatal'; error: string };
