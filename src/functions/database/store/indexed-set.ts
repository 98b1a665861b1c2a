/** A set with O(1) add, delete and uniform random pick (SPOP), via swap-remove on a dense array. */
export class IndexedSet {
  private readonly index = new Map<string, number>();
  private readonly members: string[] = [];

  get size(): number {
    return this.members.length;
  }

  has(member: string): boolean {
    return this.index.has(member);
  }

  add(member: string): boolean {
    if (this.index.has(member)) return false;
    this.index.set(member, this.members.length);
    this.members.push(member);
    return true;
  }

  delete(member: string): boolean {
    const i = this.index.get(member);
    if (i === undefined) return false;
    const last = this.members.pop() as string;
    if (last !== member) {
      this.members[i] = last;
      this.index.set(last, i);
    }
    this.index.delete(member);
    return true;
  }

  /** A uniformly random member (the set must not be empty). */
  random(): string {
    return this.members[Math.floor(Math.random() * this.members.length)];
  }

  values(): readonly string[] {
    return this.members;
  }
}
