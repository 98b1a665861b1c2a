import type { NotifyMode } from '../../config/config.ts';

/** What the controller hands a guest worker at birth. */
export interface GuestWorkerData {
  name: string;
  functionName: string;
  region: SharedArrayBuffer;
  notify: NotifyMode;
  spinBudgetUs: number;
  idlePoll: boolean;
  /** Most bytes of Buffers/ArrayBuffers the guest may hold (they live outside the V8 heap limit). */
  bufferLimitBytes: number;
  listen: { host: string; port: number };
  options: Record<string, unknown>;
}

export type ToGuest = { type: 'stop' } | { type: 'stats'; id: number };

export type FromGuest =
  | { type: 'ready'; address: { host: string; port: number } }
  | { type: 'log'; msg: string }
  | { type: 'stats'; id: number; stats: Record<string, number> }
  | { type: 'stopped' }
  | { type: 'fatal'; error: string };
