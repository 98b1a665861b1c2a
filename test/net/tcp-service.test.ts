/**
 * The TCP service under a tiny line protocol: "ECHO <n>" answers n bytes,
 * "SLOW" stays in flight until the test releases it, "BOOM" throws in the
 * handler. Each test is one behaviour of the service.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TcpService, type ConnectionHandler, type TcpConnection, type TcpServiceLimits } from '../../src/net/tcp-service.ts';
import { open, waitFor, within } from './helpers.ts';

type T = { after: (fn: () => unknown) => void };

class LineHandler implements ConnectionHandler {
  private pending = '';
  constructor(
    private readonly conn: TcpConnection,
    private readonly env: { executed: number; slow: Array<() => void> },
  ) {}
  data(chunk: Buffer): void {
    this.pending += chunk.toString('latin1');
    this.pump();
  }
  resume(): void {
    this.pump();
  }
  private pump(): void {
    let nl: number;
    while (this.conn.canAccept() && (nl = this.pending.indexOf('\n')) >= 0) {
      const line = this.pending.slice(0, nl);
      this.pending = this.pending.slice(nl + 1);
      this.env.executed++;
      const [cmd, arg] = line.split(' ');
      if (cmd === 'BOOM') throw new Error('handler bug');
      if (cmd === 'SLOW') {
        this.conn.begin();
        this.env.slow.push(() => {
          this.conn.send(Buffer.from('done\n'));
          this.conn.end();
        });
        continue;
      }
      this.conn.count();
      this.conn.send(Buffer.alloc(Number(arg ?? 0), 'x'));
    }
    this.conn.setBuffered(this.pending.length);
  }
}

async function startService(t: T, limits: Partial<TcpServiceLimits>) {
  const env = { executed: 0, slow: [] as Array<() => void>, logs: [] as string[] };
  const service = new TcpService({ handler: (conn) => new LineHandler(conn, env), limits, log: (m) => env.logs.push(m) });
  const { port } = await service.listen('127.0.0.1', 0);
  t.after(() => service.stop());
  return { service, port, env };
}

test('connections beyond maxConnections are accepted and closed at once, and counted as refused', async (t) => {
  const { service, port } = await startService(t, { maxConnections: 5 });
  const sockets = await Promise.all(Array.from({ length: 8 }, () => open(port)));
  t.after(() => sockets.forEach((s) => s.destroy()));
  const closedIdx: number[] = [];
  sockets.forEach((s, i) => void s.gone.then(() => closedIdx.push(i)));
  await waitFor(() => closedIdx.length === 3, 'three refused connections to close');
  assert.equal(service.stats().refusedConnections, 3);
  assert.equal(service.stats().activeConnections, 5);
  sockets[0]!.destroy();
  await waitFor(() => service.stats().activeConnections === 4, 'a slot to free');
  const again = await open(port);
  t.after(() => again.destroy());
  again.write('ECHO 3\n');
  const [reply] = await within(new Promise<Buffer[]>((r) => again.once('data', (d) => r([d]))), 5000, 'a reply');
  assert.equal(reply!.toString(), 'xxx');
});

test('a connection with nothing to do is closed after idleTimeoutMs', async (t) => {
  const { service, port } = await startService(t, { idleTimeoutMs: 100 });
  const s = await open(port);
  await within(s.gone, 5000, 'the idle connection to close');
  assert.equal(service.stats().timedOutConnections, 1);
});

test('a request started but not finished within requestTimeoutMs closes the connection', async (t) => {
  const { service, port } = await startService(t, { requestTimeoutMs: 100, idleTimeoutMs: 0 });
  const s = await open(port);
  s.write('ECHO 1'); // no newline: half a request
  await within(s.gone, 5000, 'the half-sent request to time out');
  assert.equal(service.stats().timedOutConnections, 1);
});

test('a request in flight keeps a connection from being idle', async (t) => {
  const { service, port, env } = await startService(t, { idleTimeoutMs: 50 });
  const s = await open(port);
  t.after(() => s.destroy());
  s.write('SLOW\n');
  await waitFor(() => env.slow.length === 1, 'the slow request');
  // Let several sweeps pass while it is in flight: the connection must stay.
  const sweeps = Date.now() + 300;
  await waitFor(() => Date.now() > sweeps, 'a few sweep intervals');
  assert.equal(s.destroyed, false);
  assert.equal(service.stats().timedOutConnections, 0);
  env.slow.shift()!();
  await within(s.gone, 5000, 'the connection to close once idle');
});

test('a client that does not read its replies stops being served, and is served again once it reads', async (t) => {
  const { service, port, env } = await startService(t, { maxQueuedBytes: 1 << 20, maxOutputBytes: 64 << 20, requestTimeoutMs: 0 });
  const s = await open(port);
  t.after(() => s.destroy());
  s.pause(); // never read, for now
  const requests = 200;
  s.write('ECHO 262144\n'.repeat(requests));
  await waitFor(() => service.stats().queuedBytes > 1 << 20, 'replies to pile up');
  const executed = env.executed;
  assert.ok(executed < requests, `execution stopped (${executed} of ${requests})`);
  let received = 0;
  s.on('data', (d: Buffer) => (received += d.length));
  s.resume();
  await waitFor(() => received === requests * 262144, 'every reply once the client reads', 30_000);
  assert.equal(env.executed, requests);
});

test('a handler that throws closes its own connection and no other', async (t) => {
  const { service, port } = await startService(t, {});
  const bad = await open(port);
  const good = await open(port);
  t.after(() => good.destroy());
  bad.write('BOOM\n');
  await within(bad.gone, 5000, 'the failing connection to close');
  good.write('ECHO 2\n');
  const reply = await within(new Promise<Buffer>((r) => good.once('data', r)), 5000, 'a reply on the other connection');
  assert.equal(reply.toString(), 'xx');
  assert.equal(service.stats().activeConnections, 1);
});

test('a connection holding more request bytes than maxBufferedBytes is closed and counted', async (t) => {
  const { service, port } = await startService(t, { maxBufferedBytes: 64 * 1024 });
  const s = await open(port);
  s.write(Buffer.alloc(200 * 1024, 'a')); // one line that never ends
  await within(s.gone, 5000, 'the connection to close');
  assert.equal(service.stats().limitClosedConnections, 1);
  assert.equal(service.stats().bufferedBytes, 0);
});

test('over the server memory budget the heaviest connection is closed and the others stay', async (t) => {
  const { service, port } = await startService(t, { maxTotalBytes: 1 << 20, maxBufferedBytes: 8 << 20 });
  const light = await open(port);
  const middle = await open(port);
  const heavy = await open(port);
  t.after(() => [light, middle].forEach((s) => s.destroy()));
  light.write(Buffer.alloc(100 * 1024, 'a'));
  middle.write(Buffer.alloc(200 * 1024, 'b'));
  await waitFor(() => service.stats().bufferedBytes === 300 * 1024, 'two partial requests to be held');
  heavy.write(Buffer.alloc(900 * 1024, 'c')); // crosses the budget once it holds ~724 KiB: the heaviest by then
  await within(heavy.gone, 5000, 'the heaviest connection to close');
  assert.equal(service.stats().limitClosedConnections, 1);
  assert.equal(service.stats().activeConnections, 2);
  assert.ok(service.stats().bufferedBytes <= 1 << 20);
});

test('stop lets a request in flight answer before the connection closes', async (t) => {
  const { service, port, env } = await startService(t, {});
  const s = await open(port);
  let got = '';
  s.on('data', (d: Buffer) => (got += d.toString()));
  s.write('SLOW\n');
  await waitFor(() => env.slow.length === 1, 'the slow request');
  const stopped = service.stop();
  env.slow.shift()!();
  await within(s.gone, 5000, 'the connection to close');
  await stopped;
  assert.equal(got, 'done\n');
});

test('the default connection limit leaves most descriptors to the rest of the process', async () => {
  const { defaultMaxConnections } = await import('../../src/net/tcp-service.ts');
  assert.deepEqual([defaultMaxConnections(300), defaultMaxConnections(1024), defaultMaxConnections(65536), defaultMaxConnections(20), defaultMaxConnections(null)], [37, 128, 128, 8, 128]);
});

test('with a readBuffer, every connection reads into that one buffer and says so (transientReads)', async (t) => {
  const readBuffer = Buffer.alloc(64 * 1024);
  const seen: { transient: boolean; shared: boolean; text: string }[] = [];
  const service = new TcpService({
    readBuffer,
    handler: (conn) => ({
      data(chunk: Buffer) {
        seen.push({ transient: conn.transientReads, shared: chunk.buffer === readBuffer.buffer, text: chunk.toString('latin1') });
        conn.send(Buffer.from(`got ${chunk.length}\n`));
      },
      resume() {},
    }),
  });
  const { port } = await service.listen('127.0.0.1', 0);
  t.after(() => service.stop());
  const a = await open(port);
  const b = await open(port);
  t.after(() => {
    a.destroy();
    b.destroy();
  });
  for (const [s, text] of [[a, 'first'], [b, 'second']] as const) {
    const reply = within(new Promise<Buffer>((r) => s.once('data', r)), 5000, 'a reply');
    s.write(text);
    assert.equal((await reply).toString(), `got ${text.length}\n`);
  }
  assert.deepEqual(seen, [
    { transient: true, shared: true, text: 'first' },
    { transient: true, shared: true, text: 'second' },
  ]);
});
