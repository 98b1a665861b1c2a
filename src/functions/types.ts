import type { BlockDevice } from '../block/types.ts';

/**
 * Every network function takes these start options (from the function's
 * config: functions[i].maxConnections / idleTimeoutMs), validated by
 * parseConnectionLimits in src/net/limits.ts.
 */
export type { ConnectionLimitOptions } from '../net/limits.ts';

/**
 * A storage function: one module exporting one descriptor (after nbdkit's
 * `struct nbdkit_plugin`). The same descriptor runs in every deployment:
 * `integrated` (inside the controller, on a controller volume), `guest` (in a
 * worker over the shared-memory queue) and `gateway` (a separate process over
 * NBD). The function never knows which: it only sees a BlockDevice.
 *
 * Fields are only ever appended; `apiVersion` is bumped when one is.
 */
export interface StorageFunction<Options = Record<string, unknown>> {
  readonly name: string;
  readonly apiVersion: 1;
  /** One line for `storvisor functions` and logs. */
  readonly description: string;
  /**
   * The option schema: validate options from config and fill in defaults;
   * throw an SV_ERR_INVALID_ARGUMENT error naming the option. Absent: the raw
   * options are passed on as they are.
   */
  parseOptions?(raw: Record<string, unknown>): Options;
  start(ctx: FunctionContext<Options>): Promise<RunningFunction>;
  /**
   * The NBD export names the running function serves, from its parsed
   * options. A function that exports a block device (and so can provide a
   * virtual volume) returns at least one; the first is the one the controller
   * mounts. Absent: the function exports no block device.
   */
  exportNames?(options: Options): string[];
  /** The URL a real client uses to reach the running function, from its resolved address and parsed options. Absent: tcp://host:port. */
  clientUrl?(address: { host: string; port: number }, options: Options): string;
}

export interface FunctionContext<Options = Record<string, unknown>> {
  /** The block device the function stores its data on. */
  device: BlockDevice;
  /** Where to listen for clients; port 0 picks a free port. */
  listen: { host: string; port: number };
  options: Options;
  /** A name for logs (the guest or deployment name). */
  instance: string;
  log: (msg: string) => void;
}

export interface RunningFunction {
  /** The address clients connect to (resolved port). */
  readonly address: { host: string; port: number };
  /** Stop accepting clients, finish in-flight work, make data durable. */
  stop(): Promise<void>;
  /** Counters for the management API (flat, numeric). */
  stats(): Record<string, number>;
}
