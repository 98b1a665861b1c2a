import { CONNECTION_LIMIT_KEYS, limitsOf, parseConnectionLimits } from '../../net/limits.ts';
import type { ConnectionLimitOptions, FunctionContext, RunningFunction, StorageFunction } from '../types.ts';
import { Database } from './database.ts';
import { BULK_MAX_DEFAULT } from './resp/parser.ts';
import { RespServer } from './server.ts';
import { invalidArgument } from '../../util/errors.ts';

export interface DatabaseFunctionOptions extends ConnectionLimitOptions {
  /** `always`: reply only after the write is durable (group commit). `everysec`: flush once a second. */
  appendfsync: 'always' | 'everysec';
  /** Largest accepted bulk string (Redis proto-max-bulk-len), at most 512 MB. */
  maxBulkLength: number;
}

/** The active expirer's period while some key has a TTL (it sleeps while none has: lazy expiry still runs on access). */
const ACTIVE_EXPIRE_MS = 100;
const ACTIVE_EXPIRE_BUDGET = 20;

function parseOptions(raw: Record<string, unknown>): DatabaseFunctionOptions {
  const appendfsync = raw.appendfsync ?? 'always';
  if (appendfsync !== 'always' && appendfsync !== 'everysec') {
    throw invalidArgument(`database option appendfsync must be 'always' or 'everysec', got ${JSON.stringify(appendfsync)}`);
  }
  const maxBulkLength = raw.maxBulkLength ?? BULK_MAX_DEFAULT;
  if (typeof maxBulkLength !== 'number' || !Number.isInteger(maxBulkLength) || maxBulkLength < 1 || maxBulkLength > BULK_MAX_DEFAULT) {
    throw invalidArgument(`database option maxBulkLength must be an integer in [1, ${BULK_MAX_DEFAULT}]`);
  }
  for (const k of Object.keys(raw)) {
    if (k !== 'appendfsync' && k !== 'maxBulkLength' && !(CONNECTION_LIMIT_KEYS as readonly string[]).includes(k)) {
      throw invalidArgument(`database option ${k} is unknown`);
    }
  }
  return { appendfsync, maxBulkLength, ...parseConnectionLimits(raw, 'database') };
}

async function start(ctx: FunctionContext<DatabaseFunctionOptions>): Promise<RunningFunction> {
  const options = parseOptions(ctx.options as unknown as Record<string, unknown>);
  let server: RespServer | null = null;
  const db = await Database.open(ctx.device, {
    appendfsync: options.appendfsync,
    log: ctx.log,
    onDurable: (seq) => server?.durable(seq),
    onFailure: (err) => server?.durable(db.writer.durableSeq, err),
    onRoom: () => server?.roomFreed(),
  });
  ctx.log(
    db.recovered.formatted
      ? `database: formatted a new log on the volume`
      : `database: recovered ${db.recovered.replayed} records, ${db.ks.size} keys`,
  );
  server = new RespServer(db, {
    db,
    appendfsync: options.appendfsync,
    maxBulkLength: options.maxBulkLength,
    limits: limitsOf(options),
    log: ctx.log,
  });
  const address = await server.listen(ctx.listen.host, ctx.listen.port);
  // The active expirer runs only while some key has a TTL: an idle database with none wakes no one.
  let expirer: NodeJS.Timeout | null = null;
  let stopped = false;
  const expireTick = () => {
    db.ks.expireSome(ACTIVE_EXPIRE_BUDGET);
    if (db.ks.volatileCount === 0 && expirer !== null) {
      clearInterval(expirer);
      expirer = null;
    }
  };
  const armExpirer = () => {
    if (expirer !== null || stopped) return;
    expirer = setInterval(expireTick, ACTIVE_EXPIRE_MS);
    expirer.unref();
  };
  db.ks.onVolatile = armExpirer;
  if (db.ks.volatileCount > 0) armExpirer();
  const srv = server;
  return {
    address,
    async stop() {
      stopped = true;
      if (expirer !== null) clearInterval(expirer);
      expirer = null;
      await srv.close();
      await db.close();
    },
    stats() {
      const w = db.writer.counters;
      return {
        ...srv.netStats(),
        keys: db.ks.size,
        connections: srv.counters.connections,
        commands: srv.counters.commands,
        protocolErrors: srv.counters.protocolErrors,
        logBatches: w.batches,
        logRecords: w.records,
        logBytesWritten: w.bytesWritten,
        logUsedBytes: db.writer.usedBytes,
        logRegionBytes: db.writer.regionSize,
        logCompactions: w.compactions,
        logFlushes: w.flushes,
        logGathers: db.writer.gatherCounters.gathers,
        logGatherTimeouts: db.writer.gatherCounters.timeouts,
        logGatherSlow: db.writer.gatherCounters.slow,
        logFailed: db.writer.failed ? 1 : 0,
        activeExpireRunning: expirer !== null ? 1 : 0,
      };
    },
  };
}

const database: StorageFunction<DatabaseFunctionOptions> = {
  name: 'database',
  apiVersion: 1,
  description: 'A Redis-protocol (RESP2) key-value store whose log lives on the volume',
  parseOptions,
  start,
  clientUrl: (a) => `redis://${a.host}:${a.port}`,
};

export default database;
