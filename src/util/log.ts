import { pino, type Logger as Pino, type DestinationStream } from 'pino';

/**
 * Logging: one line per event, with levels, and the function and volume an
 * event is about as fields. pino writes the lines (the ecosystem's choice: a
 * JSON line per event, the format log collectors read, cheap when a level is
 * off). `--log-format json` prints pino's lines as they are; `text` (the
 * default, for a person at a terminal) prints
 *   2026-11-30T06:47:28.981Z INFO  guest nbd0: serving export  function=nbd0 volume=nbd-guest
 *
 * Most of the code base logs through a plain `(message) => void` sink (the
 * layers below never import this module); `sink()` adapts a logger to that:
 * the level is taken from the message (failures are warnings) and a leading
 * "guest NAME:", "function NAME:" or "volume NAME:" becomes a field, unless the
 * caller passed the fields itself (the controller does, per function).
 *
 * Writes are synchronous (pino.destination sync): a controller that exits
 * right after a line has written it, and lines from one process never
 * interleave. Logging is off the data path: the controller logs events
 * (starts, stops, crashes, refusals), never per request.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFormat = 'text' | 'json';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
export const LOG_FORMATS: readonly LogFormat[] = ['text', 'json'];

export interface LogFields {
  function?: string;
  volume?: string;
  [key: string]: unknown;
}

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
  /** A `(message, fields?) => void` sink for the modules that take one (level and fields from the message). */
  sink(): (message: string, fields?: LogFields) => void;
}

export interface LoggerOptions {
  format?: LogFormat;
  level?: LogLevel;
  /** Where lines go: a file descriptor (default 1, stdout) or a stream with write(string). */
  destination?: number | { write(s: string): unknown };
}

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** Render one pino JSON line as a text line; anything unexpected passes through unchanged. */
export function textLine(json: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const { time, level, msg, ...fields } = o;
  const when = typeof time === 'string' ? time : new Date(typeof time === 'number' ? time : Date.now()).toISOString();
  const lvl = (typeof level === 'string' ? level.toUpperCase() : LEVEL_NAMES[level as number] ?? String(level)).padEnd(5);
  const extra = Object.entries(fields)
    .map(([k, v]) => `${k}=${typeof v === 'string' && !/[\s"=]/.test(v) ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${when} ${lvl} ${String(msg ?? '')}${extra ? `  ${extra}` : ''}\n`;
}

class TextDestination implements DestinationStream {
  constructor(private readonly out: { write(s: string): unknown }) {}
  write(line: string): void {
    // pino hands over whole lines, each ending in \n.
    this.out.write(textLine(line.endsWith('\n') ? line.slice(0, -1) : line));
  }
}

/** Field names from a message's leading "guest NAME:" / "function NAME:" / "volume NAME:". */
export function fieldsOf(message: string): LogFields {
  const m = /^(guest|function|gateway|volume) ([A-Za-z0-9._-]+):/.exec(message);
  if (!m) return {};
  return m[1] === 'volume' ? { volume: m[2] } : { function: m[2] };
}

/** A message about something going wrong is a warning; everything else is information. */
export function levelOf(message: string): LogLevel {
  return /\b(fail(ed|s|ure)?|errors?|unavailable|broken|crash(ed|es)?|refus(ed|es|ing)|cannot|could not|misbehaving|corrupt(ed)?|lost|killed|timed out|taking longer)\b/i.test(message) ? 'warn' : 'info';
}

class PinoLogger implements Logger {
  constructor(private readonly p: Pino) {}
  debug(message: string, fields?: LogFields): void {
    this.p.debug(fields ?? {}, message);
  }
  info(message: string, fields?: LogFields): void {
    this.p.info(fields ?? {}, message);
  }
  warn(message: string, fields?: LogFields): void {
    this.p.warn(fields ?? {}, message);
  }
  error(message: string, fields?: LogFields): void {
    this.p.error(fields ?? {}, message);
  }
  child(fields: LogFields): Logger {
    return new PinoLogger(this.p.child(fields));
  }
  sink(): (message: string, fields?: LogFields) => void {
    return (message, fields) => this[levelOf(message)](message, { ...fieldsOf(message), ...fields });
  }
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const format = opts.format ?? 'text';
  const dest = opts.destination ?? 1;
  const raw: DestinationStream = typeof dest === 'number' ? pino.destination({ fd: dest, sync: true }) : (dest as DestinationStream);
  const p = pino(
    {
      level: opts.level ?? 'info',
      base: format === 'json' ? { pid: process.pid } : undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    format === 'json' ? raw : new TextDestination(raw),
  );
  return new PinoLogger(p);
}

let root: Logger | undefined;

/** The process's logger (text at info on stdout until the CLI sets one from its options). */
export function rootLogger(): Logger {
  return (root ??= createLogger());
}

export function setRootLogger(l: Logger): void {
  root = l;
}
