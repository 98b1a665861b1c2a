/**
 * A sorted set: member -> score, plus the members ordered by (score, member)
 * as Redis orders them (members compare bytewise; keys are latin1 strings so
 * JS string comparison is byte comparison). The order is a sorted array:
 * O(log n) search, O(n) insert/remove, simple and fast at the sizes tests and
 * benchmarks use; a skip list is the upgrade path for very large sets.
 */
export interface ScoredMember {
  member: string;
  score: number;
}

function before(a: ScoredMember, score: number, member: string): boolean {
  return a.score < score || (a.score === score && a.member < member);
}

export class SortedSet {
  private readonly scores = new Map<string, number>();
  private readonly order: ScoredMember[] = [];

  get size(): number {
    return this.order.length;
  }

  score(member: string): number | undefined {
    return this.scores.get(member);
  }

  /** Insert or update; returns true if the member is new. */
  set(member: string, score: number): boolean {
    const old = this.scores.get(member);
    if (old !== undefined) {
      if (old === score) return false;
      this.order.splice(this.position(old, member), 1);
    }
    this.scores.set(member, score);
    this.order.splice(this.position(score, member), 0, { member, score });
    return old === undefined;
  }

  delete(member: string): boolean {
    const old = this.scores.get(member);
    if (old === undefined) return false;
    this.order.splice(this.position(old, member), 1);
    this.scores.delete(member);
    return true;
  }

  /** Entries by rank, [start, end) already clamped. */
  range(start: number, end: number): ScoredMember[] {
    return this.order.slice(start, end);
  }

  /** Remove and return the `count` lowest entries. */
  popMin(count: number): ScoredMember[] {
    const popped = this.order.splice(0, count);
    for (const e of popped) this.scores.delete(e.member);
    return popped;
  }

  entries(): readonly ScoredMember[] {
    return this.order;
  }

  /** First index whose entry is not before (score, member). */
  private position(score: number, member: string): number {
    let lo = 0;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (before(this.order[mid], score, member)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
