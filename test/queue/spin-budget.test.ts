import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SpinBudget } from '../../src/queue/spin-budget.ts';

test('a budget whose max equals its base never changes', () => {
  const b = new SpinBudget(50);
  b.slept(10);
  b.slept(1e6);
  assert.equal(b.us, 50);
});

test('short sleeps double the budget up to max', () => {
  const b = new SpinBudget(50, 300);
  b.slept(100);
  assert.equal(b.us, 100);
  b.slept(100);
  assert.equal(b.us, 200);
  b.slept(100);
  assert.equal(b.us, 300);
  b.slept(100);
  assert.equal(b.us, 300);
});

test('sleeps longer than max halve the budget down to base', () => {
  const b = new SpinBudget(50, 400);
  for (let i = 0; i < 3; i++) b.slept(10);
  assert.equal(b.us, 400);
  b.slept(5000);
  assert.equal(b.us, 200);
  for (let i = 0; i < 5; i++) b.slept(5000);
  assert.equal(b.us, 50);
  assert.equal(b.ms, 0.05);
});

test('a zero base still grows from short sleeps', () => {
  const b = new SpinBudget(0, 8);
  b.slept(1);
  assert.equal(b.us, 1);
  b.slept(1);
  assert.equal(b.us, 2);
});

test('a max below the base is rejected', () => {
  assert.throws(() => new SpinBudget(100, 50), RangeError);
});
