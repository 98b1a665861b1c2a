/**
 * The "node floor" of the database bench (issue #10): the least a RESP server
 * on this runtime and socket path can do per command. It runs in the same
 * process model as the integrated database (this process, one event loop),
 * on the same TcpService (limits, backpressure, cork per tick), with the same
 * RespParser and ReplyWriter, and answers SET with +OK and GET with a fixed
 * bulk as long as the last SET's value (so 100 B and 4 KiB cases get replies
 * of their size) — no keyspace, no log, no copies of values.
 *
 * The group commit and nothing else. SET replies (and the replies behind
 * them on that connection) wait for a batch: one block-aligned pwrite as large
 * as the batch's values would be, from one zeroed buffer, with FUA (an
 * fdatasync on a FileBlockDevice) in `always` and without in `everysec`;
 * everything that arrives while a batch is in flight joins the next one, which
 * also gathers the writers the last batch released, as the log does
 * (CommitGather). Its rate is the ceiling for SET.
 *
 * Whatever a database does beyond this costs time this floor does not spend;
 * its rate is the ceiling of any database on this runtime and socket path.
 *
 * The "map floor" (`keyspace`) adds only a keyspace as a plain JS program keeps
 * one: a Map from the key as a string to the value's bytes, SET storing a copy
 * (overwriting in place when the length is the same, as the database does) and
 * GET replying with the stored bytes. Its rate is the ceiling of any database
 * that keeps its keys in a V8 Map: what the keyspace lookup itself costs.
 */
import type { BlockDevice } from '../../src/block/types.ts';
import { TcpService, type ConnectionHandler, type TcpConnection } from '../../src/net/tcp-service.ts';
import { RespParser } from '../../src/functions/database/resp/parser.ts';
import { ErrorReply, OK, PONG, ReplyWriter, markTransient, type Reply, type Slab } from '../../src/functions/database/resp/writer.ts';
import { READ_BUFFER_BYTES, respLimits, QUERY_BUFFER_LIMIT } from '../../src/functions/database/server.ts';
import { CommitGather, GATHER_MS } from '../../src/functions/database/log/writer.ts';
import { keyString } from '../../src/functions/database/store/keyspace.ts';

/** Bulk replies by length (one per size the bench uses). */
const bulks = new Map<number, Buffer>();
function bulkOf(n: number): Buffer {
  let b = bulks.get(n);
  if (b === undefined) bulks.set(n, (b = Buffer.alloc(n, 0x78)));
  return b;
}

/** What the log writes per SET beyond the value (record header, key, op): a round figure. */
const RECORD_OVERHEAD = 48;

const EMPTY_ARRAY: Reply[] = [];

/** The map floor's SET: a copy of the value (the read buffer is reused), in place when the length is the same. */
function store(map: Map<string, Buffer>, key: Buffer, value: Buffer): void {
  const k = keyString(key);
  const old = map.get(k);
  if (old !== undefined && old.length === value.length) old.set(value);
  else map.set(k, Buffer.from(value));
}

class FloorConnection implements ConnectionHandler {
  private readonly parser: RespParser;
  private readonly w = new ReplyWriter();
  /** Replies behind a SET waiting for its batch. */
  private readonly held = new ReplyWriter();
  private heldBatch = 0;
  private heldBytes = 0;
  private heldCount = 0;
  private readonly out: Buffer[] = [];
  private readonly owners: (Slab | null)[] = [];

  constructor(
    private readonly conn: TcpConnection,
    private readonly srv: FloorServer,
  ) {
    this.parser = new RespParser(
      { onCommand: (args) => this.onCommand(args), onError: () => this.conn.destroy() },
      { maxRequestBytes: QUERY_BUFFER_LIMIT, transient: conn.transientReads },
    );
  }

  data(chunk: Buffer): void {
    this.parser.feed(chunk);
    this.flush();
    this.conn.setBuffered(this.parser.bufferedBytes, this.parser.midRequest);
  }

  resume(): void {
    if (this.parser.paused) this.parser.resume();
    this.flush();
    this.conn.setBuffered(this.parser.bufferedBytes, this.parser.midRequest);
  }

  closed(): void {
    this.srv.waiting.delete(this);
  }

  private onCommand(args: Buffer[]): boolean {
    const name = args[0]!;
    let reply: Reply;
    let wrote = false;
    if (name.length === 3 && (name[0]! | 0x20) === 0x73 && args.length >= 3) {
      // SET key value
      this.srv.lastSize = args[2]!.length;
      if (this.srv.map !== null) store(this.srv.map, args[1]!, args[2]!);
      reply = OK;
      if (this.srv.device !== null) {
        // Both modes answer once the batch is written, as the log does (everysec without FUA).
        this.srv.batchBytes += args[1]!.length + args[2]!.length + RECORD_OVERHEAD;
        this.srv.batchCount++;
        wrote = true;
      }
    } else if (name.length === 3 && (name[0]! | 0x20) === 0x67) {
      reply = this.srv.map !== null ? (this.srv.map.get(keyString(args[1]!)) ?? null) : bulkOf(this.srv.lastSize);
    } else if (name.length === 4 && (name[0]! | 0x20) === 0x70) {
      reply = PONG;
    } else if (name.length === 6 && (name[0]! | 0x20) === 0x63) {
      reply = EMPTY_ARRAY; // CONFIG GET (redis-benchmark asks for save and appendonly)
    } else {
      reply = new ErrorReply('ERR the floor server answers SET, GET, PING and CONFIG only');
    }
    if (!wrote && this.heldCount === 0) {
      this.w.write(reply);
      this.conn.count();
    } else {
      const before = this.held.pendingBytes;
      this.held.write(reply);
      const size = this.held.pendingBytes - before;
      this.heldBytes += size;
      this.heldCount++;
      this.heldBatch = this.srv.batch;
      this.conn.begin(size);
      this.srv.waiting.add(this);
      this.srv.commitSoon();
    }
    return this.conn.canAccept();
  }

