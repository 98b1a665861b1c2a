/** Dedup-specific failures, as StorvisorErrors with stable codes (util/errors.ts holds the shared ones). */
import { StorvisorError, errnoOf } from '../../util/errors.ts';

/** A metadata block failed its checksum or identity check: reported, never served. */
export const corruptMetadata = (what: string, blockNo: number, why: string) =>
  new StorvisorError('SV_ERR_DEDUP_CORRUPT', 'EIO', `dedup: ${what} at backing block ${blockNo} is corrupt (${why})`);

/** A data block or fragment could not be decoded. */
export const corruptData = (lbn: number, why: string) =>
  new StorvisorError('SV_ERR_DEDUP_CORRUPT', 'EIO', `dedup: data of logical block ${lbn} is unreadable (${why})`);

/** An earlier failure left in-memory metadata unsafe; the volume refuses I/O until reopened (journal replay). */
export const volumeBroken = (cause: unknown) =>
  new StorvisorError('SV_ERR_DEDUP_BROKEN', 'EIO', `dedup: volume stopped after an I/O failure; reopen it to recover from the journal`, { cause });

/** A backing-device failure that left the metadata untouched: reported with the device's errno. */
export const backingFailure = (cause: unknown) =>
  new StorvisorError('SV_ERR_IO', errnoOf(cause), `dedup: backing volume: ${(cause as Error)?.message ?? String(cause)}`, { cause });
