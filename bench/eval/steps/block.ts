import { join } from 'node:path';
import { durabilityArgs, durableLatency, runFio, type WriteDurability } from '../../lib/fio.ts';
import { childPids, cpuMeter } from '../../lib/cpu.ts';
import { controllerExportTarget, deployedTarget, fioArgs, nbdkitTarget, prefill, prefilledDataDir, rawFileTarget, withController, withScratch, withTarget, type Target } from '../../lib/targets.ts';
import { Samples, overheadRow, type EvalContext } from '../context.ts';
import type { Cell, Row, Section } from '../report.ts';
import { ratioOf, summarize } from '../stats.ts';

const MiB = 2 ** 20;
const QDS = [1, 4, 16, 32];
const CACHE_MIB = 32;

interface Workload { name: string; rw: 'randread' | 'randwrite'; qd: number; durability?: WriteDurability }
/** Write rows at equal durability for every column (see durabilityArgs): durable at every depth, write-back at QD1 and QD32. */
const WORKLOADS: Workload[] = [
  ...QDS.map((qd): Workload => ({ name: `read miss QD${qd}`, rw: 'randread', qd })),
  ...QDS.map((qd): Workload => ({ name: `durable write QD${qd}`, rw: 'randwrite', qd, durability: 'durable' })),
  ...[1, 32].map((qd): Workload => ({ name: `write QD${qd}`, rw: 'randwrite', qd, durability: 'write-back' })),
];

/**
 * Rows 3, 6, 8 and 9 of the paper's table for block I/O: the nbd-export
 * function in every deployment, fio's nbd engine, beside fio on the raw file
 * and nbdkit on it (the peers), and the controller's own export.
 */
