import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fsCodeOf, type FsErrorCode } from '../../../src/functions/fileserver/fs/types.ts';
import { nfsStatusOf } from '../../../src/functions/fileserver/nfs/errors.ts';
import { NfsStat3 } from '../../../src/functions/fileserver/nfs/constants.ts';
import { fsCorrupt, fsError, internalError, ioError, nfsRefused, noSpace, readOnly, outOfRange, shutDown } from '../../../src/util/errors.ts';

test('every filesystem refusal (SV_ERR_FS_<code>) maps to the NFS3ERR_* of the same name with its RFC 1813 value', () => {
  const expected: Record<FsErrorCode, number> = {
    PERM: 1, NOENT: 2, IO: 5, ACCES: 13, EXIST: 17, XDEV: 18, NOTDIR: 20, ISDIR: 21, INVAL: 22, FBIG: 27, NOSPC: 28,
    ROFS: 30, MLINK: 31, NAMETOOLONG: 63, NOTEMPTY: 66, STALE: 70, BADHANDLE: 10001, NOTSUPP: 10004, SERVERFAULT: 10006,
  };
  for (const [code, value] of Object.entries(expected)) {
    const e = fsError(code, 'x');
    assert.equal(e.code, `SV_ERR_FS_${code}`);
    assert.equal(fsCodeOf(e), code);
    assert.equal(nfsStatusOf(e), value, code);
  }
});

test('block device errors map by errno and anything else is SERVERFAULT', () => {
  assert.equal(nfsStatusOf(noSpace('full')), NfsStat3.NOSPC);
  assert.equal(nfsStatusOf(readOnly('dev')), NfsStat3.ROFS);
  assert.equal(nfsStatusOf(ioError('bad sector')), NfsStat3.IO);
  assert.equal(nfsStatusOf(shutDown('dev')), NfsStat3.IO);
  assert.equal(nfsStatusOf(outOfRange(0, 1, 0)), NfsStat3.INVAL);
  assert.equal(nfsStatusOf(nfsRefused('BAD_COOKIE', 'x')), NfsStat3.BAD_COOKIE);
  assert.equal(nfsStatusOf(fsCorrupt('bad inode')), NfsStat3.IO);
  assert.equal(nfsStatusOf(internalError('invariant')), NfsStat3.SERVERFAULT);
  assert.equal(nfsStatusOf(new TypeError('bug')), NfsStat3.SERVERFAULT);
  assert.equal(nfsStatusOf('a string'), NfsStat3.SERVERFAULT);
});
