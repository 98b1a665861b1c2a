/**
 * The queue's memory ordering across processes: a child process drives a
 * region mapped from a memfd, the controller's poller serves it from this
 * process, and every read is checked against the child's reference copy; at
 * the end the backend's bytes must equal that copy (crc32).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { crc32 } from 'node:zlib';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { VirtioBlkDevice } from '../../src/queue/blk-device.ts';
import { Poller } from '../../src/queue/poller.ts';
import { createControllerRegion } from '../../src/deploy/guest/process-region.ts';
import type { NotifyMode } from '../../src/config/config.ts';

interface Reply {
  ok: boolean;
  error?: string;
  mismatches: number;
  done: number;
  crc: number;
  stats: { submitted: number; completed: number; waitTimeouts: number; interruptsWaited: number };
}

const child = new URL('../deploy/helpers/shm-driver-child.ts', import.meta.url).pathname;

async function run(mode: NotifyMode, ops: number, seed: number): Promise<{ reply: Reply; backend: MemoryBlockDevice; device: VirtioBlkDevice }> {
  const capacityBytes = 16 * 1024 * 1024;
  const r = createControllerRegion(`stress-${mode}`, { mode, queueSize: 128, dataBytes: 4 * 1024 * 1024, capacityBytes, sizeMax: 64 * 1024 }, { hugepages: false, lock: false });
  const backend = new MemoryBlockDevice(capacityBytes);
  const device = new VirtioBlkDevice({ region: r.region, backend, name: `stress-${mode}` });
  const poller = new Poller(50);
  poller.add(device, mode);
  const args = { regionBytes: r.regionBytes, seed, ops, lanes: 16, maxBytes: 8 * 1024 };
  const proc = spawn(process.execPath, ['--import', 'tsx', child, JSON.stringify(args)], {
    stdio: ['ignore', 'inherit', 'inherit', r.fds.region, r.fds.kick, r.fds.call, 'ipc'],
  });
  r.closeFds();
  try {
    const reply = await new Promise<Reply>((resolve, reject) => {
      proc.once('message', (m) => resolve(m as Reply));
      proc.once('exit', (code) => reject(new Error(`child exited ${code} before replying`)));
    });
    await new Promise((resolve) => (proc.exitCode !== null ? resolve(null) : proc.once('exit', resolve)));
    return { reply, backend, device };
  } finally {
    proc.kill('SIGKILL');
    poller.stop();
    r.close();
  }
}

const cases: Array<{ mode: NotifyMode; ops: number }> = [
  // Adaptive carries the volume: poll spins on both sides, and on a shared 2-core machine two spinners crawl.
  { mode: 'adaptive', ops: Number(process.env.STRESS_OPS ?? 150_000) },
  { mode: 'poll', ops: 10_000 },
  { mode: 'notify', ops: 5_000 },
];

for (const c of cases) {
  test(`${c.ops} random reads and writes from another process match its reference copy (${c.mode})`, { timeout: 60_000 }, async () => {
    const started = performance.now();
    const { reply, backend, device } = await run(c.mode, c.ops, 7 + c.ops);
    const secs = (performance.now() - started) / 1000;
    assert.equal(reply.error, undefined);
    assert.equal(reply.ok, true);
    assert.equal(reply.done >= c.ops, true);
    assert.equal(reply.mismatches, 0);
    assert.equal(crc32(backend.bytes), reply.crc);
    assert.equal(reply.stats.completed, reply.stats.submitted);
    assert.equal(device.broken, false);
    assert.equal(reply.stats.waitTimeouts, 0, 'a driver wait ended by timeout: lost wake-up');
    if (c.mode === 'notify') assert.ok(reply.stats.interruptsWaited > 0);
    process.stderr.write(`# ${c.mode}: ${reply.done} requests (${reply.stats.submitted} queue requests) in ${secs.toFixed(1)} s\n`);
  });
}
