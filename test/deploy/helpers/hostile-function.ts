import { closeSync, ftruncateSync, openSync, readdirSync, readlinkSync, writeSync } from 'node:fs';
import type { StorageFunction } from '../../../src/functions/types.ts';
import nbdExport from '../../../src/functions/nbd-export.ts';

/**
 * A process guest that turns on its controller once it is up (tests only):
 * - scribble: garbage over its descriptor table and available ring, then a kick;
 * - channel: a message line far longer than the controller accepts;
 * - truncate: opens the controller's memfd through /proc and tries to shrink it
 *   (a SIGBUS for the controller if it worked);
 * - flood: kicks its doorbell as fast as it can.
 * It serves NBD like nbd-export until then; `hostile_*` stats say what happened.
 */
interface Options {
  how: 'scribble' | 'channel' | 'truncate' | 'flood';
  exportName?: string;
  /** Act only in the first life (a restarted guest behaves): set by the test through the environment. */
}

const hostile: StorageFunction<Options> = {
  name: 'hostile',
  apiVersion: 1,
  description: 'a process guest that attacks its controller (tests only)',
  async start(ctx) {
    const running = await nbdExport.start({ ...ctx, options: { exportName: ctx.options.exportName ?? 'export' } as any });
    const counters = { hostile_acted: 0, hostile_truncateRefused: 0, hostile_truncateDone: 0, hostile_kicks: 0 };
    const views = (ctx.device as any).views as { u8: Uint8Array; u16: Uint16Array; ctl: Int32Array; layout: { descOffset: number; availOffset: number } };
    const act = () => {
      counters.hostile_acted = 1;
      switch (ctx.options.how) {
        case 'scribble': {
          const { u8, u16, layout } = views;
          for (let i = layout.descOffset; i < layout.availOffset + 64; i++) u8[i] = (i * 131) & 0xff;
          Atomics.add(u16, (layout.availOffset >>> 1) + 1, 7);
          Atomics.add(views.ctl, 16, 1);
          // The controller may be sleeping on the kick eventfd (fd 5).
          writeSync(5, Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]));
          break;
        }
        case 'channel':
          writeSync(3, 'x'.repeat(1 << 20));
          break;
        case 'truncate':
          // The controller's open memfds, and its mappings of them (map_files needs privilege; tests run as root here).
          for (const dir of [`/proc/${process.ppid}/fd`, `/proc/${process.ppid}/map_files`]) {
          let entries: string[] = [];
          try {
            entries = readdirSync(dir);
          } catch {
            continue;
          }
          for (const fd of entries) {
            let target = '';
            try {
              target = readlinkSync(`${dir}/${fd}`);
            } catch {
              continue;
            }
            if (!target.startsWith('/memfd:storvisor:')) continue;
            try {
              const mine = openSync(`${dir}/${fd}`, 'r+');
              try {
                ftruncateSync(mine, 0);
                counters.hostile_truncateDone++;
              } catch {
                counters.hostile_truncateRefused++;
              } finally {
                closeSync(mine);
              }
            } catch {
              counters.hostile_truncateRefused++;
            }
          }
          }
          break;
        case 'flood': {
          const one = Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]);
          const spin = () => {
            for (let i = 0; i < 1000; i++) {
              Atomics.add(views.ctl, 16, 1);
              try {
                writeSync(5, one);
              } catch {
                // eventfd full: keep going
              }
              counters.hostile_kicks++;
            }
            if (counters.hostile_kicks < 200_000) setImmediate(spin);
          };
          spin();
          break;
        }
      }
    };
    if (process.env.STORVISOR_HOSTILE_ONCE === undefined || !process.env.STORVISOR_HOSTILE_DONE) setTimeout(act, 20);
    return { address: running.address, stop: () => running.stop(), stats: () => ({ ...running.stats(), ...counters }) };
  },
};
export default hostile;
