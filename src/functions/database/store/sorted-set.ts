/**
 * A sorted set: member -> score in a Map, plus the members ordered by
 * (score, member) as Redis orders them (members compare bytewise; they are
 * latin1 strings, so JS string comparison is byte comparison) in a skip list
 * whose links carry spans (Redis's zskiplist): insert, remove, rank and
 * the start of a range are O(log n) expected; a range then walks level 0.
 */
import { internalError } from '../../../util/errors.ts';

export interface ScoredMember {
  member: string;
  score: number;
}

const MAX_LEVEL = 32;

class Node implements ScoredMember {
  readonly next: (Node | null)[];
  /** span[i]: how many level-0 steps next[i] jumps (rank distance). */
  readonly span: number[];
  prev: Node | null = null;
  constructor(
    public member: string,
    public score: number,
    level: number,
  ) {
    this.next = new Array<Node | null>(level).fill(null);
    this.span = new Array<number>(level).fill(0);
  }
}

/** Is node (score, member) ordered before (score, member)? */
function before(n: Node, score: number, member: string): boolean {
  return n.score < score || (n.score === score && n.member < member);
}

/** A score bound of ZRANGEBYSCORE and friends: `(5` is exclusive. */
export interface ScoreBound {
  value: number;
  exclusive: boolean;
}

function randomLevel(): number {
  let level = 1;
  // p = 1/4, as Redis.
  while (level < MAX_LEVEL && Math.random() < 0.25) level++;
  return level;
}

export class SortedSet {
  private readonly scores = new Map<string, number>();
  private readonly head = new Node('', -Infinity, MAX_LEVEL);
  private tail: Node | null = null;
  private level = 1;
  /** Scratch for insert and delete (no allocation per call). */
  private readonly update: Node[] = new Array<Node>(MAX_LEVEL);
  private readonly rankAt: number[] = new Array<number>(MAX_LEVEL).fill(0);

  get size(): number {
    return this.scores.size;
  }

  score(member: string): number | undefined {
    return this.scores.get(member);
  }

  /** Insert or update; returns true if the member is new. */
  set(member: string, score: number): boolean {
    const old = this.scores.get(member);
    if (old !== undefined) {
      if (old === score) return false;
      this.unlink(old, member);
    }
    this.scores.set(member, score);
    this.insert(member, score);
    return old === undefined;
  }

  delete(member: string): boolean {
    const old = this.scores.get(member);
    if (old === undefined) return false;
    this.unlink(old, member);
    this.scores.delete(member);
    return true;
  }

  /** 0-based rank of member in ascending order, or undefined. */
  rank(member: string): number | undefined {
    const score = this.scores.get(member);
    if (score === undefined) return undefined;
    let x = this.head;
    let rank = 0;
    for (let i = this.level - 1; i >= 0; i--) {
      let n = x.next[i];
      while (n !== null && (before(n, score, member) || (n.score === score && n.member === member))) {
        rank += x.span[i];
        x = n;
        n = x.next[i];
      }
      if (x !== this.head && x.member === member) return rank - 1;
    }
    return undefined;
  }

  /** Entries by rank, [start, end) already clamped. */
  range(start: number, end: number): ScoredMember[] {
    const out: ScoredMember[] = [];
    let n = start < end ? this.byRank(start) : null;
    for (let i = start; i < end && n !== null; i++, n = n.next[0]) out.push(n);
    return out;
  }

  /** Entries by rank [start, end) from the highest: rank 0 is the last. */
  revRange(start: number, end: number): ScoredMember[] {
    const out: ScoredMember[] = [];
    let n = start < end ? this.byRank(this.size - 1 - start) : null;
    for (let i = start; i < end && n !== null; i++, n = n.prev) out.push(n);
    return out;
  }

  /** Number of entries whose score is below the bound (all of its inside entries come at and after this rank). */
  rankOfMin(min: ScoreBound): number {
    let x = this.head;
    let rank = 0;
    for (let i = this.level - 1; i >= 0; i--) {
      let n = x.next[i];
      while (n !== null && (min.exclusive ? n.score <= min.value : n.score < min.value)) {
        rank += x.span[i];
        x = n;
        n = x.next[i];
      }
    }
    return rank;
  }

