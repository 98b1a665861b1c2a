import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger, fieldsOf, levelOf, textLine } from '../../src/util/log.ts';

/** Logs: levels, JSON for collectors, text for people, function and volume as fields. */
function capture(format: 'json' | 'text', level: 'debug' | 'info' | 'warn' | 'error' = 'info') {
  const lines: string[] = [];
  const logger = createLogger({ format, level, destination: { write: (s: string) => lines.push(s) } });
  return { logger, lines };
}

test('json format writes one parseable line per event with level, time, message and the fields given', () => {
  const { logger, lines } = capture('json');
  logger.info('guest nbd0: serving', { function: 'nbd0', volume: 'v' });
  logger.child({ function: 'db0' }).warn('slow');
  assert.equal(lines.length, 2);
  const a = JSON.parse(lines[0]!);
  assert.equal(a.level, 'info');
  assert.equal(a.msg, 'guest nbd0: serving');
  assert.equal(a.function, 'nbd0');
  assert.equal(a.volume, 'v');
  assert.match(a.time, /^\d{4}-\d\d-\d\dT/);
  assert.equal(JSON.parse(lines[1]!).function, 'db0');
});

test('events below the level are not written', () => {
  const { logger, lines } = capture('json', 'warn');
  logger.info('quiet');
  logger.debug('quieter');
  logger.error('loud');
  assert.deepEqual(lines.map((l) => JSON.parse(l).msg), ['loud']);
});

test('the message sink takes the level from the words and the names from the prefix', () => {
  const { logger, lines } = capture('json');
  const sink = logger.sink();
  sink('guest g1: crashed (exit 1); restarting in 100 ms');
  sink('volume v1: created, 4096 bytes (thin)');
  sink('function f: deployed at runtime', { function: 'f', volume: 'vv' });
  const [a, b, c] = lines.map((l) => JSON.parse(l));
  assert.deepEqual([a.level, a.function, a.volume], ['warn', 'g1', undefined]);
  assert.deepEqual([b.level, b.volume], ['info', 'v1']);
  assert.deepEqual([c.level, c.function, c.volume], ['info', 'f', 'vv']);
  assert.deepEqual(fieldsOf('nbd: closing'), {});
  assert.equal(levelOf('could not start'), 'warn');
  assert.equal(levelOf('serving export'), 'info');
});

test('text format prints time, level, message and fields on one line', () => {
  const { logger, lines } = capture('text');
  logger.warn('guest x: crashed', { function: 'x', volume: 'v 1' });
  assert.match(lines[0]!, /^\d{4}-\d\d-\d\dT[\d:.]+Z WARN  guest x: crashed  function=x volume="v 1"\n$/);
  assert.equal(textLine('not json'), 'not json');
});
