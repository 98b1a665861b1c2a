import { globMatch } from '../store/glob.ts';
import { ErrorReply, OK, PONG, SimpleString, type Reply } from '../resp/writer.ts';
import { bufOf, lower, parseInt64 } from './args.ts';
import { unsubscribe } from './pubsub.ts';
import { resetTransaction, unwatchAll } from './transactions.ts';
import { NOT_INTEGER, arityError, cmd, type CommandContext, type CommandSpec } from './types.ts';

const PONG_LOWER = Buffer.from('pong');
const EMPTY = Buffer.alloc(0);

function ping(ctx: CommandContext, a: Buffer[]): Reply {
  if (a.length > 2) return arityError('ping');
  // RESP2 subscribed mode answers a push-style pair.
  if (ctx.client.pubsub.channels.size > 0 || ctx.client.pubsub.patterns.size > 0) return [PONG_LOWER, a.length === 2 ? a[1] : EMPTY];
  return a.length === 2 ? a[1] : PONG;
}

function select(_ctx: CommandContext, a: Buffer[]): Reply {
  const index = parseInt64(a[1]);
  if (index === null) return NOT_INTEGER;
  // One data set per volume: only database 0 exists.
  return index === 0n ? OK : new ErrorReply('ERR DB index is out of range');
}

function info(ctx: CommandContext, a: Buffer[]): Reply {
  const { server, db } = ctx;
  const stats = server.stats();
  let keysWithExpiry = 0;
  for (const [, e] of db.ks.entries()) if (e.expireAt !== 0) keysWithExpiry++;
  const sections: Record<string, [string, string | number][]> = {
    server: [
      ['redis_version', '7.0.0'],
      ['storvisor_function', 'database'],
      ['redis_mode', 'standalone'],
      ['process_id', process.pid],
      ['tcp_port', server.port],
      ['uptime_in_seconds', Math.floor((Date.now() - server.startedAt) / 1000)],
    ],
    clients: [
      ['connected_clients', server.connectedClients()],
      ['blocked_clients', server.blockedClients()],
    ],
    persistence: [
      ['loading', 0],
      ['aof_enabled', 1],
      ['appendfsync', server.appendfsync],
      ['log_used_bytes', db.writer.usedBytes],
      ['log_region_bytes', db.writer.regionSize],
      ['log_compactions', db.writer.counters.compactions],
      // Redis's names, so one client reads both: rewrites done and one running (or requested).
      ['aof_rewrites', db.writer.counters.compactions],
      ['aof_rewrite_in_progress', db.writer.compacting ? 1 : 0],
      // How long compactions took in all, and the longest synchronous step of any (each stalls every client).
      ['log_compaction_ms_total', db.writer.counters.compactionMs.toFixed(1)],
      ['log_compaction_longest_step_ms', db.writer.counters.compactionLongestStepMs.toFixed(2)],
      ['log_failed', db.writer.failed ? 1 : 0],
    ],
    stats: Object.entries(stats),
    keyspace: db.ks.size > 0 ? [['db0', `keys=${db.ks.size},expires=${keysWithExpiry},avg_ttl=0`]] : [],
  };
  const wanted = a.slice(1).map(lower);
  const all = wanted.length === 0 || wanted.includes('all') || wanted.includes('everything') || wanted.includes('default');
  let text = '';
  for (const [name, fields] of Object.entries(sections)) {
    if (!all && !wanted.includes(name)) continue;
    if (text) text += '\r\n';
    text += `# ${name[0].toUpperCase()}${name.slice(1)}\r\n`;
    for (const [k, v] of fields) text += `${k}:${v}\r\n`;
  }
  return Buffer.from(text, 'latin1');
}

/** The configuration parameters CONFIG GET reports (clients such as redis-benchmark ask for some). */
function configTable(ctx: CommandContext): [string, string][] {
  return [
    ['save', ''],
    ['appendonly', 'yes'],
    ['appendfsync', ctx.server.appendfsync],
    ['databases', '1'],
    ['maxmemory', '0'],
    ['port', String(ctx.server.port)],
    ['proto-max-bulk-len', String(512 * 1024 * 1024)],
  ];
}

function config(ctx: CommandContext, a: Buffer[]): Reply {
  const sub = lower(a[1]);
  if (sub === 'get') {
    if (a.length < 3) return arityError('config|get');
    const out: Reply[] = [];
    for (const [name, value] of configTable(ctx)) {
      if (a.slice(2).some((p) => globMatch(lower(p), name, true))) out.push(Buffer.from(name), Buffer.from(value));
    }
    return out;
  }
  if (sub === 'resetstat') return a.length === 2 ? OK : arityError('config|resetstat');
  if (sub === 'set') return new ErrorReply('ERR CONFIG SET is not supported: the database is configured by storvisor');
  return new ErrorReply(`ERR unknown subcommand '${a[1].toString('latin1')}'. Try CONFIG HELP.`);
}

