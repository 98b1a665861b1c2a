import type { DeployKind, NotifyMode } from '../config/config.ts';

/**
 * One running instance of a function, however it is deployed. The controller
 * starts, stops and reports on all of them the same way.
 */
export type DeploymentState = 'starting' | 'running' | 'restarting' | 'crashed' | 'stopping' | 'stopped';

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
  /** Flat numeric counters: function stats, queue stats (guest), client stats (gateway). */
  stats: Record<string, number>;
}

export interface Deployment {
  readonly name: string;
  start(): Promise<{ host: string; port: number }>;
  stop(): Promise<void>;
  status(): Promise<DeploymentStatus>;
}
