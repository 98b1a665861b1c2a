import type { FunctionConfig } from '../../../src/config/config.ts';
import { runFio } from '../../lib/fio.ts';
import { deployedTarget, fioArgs, prefilledDataDir, unsupportedDeploy, withController, withScratch, withTarget } from '../../lib/targets.ts';
import { Samples, type EvalContext } from '../context.ts';
import type { Section } from '../report.ts';
import { ratioOf, summarize } from '../stats.ts';

type Fields = Partial<FunctionConfig> & Pick<FunctionConfig, 'deploy'> & Record<string, unknown>;

/** A process guest with every mechanism on, and each mechanism's "off" setting. */
const ALL_ON: Fields = { deploy: 'guest', kind: 'process', standby: false, notify: 'poll', idle: 'poll', cores: [1], hugepages: true, priority: { nice: -5 } };
const MECHANISMS: Array<{ name: string; off: Record<string, unknown> }> = [
  { name: 'polling', off: { notify: 'notify' } },
  { name: 'static cores', off: { cores: undefined } },
  { name: 'huge pages', off: { hugepages: false } },
  { name: 'idle=poll', off: { idle: 'adaptive' } },
  { name: 'priorities', off: { priority: undefined } },
];

/**
 * Row 7: each mechanism's gain alone. The nbd-export function in a process
 * guest with every mechanism on, then with one turned off at a time; 4 KiB
 * read misses at QD1 and QD32, as ratios to the same function integrated.
 */
export async function ablationStep(ctx: EvalContext): Promise<Section[]> {
  const columns = ['all on', ...MECHANISMS.map((m) => `${m.name} off`)];
  const s = new Samples();
  const rows = ['read miss QD1 ÷ integrated', 'read miss QD32 ÷ integrated'];
  const configs = [{ label: 'all on', fields: ALL_ON }, ...MECHANISMS.map((m) => ({ label: `${m.name} off`, fields: { ...ALL_ON, ...m.off } as Fields }))];
  const why = unsupportedDeploy(ALL_ON);
  if (why) {
    for (const c of columns) for (const r of rows) s.skip(r, c, why);
  } else {
    const dataBytes = (ctx.quick ? 256 : 1024) * 2 ** 20;
    await withScratch(ctx.dir, 'storvisor-eval-ablation-', (dir) =>
      withController(prefilledDataDir(dir, 'bench', dataBytes, 32), async (controller) => {
        for (let rep = 0; rep < ctx.repeats; rep++) {
          const base = new Map<number, number>();
          for (const c of [{ label: 'integrated', fields: { deploy: 'integrated' } as Fields }, ...configs]) {
            await withTarget(controller, deployedTarget(c.label, c.fields), async (reach) => {
              for (const [i, qd] of [1, 32].entries()) {
                const r = await runFio(fioArgs({ rw: 'randread', qd, size: dataBytes, seconds: ctx.seconds, reach }));
                if (c.label === 'integrated') base.set(qd, r.iops);
                else s.add(rows[i]!, c.label, r.iops / base.get(qd)!);
                ctx.progress.step(`ablation ${c.label} QD${qd}: ${Math.round(r.iops)} IOPS`, ctx.seconds);
              }
            });
          }
        }
      }),
    );
  }
  const gain = (r: string) => ({
    name: `${r}: gain of each mechanism (all on ÷ that one off)`,
    unit: 'x',
    better: 'higher' as const,
    cells: Object.fromEntries(columns.map((c) => [c, c === 'all on' ? { skipped: 'the reference' } : why ? { skipped: why } : { value: ratioOf(summarize(s.values(r, 'all on')), summarize(s.values(r, c))) }])),
  });
  return [{
    id: 'ablation',
    title: 'Mechanism ablation',
    columns,
    rows: [...rows.map((r) => ({ name: r, unit: 'x', better: 'higher' as const, cells: s.cells(r, columns) })), ...rows.map(gain)],
    notes: ['A process guest with polling, a static core, huge pages, idle=poll and a raised priority; each column turns one of them off. Integrated runs in the same repeat as the reference.'],
  }];
}