function command(ctx: CommandContext, a: Buffer[], table: () => Map<string, CommandSpec>): Reply {
  const describe = (c: CommandSpec): Reply => [
    Buffer.from(c.name),
    c.arity,
    c.flags.map((f) => new SimpleString(f)),
    c.firstKey,
    c.lastKey,
    c.step,
  ];
  if (a.length === 1) return [...table().values()].map(describe);
  const sub = lower(a[1]);
  if (sub === 'count') return table().size;
  if (sub === 'docs') return []; // redis-cli asks for hints; none is a valid answer
  if (sub === 'info') return a.slice(2).map((n) => {
    const c = table().get(lower(n));
    return c ? describe(c) : null;
  });
  void ctx;
  return new ErrorReply(`ERR unknown subcommand '${a[1].toString('latin1')}'. Try COMMAND HELP.`);
}

function quit(ctx: CommandContext): Reply {
  ctx.client.closeAfterReply = true;
  return OK;
}

/** Redis allows names of printable ASCII without spaces. */
function validName(b: Buffer): boolean {
  for (const c of b) if (c < 0x21 || c > 0x7e) return false;
  return true;
}

function client(ctx: CommandContext, a: Buffer[]): Reply {
  const sub = lower(a[1]);
  if (sub === 'id') return a.length === 2 ? ctx.client.id : arityError('client|id');
  if (sub === 'getname') {
    if (a.length !== 2) return arityError('client|getname');
    return ctx.client.name === '' ? null : bufOf(ctx.client.name);
  }
  if (sub === 'setname') {
    if (a.length !== 3) return arityError('client|setname');
    if (!validName(a[2])) return new ErrorReply('ERR Client names cannot contain spaces, newlines or special characters.');
    ctx.client.name = a[2].toString('latin1');
    return OK;
  }
  if (sub === 'setinfo') return OK; // newer clients announce their library; nothing to keep
  return new ErrorReply(`ERR unknown subcommand '${a[1].toString('latin1')}'. Try CLIENT HELP.`);
}

/** HELLO: this server speaks RESP2 only, so HELLO 3 is refused as Redis refuses an unknown version. */
function hello(ctx: CommandContext, a: Buffer[]): Reply {
  let i = 1;
  if (a.length >= 2) {
    const v = parseInt64(a[1]);
    if (v === null) return new ErrorReply('ERR Protocol version is not an integer or out of range');
    if (v !== 2n) return new ErrorReply('NOPROTO unsupported protocol version');
    i = 2;
  }
  let name: Buffer | null = null;
  for (; i < a.length; i++) {
    const opt = lower(a[i]);
    if (opt === 'setname' && i + 1 < a.length) {
      name = a[++i];
      if (!validName(name)) return new ErrorReply('ERR Client names cannot contain spaces, newlines or special characters.');
    } else if (opt === 'auth' && i + 2 < a.length) {
      return new ErrorReply('WRONGPASS invalid username-password pair or user is disabled.');
    } else {
      return new ErrorReply(`ERR Syntax error in HELLO option '${a[i].toString('latin1')}'`);
    }
  }
  if (name !== null) ctx.client.name = name.toString('latin1');
  return [
    Buffer.from('server'), Buffer.from('redis'),
    Buffer.from('version'), Buffer.from('7.0.0'),
    Buffer.from('proto'), 2,
    Buffer.from('id'), ctx.client.id,
    Buffer.from('mode'), Buffer.from('standalone'),
    Buffer.from('role'), Buffer.from('master'),
    Buffer.from('modules'), [],
  ];
}

const RESET = new SimpleString('RESET');
const REWRITE_STARTED = new SimpleString('Background append only file rewriting started');

/** BGREWRITEAOF: compact the log now (the writer runs it between batches; a failure fails the log as any write would). */
function bgrewriteaof(ctx: CommandContext): Reply {
  if (ctx.db.writer.compacting) return new ErrorReply('ERR Background append only file rewriting already in progress');
  ctx.db.writer.compactNow().catch(() => {});
  return REWRITE_STARTED;
}

function reset(ctx: CommandContext): Reply {
  resetTransaction(ctx);
  unwatchAll(ctx);
  unsubscribe(ctx, [], false);
  unsubscribe(ctx, [], true);
  ctx.client.name = '';
  return RESET;
}

export function serverCommands(table: () => Map<string, CommandSpec>): CommandSpec[] {
  return [
    cmd('ping', -1, 'fast', [0, 0, 0], ping),
    cmd('echo', 2, 'fast', [0, 0, 0], (_ctx, a) => a[1]),
    cmd('select', 2, 'loading stale fast', [0, 0, 0], select),
    cmd('info', -1, 'loading stale', [0, 0, 0], info),
    cmd('config', -2, 'admin noscript loading stale', [0, 0, 0], config),
    cmd('command', -1, 'loading stale', [0, 0, 0], (ctx, a) => command(ctx, a, table)),
    cmd('quit', -1, 'allow_busy', [0, 0, 0], quit),
    cmd('client', -2, 'admin noscript loading stale', [0, 0, 0], client),
    cmd('hello', -1, 'noscript loading stale fast', [0, 0, 0], hello),
    cmd('reset', 1, 'noscript loading stale fast', [0, 0, 0], reset),
    cmd('bgrewriteaof', 1, 'admin noscript no_async_loading', [0, 0, 0], bgrewriteaof),
  ];
}
