import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { once } from 'node:events';
import { tempDir, rng, randomBytes } from '../helpers/tmp.ts';

/**
 * The data path's tracing mode (STORVISOR_TRACE=1, issue #8). The switch is
 * read when the modules load, so this file sets it before importing them
 * (node --test runs each file in its own process), and imports nothing that
 * loads them statically (./helpers.ts does).
 */
process.env.STORVISOR_TRACE = '1';
const MiB = 1 << 20;
const trace = await import('../../src/util/trace.ts');
const { native } = await import('../../src/native/addon.ts');
const { UringEngine } = await import('../../src/storage/engine.ts');
const { FileBackend } = await import('../../src/storage/backend.ts');
const { BlockCache } = await import('../../src/storage/block-cache.ts');
const { Volume } = await import('../../src/storage/volume.ts');
const { NbdServer } = await import('../../src/nbd/server.ts');
const { NbdClient } = await import('../../src/nbd/client.ts');

const { S } = trace;
type Row = Array<number | null>;

async function tracedExport(t: Parameters<typeof tempDir>[0], content: Buffer) {
  assert.ok(native, 'the native addon must be built (npm install)');
  const engine = new UringEngine(native, 64, 256, { holdUs: 2000 });
  const dir = tempDir(t);
  mkdirSync(join(dir, 'v'));
  const path = join(dir, 'v', 'vol.img');
  writeFileSync(path, content);
  const volume = new Volume({ id: 1, name: 'v', size: content.length }, FileBackend.open(path, { engine }), new BlockCache(256 * 4096));
  const server = new NbdServer({ exports: [{ name: 'vol', description: 'traced', device: volume }], defaultExport: 'vol', log: () => {} });
  const { port } = await server.listen('127.0.0.1', 0);
  const client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: 'vol' });
  t.after(async () => {
    await client.close();
    await server.close();
    await volume.close();
    engine.close();
  });
  return client;
}

test('with tracing on, reads and writes through an NBD export return the bytes they would without it', async (t) => {
  const content = randomBytes(rng(81), 2 * MiB);
  const client = await tracedExport(t, content);
  trace.resetTraces();
  const expect = Buffer.from(content);
  const r = rng(82);
  for (let i = 0; i < 64; i++) {
    const off = Math.floor(r() * (content.length / 4096)) * 4096;
    if (i % 4 === 3) {
      const data = randomBytes(r, 4096);
      await client.pwrite(data, off);
      data.copy(expect, off);
    }
    const got = Buffer.alloc(4096);
    await client.pread(got, off); // a miss, or a hit when written or read before
    assert.ok(got.equals(expect.subarray(off, off + 4096)), `read ${i} at ${off}`);
  }
  const whole = Buffer.alloc(content.length);
  await client.pread(whole, 0);
  assert.ok(whole.equals(expect));
});

test('a traced read miss leaves a row whose stages run in order from socket data to the reply\'s writev', async (t) => {
  const content = randomBytes(rng(83), MiB);
  const client = await tracedExport(t, content);
  trace.resetTraces();
  const got = Buffer.alloc(4096);
  for (let i = 0; i < 16; i++) await client.pread(got, i * 8192); // QD1: a row per request
  const [mine] = await trace.collectTraces(0);
  const misses = mine!.rows.filter((row: Row) => row[S.cacheMiss] !== null);
  assert.equal(misses.length, 16);
  const order = ['data', 'request', 'cacheMiss', 'submit', 'enter', 'entered', 'submitted', 'complete', 'volDone', 'reply', 'written'] as const;
  for (const row of misses) {
    for (let k = 1; k < order.length; k++) {
      const a = row[S[order[k - 1]!]];
      const b = row[S[order[k]!]];
      assert.ok(a !== null && b !== null && a <= b, `${order[k - 1]} ${a} then ${order[k]} ${b}`);
    }
    // The native hold's timestamps fall inside the engine's own, on the same clock.
    if (row[S.cqe] !== null) assert.ok(row[S.entered]! <= row[S.cqe]! && row[S.cqe]! <= row[S.complete]!, JSON.stringify(row));
  }
  assert.ok(misses.some((row: Row) => row[S.cqe] !== null), 'no hold saw its completion');
});

test('the step summary gives each step\'s median in µs, in the order requests met the stages', () => {
  const row = (data: number, request: number, reply: number): Row => {
    const r: Row = new Array(trace.STAGES.length).fill(null);
    r[S.data] = data;
    r[S.request] = request;
    r[S.reply] = reply;
    return r;
  };
  const snap = { threadId: 0, stages: [...trace.STAGES], rows: [row(0, 0.001, 0.011), row(1, 1.003, 1.013), row(2, 2.002, 2.032)] };
  const steps = trace.summarizeRows(snap);
  assert.deepEqual(steps.map((s) => s.step), ['data → request', 'request → reply']);
  assert.deepEqual(steps.map((s) => s.count), [3, 3]);
  assert.ok(Math.abs(steps[0]!.medianUs - 2) < 1e-6 && Math.abs(steps[1]!.medianUs - 10) < 1e-6, JSON.stringify(steps));
  assert.ok(Math.abs(trace.medianGapUs(snap, 'data', 'reply') - 13) < 1e-6);
  // From one reply to the next request's data: 1 - 0.011 and 2 - 1.013 ms.
  assert.ok(Math.abs(trace.medianCrossGapUs(snap, 'reply', 'data') - 989) < 1e-6);
});

test('a thread guest\'s rows reach the collector on the controller\'s thread', async (t) => {
  const url = new URL('../../src/util/trace.ts', import.meta.url).href;
  const worker = new Worker(
    // A worker does not inherit the test's TypeScript loader: register it, as a guest's bundle needs none.
    `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(url)}); }).then(({ trace, S }) => { trace.start(S.drvPublished); trace.mark(S.drvReaped); require('node:worker_threads').parentPort.postMessage('ready'); setInterval(() => {}, 1000); });` /* alive, as a guest is */,
    { eval: true },
  );
  t.after(() => worker.terminate());
  const [msg] = await once(worker, 'message');
  assert.equal(msg, 'ready');
  const deadline = Date.now() + 10_000;
  let theirs: Awaited<ReturnType<typeof trace.collectTraces>>[number] | undefined;
  while (theirs === undefined) {
    assert.ok(Date.now() < deadline, 'the worker never answered');
    theirs = (await trace.collectTraces(50)).find((s) => s.threadId === worker.threadId);
  }
  assert.equal(theirs.rows.length, 1);
  assert.ok(theirs.rows[0]![S.drvPublished]! <= theirs.rows[0]![S.drvReaped]!);
});