  /** Number of entries whose score is within the max bound. */
  rankAfterMax(max: ScoreBound): number {
    let x = this.head;
    let rank = 0;
    for (let i = this.level - 1; i >= 0; i--) {
      let n = x.next[i];
      while (n !== null && (max.exclusive ? n.score < max.value : n.score <= max.value)) {
        rank += x.span[i];
        x = n;
        n = x.next[i];
      }
    }
    return rank;
  }

  /** Ranks [start, end) of the entries with min <= score <= max. */
  scoreRange(min: ScoreBound, max: ScoreBound): [number, number] {
    const start = this.rankOfMin(min);
    const end = this.rankAfterMax(max);
    return [start, Math.max(start, end)];
  }

  /** Remove and return the `count` lowest entries. */
  popMin(count: number): ScoredMember[] {
    const out = this.range(0, Math.min(count, this.size)).map((n) => ({ member: n.member, score: n.score }));
    for (const e of out) this.delete(e.member);
    return out;
  }

  /** Every entry in order. */
  *entries(): Generator<ScoredMember> {
    for (let n = this.head.next[0]; n !== null; n = n.next[0]) yield n;
  }

  /** The node at 0-based rank (must exist). */
  private byRank(rank: number): Node | null {
    let x = this.head;
    let traversed = 0;
    const target = rank + 1;
    for (let i = this.level - 1; i >= 0; i--) {
      while (x.next[i] !== null && traversed + x.span[i] <= target) {
        traversed += x.span[i];
        x = x.next[i]!;
      }
      if (traversed === target) return x;
    }
    return null;
  }

  private insert(member: string, score: number): void {
    const update = this.update;
    const rankAt = this.rankAt;
    let x = this.head;
    for (let i = this.level - 1; i >= 0; i--) {
      rankAt[i] = i === this.level - 1 ? 0 : rankAt[i + 1];
      let n = x.next[i];
      while (n !== null && before(n, score, member)) {
        rankAt[i] += x.span[i];
        x = n;
        n = x.next[i];
      }
      update[i] = x;
    }
    const level = randomLevel();
    if (level > this.level) {
      for (let i = this.level; i < level; i++) {
        rankAt[i] = 0;
        update[i] = this.head;
        this.head.span[i] = this.size - 1; // size already counts the new member
      }
      this.level = level;
    }
    const node = new Node(member, score, level);
    for (let i = 0; i < level; i++) {
      node.next[i] = update[i].next[i];
      update[i].next[i] = node;
      node.span[i] = update[i].span[i] - (rankAt[0] - rankAt[i]);
      update[i].span[i] = rankAt[0] - rankAt[i] + 1;
    }
    for (let i = level; i < this.level; i++) update[i].span[i]++;
    node.prev = update[0] === this.head ? null : update[0];
    if (node.next[0] !== null) node.next[0].prev = node;
    else this.tail = node;
  }

  private unlink(score: number, member: string): void {
    const update = this.update;
    let x = this.head;
    for (let i = this.level - 1; i >= 0; i--) {
      let n = x.next[i];
      while (n !== null && before(n, score, member)) {
        x = n;
        n = x.next[i];
      }
      update[i] = x;
    }
    const node = x.next[0];
    if (node === null || node.member !== member) throw internalError('sorted set: member missing from its skip list');
    for (let i = 0; i < this.level; i++) {
      if (update[i].next[i] === node) {
        update[i].span[i] += node.span[i] - 1;
        update[i].next[i] = node.next[i];
      } else {
        update[i].span[i]--;
      }
    }
    if (node.next[0] !== null) node.next[0].prev = node.prev;
    else this.tail = node.prev;
    while (this.level > 1 && this.head.next[this.level - 1] === null) this.level--;
  }

  /** The highest entry, or null. */
  last(): ScoredMember | null {
    return this.tail;
  }
}
