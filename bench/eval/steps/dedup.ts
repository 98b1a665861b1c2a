import { join } from 'node:path';
import { parseConfig } from '../../../src/config/config.ts';
import { runFio } from '../../lib/fio.ts';
import { deployedTarget, withController, withScratch, withTarget } from '../../lib/targets.ts';
import { Samples, type EvalContext } from '../context.ts';
import type { Section } from '../report.ts';

/**
 * Row 9, dedup: sequential and random writes of data that is half duplicate
 * and half compressible (fio's dedupe_percentage and buffer_compress_percentage)
 * to the dedup+LZ4 function, against the nbd-export function on a plain volume.
 */
export async function dedupStep(ctx: EvalContext): Promise<Section[]> {
  const s = new Samples();
  const columns = ['plain volume', 'dedup integrated', 'dedup guest/poll'];
  const loads = [
    { row: 'sequential write 1 MiB', unit: 'MiB/s', args: ['--rw=write', '--bs=1M', '--iodepth=4'] },
    { row: 'random write 4 KiB QD32', unit: 'IOPS', args: ['--rw=randwrite', '--bs=4k', '--iodepth=32', '--norandommap', '--randrepeat=0'] },
  ];
  for (let rep = 0; rep < ctx.repeats; rep++) {
    for (const col of columns) {
      const t = col === 'plain volume'
        ? deployedTarget(col, { deploy: 'integrated' })
        : deployedTarget(col, { deploy: col.endsWith('integrated') ? 'integrated' : 'guest', notify: 'poll', options: { exportName: 'bench' } }, 'bench', 'dedup');
      await withScratch(ctx.dir, 'storvisor-eval-dedup-', (dir) =>
        withController(parseConfig({ dataDir: join(dir, 'data'), cacheMiB: 32, api: null, nbd: { port: 0 }, volumes: [{ name: 'bench', sizeMiB: 512 }] }, dir, {}), (controller) =>
          withTarget(controller, t, async (reach) => {
            for (const l of loads) {
              const r = await runFio(['--name=d', '--size=256M', '--dedupe_percentage=50', '--buffer_compress_percentage=50', '--refill_buffers', ...l.args, ...reach, '--time_based', `--runtime=${ctx.seconds}`]);
              s.add(l.row, col, r.iops);
              ctx.progress.step(`dedup ${col} ${l.row}: ${Math.round(r.iops)} ${l.unit}`, ctx.seconds);
            }
          }),
        ),
      );
    }
  }
  return [{
    id: 'dedup',
    title: 'Inline dedup and compression against a plain volume',
    columns,
    rows: loads.map((l) => ({ name: l.row, unit: l.unit, better: 'higher' as const, cells: s.cells(l.row, columns) })),
    notes: ['fio over NBD, data 50% duplicate and 50% compressible; the plain volume is the nbd-export function integrated on the same backend.'],
  }];
}
