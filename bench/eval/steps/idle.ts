import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig } from '../../../src/config/config.ts';
import { childPids, cpuMeter } from '../../lib/cpu.ts';
import { benchFunction, withController, withScratch } from '../../lib/targets.ts';
import { Samples, type EvalContext } from '../context.ts';
import type { Section } from '../report.ts';

/** Row 8, idle half: the CPU an idle controller burns with one nbd-export function in each deployment. */
export async function idleStep(ctx: EvalContext): Promise<Section[]> {
  const window = ctx.quick ? 2 : 10;
  const samples = new Samples();
  const columns = ctx.deployments.map((d) => d.label);
  const row = 'idle CPU';
  for (const d of ctx.deployments) {
    if (d.unsupported) {
      samples.skip(row, d.label, d.unsupported);
      continue;
    }
    for (let rep = 0; rep < ctx.repeats; rep++) {
      await withScratch(ctx.dir, 'storvisor-eval-idle-', (dir) =>
        withController(parseConfig({ dataDir: join(dir, 'data'), api: null, nbd: { port: 0 }, volumes: [{ name: 'bench', sizeMiB: 64 }] }, dir, {}), async (controller) => {
          await controller.deploy(benchFunction('idle', d.fields));
          await sleep(500); // let start-up work finish: the window measures the idle state, not the boot
          const meter = cpuMeter(childPids);
          await sleep(window * 1000); // the measurement window itself
          samples.add(row, d.label, (meter() / window) * 100);
        }),
      );
      ctx.progress.step(`idle ${d.label}`, window);
    }
  }
  return [{
    id: 'cost',
    title: 'Cost: server CPU per 1,000 requests',
    columns,
    rows: [{ name: row, unit: '% of one core', better: 'lower', cells: samples.cells(row, columns), headline: true, paper: 'an idle adaptive guest under 1% (target)' }],
    notes: [`Idle CPU: the controller with one idle nbd-export function, measured over ${window} s after a 0.5 s settle; poll modes spin by design.`],
  }];
}
