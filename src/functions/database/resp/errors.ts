/**
 * THE error mapper of the RESP front end: an error becomes one RESP error
 * line. Commands answer their own refusals (ERR syntax, WRONGTYPE, EXECABORT,
 * ...) as ErrorReply values and never throw them; what reaches here is either
 * the log's write failure (SV_ERR_DB_LOG_FAILED: MISCONF, as redis-server
 * answers after a failed AOF write) or a bug in a command (ERR internal error).
 */
import { StorvisorError } from '../../../util/errors.ts';
import { ErrorReply } from './writer.ts';

/**
 * `refusingWrite`: the reply to a write command refused up front because the
 * log failed earlier (redis-server's "commands that may modify the data set
 * are disabled"); otherwise the reply to the command that failed or whose
 * write did not become durable.
 */
export function respErrorOf(err: unknown, refusingWrite = false): ErrorReply {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof StorvisorError && err.code === 'SV_ERR_DB_LOG_FAILED') {
    return new ErrorReply(
      refusingWrite
        ? `MISCONF Errors writing to the volume, commands that may modify the data set are disabled: ${message}`
        : `MISCONF Errors writing to the volume: ${message}`,
    );
  }
  return new ErrorReply(`ERR internal error: ${message}`);
}
