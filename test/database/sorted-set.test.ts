import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SortedSet, type ScoreBound } from '../../src/functions/database/store/sorted-set.ts';

/** The model: a plain array kept sorted by (score, member), as Redis orders a sorted set. */
function modelOrder(m: Map<string, number>): { member: string; score: number }[] {
  return [...m].map(([member, score]) => ({ member, score })).sort((a, b) => a.score - b.score || (a.member < b.member ? -1 : a.member > b.member ? 1 : 0));
}

const member = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz'.split(''), 'aa', 'ab', '\u00ff', '');
const score = fc.oneof(fc.integer({ min: -5, max: 5 }), fc.constantFrom(-Infinity, Infinity, 0.5, -0.5));
const bound = fc.record({ value: score, exclusive: fc.boolean() });
const op = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), member, score }),
  fc.record({ kind: fc.constant('delete' as const), member }),
  fc.record({ kind: fc.constant('popMin' as const), count: fc.integer({ min: 0, max: 3 }) }),
);

test('the skip list sorted set agrees with a sorted-array model on order, rank, ranges and score ranges', () => {
  fc.assert(
    fc.property(fc.array(op, { maxLength: 200 }), fc.array(fc.tuple(bound, bound), { maxLength: 5 }), (ops, bounds) => {
      const z = new SortedSet();
      const model = new Map<string, number>();
      for (const o of ops) {
        if (o.kind === 'set') {
          assert.equal(z.set(o.member, o.score), !model.has(o.member));
          model.set(o.member, o.score);
        } else if (o.kind === 'delete') {
          assert.equal(z.delete(o.member), model.delete(o.member));
        } else {
          const expected = modelOrder(model).slice(0, o.count);
          assert.deepEqual(z.popMin(o.count), expected);
          for (const e of expected) model.delete(e.member);
        }
        assert.equal(z.size, model.size);
      }
      const order = modelOrder(model);
      const plain = (xs: Iterable<{ member: string; score: number }>) => [...xs].map((e) => [e.member, e.score]);
      assert.deepEqual(plain(z.entries()), plain(order));
      order.forEach((e, i) => assert.equal(z.rank(e.member), i));
      assert.equal(z.rank('not a member'), undefined);
      for (let s = 0; s <= order.length; s++) {
        for (let e = s; e <= order.length; e++) {
          assert.deepEqual(plain(z.range(s, e)), plain(order.slice(s, e)));
          assert.deepEqual(plain(z.revRange(s, e)), plain(order.slice().reverse().slice(s, e)));
        }
      }
      const inside = (x: number, lo: ScoreBound, hi: ScoreBound) =>
        (lo.exclusive ? x > lo.value : x >= lo.value) && (hi.exclusive ? x < hi.value : x <= hi.value);
      for (const [lo, hi] of bounds) {
        const [s, e] = z.scoreRange(lo, hi);
        assert.deepEqual(plain(z.range(s, e)), plain(order.filter((x) => inside(x.score, lo, hi))));
      }
    }),
    { numRuns: 300 },
  );
});

test('a sorted set of 20,000 members inserted in random order keeps rank and range right', () => {
  const z = new SortedSet();
  const n = 20_000;
  const perm = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  for (const i of perm) z.set(`m${i}`, i);
  assert.equal(z.rank('m12345'), 12345);
  assert.deepEqual(z.range(19_998, 20_000).map((e) => e.member), ['m19998', 'm19999']);
  assert.deepEqual(z.scoreRange({ value: 1000, exclusive: true }, { value: 1010, exclusive: false }), [1001, 1011]);
  for (let i = 0; i < n; i += 2) z.delete(`m${i}`);
  assert.equal(z.rank('m12347'), 6173);
});