  /** Batch `batch` is durable: release what waited for it (or for an earlier one). */
  released(batch: number): void {
    if (this.heldCount === 0 || this.heldBatch > batch) return;
    const out = this.out;
    const owners = this.owners;
    this.held.take(out, owners);
    for (let i = 0; i < out.length; i++) this.w.append(out[i], owners[i]);
    out.length = 0;
    owners.length = 0;
    const size = this.heldBytes;
    const n = this.heldCount;
    this.heldBytes = 0;
    this.heldCount = 0;
    this.srv.waiting.delete(this);
    this.flush();
    this.conn.end(size, n);
  }

  /** As the database: each slab piece's write callback returns its slab to the pool. */
  private readonly sendPiece = (bytes: Buffer, owner: Slab | null, alone: boolean): void => {
    if (this.conn.sendable) this.conn.send(bytes, owner?.done, alone);
    else owner?.release();
  };

  private flush(): void {
    if (this.w.pendingBytes === 0) return;
    this.w.drain(this.sendPiece);
  }
}

export interface FloorServer {
  readonly device: BlockDevice | null;
  /** The map floor's keyspace; null for the plain floor. */
  readonly map: Map<string, Buffer> | null;
  readonly always: boolean;
  lastSize: number;
  /** The batch SETs join now; bytes its records would take. */
  batch: number;
  batchBytes: number;
  /** SETs in the batch. */
  batchCount: number;
  readonly waiting: Set<FloorConnection>;
  /** A batch may be due: commit it on the next turn (`now`: at once, as the log does after a write). */
  commitSoon(now?: boolean): void;
}

export interface RunningFloor {
  port: number;
  /** Group-commit writes. */
  batches(): number;
  stop(): Promise<void>;
}

/**
 * Start the floor server on 127.0.0.1 port 0. With a device it writes SET
 * batches (pwrite, no data set) and answers SET only once the group-commit
 * write holding it is done (with FUA when `always`, as `everysec` without).
 * `keyspace`: the map floor (SET stores in a Map, GET reads from it).
 */
export async function startFloor(device: BlockDevice | null, always = true, keyspace = false): Promise<RunningFloor> {
  let writing = false;
  let scheduled = false;
  let batches = 0;
  let stopped = false;
  let zero = Buffer.alloc(0);
  const bs = device?.blockSize ?? 4096;
  const region = device === null ? 0 : Math.min(device.size, 256 << 20);
  let offset = 0;
  const srv: FloorServer = {
    device,
    map: keyspace ? new Map() : null,
    always,
    lastSize: 3,
    batch: 1,
    batchBytes: 0,
    batchCount: 0,
    waiting: new Set(),
    commitSoon(now = false) {
      if (writing || scheduled || srv.batchCount === 0) return;
      if (gather.holding(srv.batchCount, srv.batchBytes)) return;
      if (now) return commit();
      // As the log writer: the batch starts on the next turn, so commands read from every socket in this one join it.
      scheduled = true;
      setImmediate(commit);
    },
  };
  const gather = new CommitGather(GATHER_MS, () => srv.batchCount, () => srv.commitSoon());
  const commit = (): void => {
    scheduled = false;
    if (writing || stopped || srv.batchBytes === 0 || device === null) return;
    writing = true;
    const batch = srv.batch++;
    const bytes = Math.max(bs, Math.ceil(srv.batchBytes / bs) * bs);
    const released = srv.batchCount;
    srv.batchBytes = 0;
    srv.batchCount = 0;
    if (zero.length < bytes) zero = Buffer.alloc(bytes);
    if (offset + bytes > region) offset = 0;
    const at = offset;
    offset += bytes;
    const t0 = performance.now();
    device.pwrite(zero.subarray(0, bytes), at, { fua: always && !device.writeThrough }).then(
      () => {
        writing = false;
        batches++;
        for (const c of [...srv.waiting]) c.released(batch);
        gather.begin(srv.batchCount, released, performance.now() - t0);
        srv.commitSoon(true);
      },
      (err: Error) => {
        writing = false;
        throw err;
      },
    );
  };
  // One read buffer for every client, as the database's server reads (no ArrayBuffer per read).
  const readBuffer = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
  markTransient(readBuffer);
  const service = new TcpService({
    name: 'resp-floor',
    uncork: 'tick',
    readBuffer,
    limits: respLimits(),
    handler: (conn) => new FloorConnection(conn, srv),
  });
  const { port } = await service.listen('127.0.0.1', 0);
  return {
    port,
    batches: () => batches,
    async stop() {
      await service.stop();
      stopped = true;
      gather.stop();
    },
  };
}