export async function blockStep(ctx: EvalContext): Promise<Section[]> {
  const dataBytes = (ctx.quick ? 256 : 1024) * MiB;
  const samples = new Samples();
  const peers = ['fio raw file', 'nbdkit file', 'controller export'];
  const deploymentColumns = ctx.deployments.map((d) => d.label);
  const columns = [...peers, ...deploymentColumns];
  await withScratch(ctx.dir, 'storvisor-eval-block-', async (dir) => {
    const raw = join(dir, 'raw.img');
    const config = prefilledDataDir(dir, 'bench', dataBytes, CACHE_MIB);
    prefill(raw, dataBytes);
    await withController(config, async (controller) => {
      const targets: Target[] = [rawFileTarget(raw), nbdkitTarget(raw), controllerExportTarget('bench')];
      for (const d of ctx.deployments) {
        if (d.unsupported) for (const w of WORKLOADS) for (const r of rowNames(w)) samples.skip(r, d.label, d.unsupported);
        else targets.push(deployedTarget(d.label, d.fields));
      }
      for (let rep = 0; rep < ctx.repeats; rep++) {
        for (const t of targets) {
          await withTarget(controller, t, async (reach) => {
            for (const w of WORKLOADS) {
              const isRaw = t.name === 'fio raw file';
              const engine = isRaw ? [w.qd === 1 ? '--ioengine=psync' : '--ioengine=libaio'] : [];
              // After the target's own arguments: the raw file's write-back row turns its O_DIRECT off.
              const sync = w.durability !== undefined ? durabilityArgs(isRaw, w.durability) : [];
              const meter = cpuMeter(childPids);
              const run = await runFio(fioArgs({ rw: w.rw, qd: w.qd, size: dataBytes, seconds: ctx.seconds, reach: [...engine, ...reach, ...sync] }));
              // A durable NBD write's latency is its WRITE's and its FLUSH's.
              const r = w.durability === 'durable' ? { ...run, ...durableLatency(run) } : run;
              const [iops, p50, cpu] = rowNames(w);
              samples.add(iops!, t.name, r.iops);
              samples.add(p50!, t.name, r.p50Us);
              if (isRaw) samples.skip(cpu!, t.name, 'fio on the raw file has no server: nothing to charge');
              else samples.add(cpu!, t.name, (meter() * 1e6) / Math.max(1, r.ios));
              ctx.progress.step(`block ${t.name} ${w.name}: ${Math.round(r.iops)} IOPS, p50 ${r.p50Us.toFixed(0)} µs`, ctx.seconds);
            }
          });
        }
      }
    });
  });

  const row = (name: string, unit: string, better: Row['better'], extra: Partial<Row> = {}): Row => ({ name, unit, better, cells: samples.cells(name, columns), ...extra });
  const throughput: Section = {
    id: 'block-throughput',
    title: 'Block throughput, 4 KiB I/O (nbd-export function)',
    columns,
    rows: WORKLOADS.map((w) => row(rowNames(w)[0]!, 'IOPS', 'higher')),
    notes: [
      `Reads miss the controller cache (${CACHE_MIB} MiB) over a ${dataBytes / MiB} MiB prefilled volume.`,
      'Every column is asked for the same durability. "durable write": each write made durable by a flush of its own (NBD WRITE + FLUSH, as fio\'s nbd engine cannot send FUA; O_DIRECT + O_DSYNC on the raw file). "write": plain writes that may complete in a volatile cache (NBD WRITE without FUA; buffered pwrite on the raw file), one flush at the end.',
      'fio drives every NBD column with its nbd engine; the raw file with psync (QD1) or libaio.',
    ],
  };
  const latency: Section = {
    id: 'block-latency',
    title: 'Block durable-write latency, 4 KiB QD1',
    columns,
    rows: [
      row('durable write QD1 p50', 'µs', 'lower', { paper: '~130 µs', headline: true }),
      overheadRow(samples, 'durable write QD1 p50', deploymentColumns, 'guest overhead over integrated, durable write QD1', '~5%'),
      row('read miss QD1 p50', 'µs', 'lower'),
      overheadRow(samples, 'read miss QD1 p50', deploymentColumns, 'guest overhead over integrated, read miss QD1'),
    ],
    notes: ['Overhead is (p50 ÷ integrated p50 − 1) × 100, from the medians of this run. A durable NBD write\'s p50 is its WRITE\'s plus its FLUSH\'s.'],
  };
  const cost: Section = {
    id: 'cost',
    title: 'Cost: server CPU per 1,000 requests',
    columns,
    rows: ['read miss QD1', 'read miss QD32', 'durable write QD32', 'write QD32'].map((w) => row(`${w} CPU`, 'CPU ms / 1k req', 'lower')),
    notes: ['CPU of the controller process (with its guest threads) and of its child processes (gateway, process guests, nbdkit), over the run, divided by the requests fio completed.'],
  };
  const polled: Section = {
    id: 'ablation',
    title: 'Mechanism ablation',
    columns: ['guest', 'process'],
    rows: [
      factorRow(samples, 'read miss QD32', 'polled ÷ notified IOPS, read miss QD32', '7.3x (reads)'),
      factorRow(samples, 'durable write QD32', 'polled ÷ notified IOPS, durable write QD32', '6.5x (writes)'),
      factorRow(samples, 'read miss QD1', 'polled ÷ notified IOPS, read miss QD1'),
    ],
    notes: [],
  };
  return [throughput, latency, cost, polled];
}

function rowNames(w: Workload): [string, string, string] {
  return [w.name, `${w.name} p50`, `${w.name} CPU`];
}

function factorRow(s: Samples, workload: string, name: string, paper?: string): Row {
  const f = (poll: string, notify: string): Cell => {
    const [p, n] = [s.values(workload, poll), s.values(workload, notify)];
    if (!p.length || !n.length) return { skipped: `needs both ${poll} and ${notify} in this run` };
    return { value: ratioOf(summarize(p), summarize(n)) };
  };
  return { name, unit: 'x', better: 'higher', cells: { guest: f('guest/poll', 'guest/notify'), process: f('process/poll', 'process/notify') }, ...(paper ? { paper, headline: true } : {}) };
}
