/**
 * The evaluation's progress line on stderr: what runs now, how far it is, and
 * how long is left, estimated from the planned work of each step (seconds of
 * load) and how long the finished steps really took per planned second.
 */
export class Progress {
  private readonly started = Date.now();
  private plannedDone = 0;
  private stepsDone = 0;

  constructor(
    private readonly steps: number,
    private readonly plannedTotal: number,
    private readonly write: (line: string) => void = (l) => process.stderr.write(l + '\n'),
  ) {}

  /** A step of `planned` seconds of load finished; `what` says what it measured. */
  step(what: string, planned: number): void {
    this.stepsDone++;
    this.plannedDone += planned;
    this.write(this.line(what));
  }

  line(what: string): string {
    const elapsed = (Date.now() - this.started) / 1000;
    const rate = this.plannedDone > 0 ? elapsed / this.plannedDone : 0;
    const left = Math.max(0, (this.plannedTotal - this.plannedDone) * rate);
    const pct = this.plannedTotal > 0 ? Math.min(100, Math.round((this.plannedDone / this.plannedTotal) * 100)) : 100;
    return `[eval] ${String(this.stepsDone).padStart(String(this.steps).length)}/${this.steps} ${pct.toString().padStart(3)}%  ${clock(elapsed)} elapsed, ~${clock(left)} left  ${what}`;
  }
}

export function clock(seconds: number): string {
  const s = Math.round(seconds);
  return s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m` : s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}
