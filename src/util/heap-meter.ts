import { GCProfiler } from 'node:v8';

/**
 * JS heap bytes allocated and GC time in this isolate since the meter was
 * made, from v8's GC profiler: what each collection found before it ran, less
 * what the previous one left, plus the growth since the last. Counts, not
 * rates: they hold on a loaded machine. Used by the database bench (its own
 * process) and by a guest's stats (its thread's isolate).
 */
export class HeapMeter {
  private readonly profiler = new GCProfiler();
  private after = process.memoryUsage().heapUsed;
  private bytes = 0;
  private gcUs = 0;
  private gcs = 0;

  constructor() {
    this.profiler.start();
  }

  /** Totals so far. The profiler is restarted: it keeps every collection until stopped. */
  read(): { bytes: number; gcUs: number; gcs: number } {
    this.take();
    this.profiler.start();
    return this.totals();
  }

  /** Totals so far, and no more profiling. */
  stop(): { bytes: number; gcUs: number; gcs: number } {
    this.take();
    return this.totals();
  }

  private take(): void {
    for (const st of this.profiler.stop()?.statistics ?? []) {
      this.bytes += st.beforeGC.heapStatistics.usedHeapSize - this.after;
      this.after = st.afterGC.heapStatistics.usedHeapSize;
      this.gcUs += st.cost;
      this.gcs++;
    }
  }

  private totals(): { bytes: number; gcUs: number; gcs: number } {
    return { bytes: this.bytes + process.memoryUsage().heapUsed - this.after, gcUs: this.gcUs, gcs: this.gcs };
  }
}
