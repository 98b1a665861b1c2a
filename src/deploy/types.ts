import type { DeployKind, NotifyMode } from '../config/config.ts';

/**
 * One running instance of a function, however it is deployed. The controller
 * starts, stops and reports on all of them the same way.
 */
/** `failed`: it could not be started at all (reason in lastError); the controller serves the others. */
export type DeploymentState = 'starting' | 'running' | 'restarting' | 'crashed' | 'failed' | 'stopping' | 'stopped';

export interface DeploymentStatus {
  name: string;
  function: string;
  volume: string;
  deploy: DeployKind;
  notify?: NotifyMode;
  state: DeploymentState;
  address: { host: string; port: number } | null;
  restarts: number;
  lastError: string | null;
  /** While `restarting`: when the next start is due and how many crashes in a row led to it. */
  nextRestart?: { at: string; inMs: number; consecutiveCrashes: number } | null;
  /** Guests: what really runs it (kind, idle mode; a process guest's pid, affinity and priority read back from /proc, huge pages). */
  guest?: Record<string, unknown>;
  /** Flat numeric counters: function stats, queue stats (guest), client stats (gateway). */
  stats: Record<string, number>;
  /** Guest only: the queue's request latency histogram (power-of-two µs buckets, see util/histogram.ts). */
  latency?: { buckets: number[]; count: number; sumUs: number };
}

export interface Deployment {
  readonly name: string;
  start(): Promise<{ host: string; port: number }>;
  stop(): Promise<void>;
  status(): Promise<DeploymentStatus>;
}
