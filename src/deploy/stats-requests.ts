/**
 * Stats asked of another thread or process over a message channel: each request
 * gets an id, the answer carrying that id resolves it, and a request that gets no
 * answer (a busy or dying peer) resolves empty after a timeout instead of
 * hanging the management API.
 */
export type Stats = Record<string, number>;

const STATS_TIMEOUT_MS = 1000;

export class StatsRequests {
  private seq = 0;
  private readonly waiters = new Map<number, (s: Stats) => void>();

  /** Send a request with `send(id)` and wait for its answer (or {} after the timeout). */
  request(send: (id: number) => void): Promise<Stats> {
    const id = ++this.seq;
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.answer(id, {}), STATS_TIMEOUT_MS);
      this.waiters.set(id, (s) => {
        clearTimeout(timer);
        resolve(s);
      });
      send(id);
    });
  }

  /** An answer arrived from the peer. */
  answer(id: number, stats: Stats): void {
    const waiter = this.waiters.get(id);
    this.waiters.delete(id);
    waiter?.(stats);
  }

  /** The peer is gone: every open request resolves empty. */
  cancelAll(): void {
    for (const id of [...this.waiters.keys()]) this.answer(id, {});
  }
}
