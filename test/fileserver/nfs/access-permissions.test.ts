/**
 * Permission checks on every NFSv3 procedure with AUTH_SYS semantics: owner,
 * group (primary and auxiliary gids), other; PERM for owner-only operations,
 * ACCES for mode-bit denials (RFC 1813). Root is not squashed on this server so
 * an administrator client can lay out root-owned fixtures; squashing has its
 * own tests in access-export.test.ts.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { NfsClient } from './helpers/nfs-client.ts';
import type { Cred } from './helpers/rpc-client.ts';
import { startMemoryServer, PROTOCOL_TEST_EXPORT } from './helpers/server.ts';

const OK = 0, PERM = 1, ACCES = 13;
const ROOT: Cred = { flavor: 1, uid: 0, gid: 0 };
const ALICE: Cred = { flavor: 1, uid: 1000, gid: 1000 };
const BOB: Cred = { flavor: 1, uid: 1001, gid: 1001 };
// ACCESS3 bits.
const READ = 1, LOOKUP = 2, MODIFY = 4, EXTEND = 8, DELETE = 16, EXECUTE = 32;

async function setup(t: TestContext) {
  const s = await startMemoryServer({ export: PROTOCOL_TEST_EXPORT });
  const c = await NfsClient.connect(s.port);
  t.after(async () => {
    await c.close();
    await s.server.stop();
  });
  const root = await c.root();
  /** Run `fn` as `cred`, then go back to root. */
  const as = async <T>(cred: Cred, fn: () => Promise<T>): Promise<T> => {
    c.cred = cred;
    try {
      return await fn();
    } finally {
      c.cred = ROOT;
    }
  };
  /** A file created by root, then given owner and mode. */
  const file = async (dir: Buffer, name: string, mode: number, owner = { uid: 0, gid: 0 }, content = 'secret') => {
    const fh = (await c.create(dir, name, 1, { mode: 0o600 })).fh!;
    assert.equal((await c.write(fh, 0, Buffer.from(content))).status, OK);
    assert.equal((await c.setattr(fh, { mode, ...owner })).status, OK);
    return fh;
  };
  const dir = async (parent: Buffer, name: string, mode: number, owner = { uid: 0, gid: 0 }) => {
    const fh = (await c.mkdir(parent, name)).fh!;
    assert.equal((await c.setattr(fh, { mode, ...owner })).status, OK);
    return fh;
  };
  return { ...s, c, root, as, file, dir };
}

test('uid 1000 can neither read nor overwrite nor truncate a root-owned 0600 file', async (t) => {
  const { c, root, as, file } = await setup(t);
  const fh = await file(root, 'shadow', 0o600);
  await as(ALICE, async () => {
    assert.equal((await c.read(fh, 0, 100)).status, ACCES);
    assert.equal((await c.write(fh, 0, Buffer.from('pwned'))).status, ACCES);
    assert.equal((await c.setattr(fh, { size: 0 })).status, ACCES);
    assert.equal((await c.commit(fh)).status, ACCES);
  });
  const r = await c.read(fh, 0, 100);
  assert.deepEqual([r.status, r.data?.toString()], [OK, 'secret'], 'root still reads the untouched content');
});

test('chown by a non-root caller is PERM, for its own file and for root\'s', async (t) => {
  const { c, root, as, file } = await setup(t);
  const roots = await file(root, 'r', 0o666);
  const own = await file(root, 'a', 0o644, { uid: 1000, gid: 1000 });
  await as(ALICE, async () => {
    assert.equal((await c.setattr(roots, { uid: 1000 })).status, PERM);
    assert.equal((await c.setattr(own, { uid: 1001 })).status, PERM);
    assert.equal((await c.setattr(own, { uid: 0 })).status, PERM);
  });
  assert.deepEqual([(await c.getattr(roots)).attr!.uid, (await c.getattr(own)).attr!.uid], [0, 1000]);
  assert.equal((await c.setattr(own, { uid: 1001 })).status, OK, 'root may chown');
});

test('chmod 4777 by a non-owner is PERM and the mode stays', async (t) => {
  const { c, root, as, file } = await setup(t);
  const fh = await file(root, 'f', 0o600);
  assert.equal((await as(ALICE, () => c.setattr(fh, { mode: 0o4777 }))).status, PERM);
  assert.equal((await c.getattr(fh)).attr!.mode, 0o600);
  const own = await file(root, 'g', 0o600, { uid: 1000, gid: 1000 });
  assert.equal((await as(ALICE, () => c.setattr(own, { mode: 0o4755 }))).status, OK, 'the owner may');
  assert.equal((await c.getattr(own)).attr!.mode, 0o4755);
});

test('creating anything in a root-owned 0700 directory as another uid is ACCES', async (t) => {
  const { c, root, as, dir, file } = await setup(t);
  const priv = await dir(root, 'priv', 0o700);
  const mine = await file(root, 'mine', 0o644, { uid: 1000, gid: 1000 });
  await as(ALICE, async () => {
    assert.equal((await c.create(priv, 'x', 0)).status, ACCES);
    assert.equal((await c.create(priv, 'x', 2, Buffer.alloc(8, 1))).status, ACCES);
    assert.equal((await c.mkdir(priv, 'd')).status, ACCES);
    assert.equal((await c.symlink(priv, 'l', '/etc/passwd')).status, ACCES);
    assert.equal((await c.mknod(priv, 'n')).status, ACCES);
    assert.equal((await c.link(mine, priv, 'hard')).status, ACCES);
    assert.equal((await c.rename(root, 'mine', priv, 'moved')).status, ACCES);
  });
  assert.deepEqual((await c.readdir(priv)).entries, [], 'nothing appeared');
});

test('LOOKUP needs search (x) on the directory and READDIR needs read (r)', async (t) => {
  const { c, root, as, dir, file } = await setup(t);
  const noSearch = await dir(root, 'listonly', 0o744);
  await file(noSearch, 'inner', 0o644);
  const noRead = await dir(root, 'searchonly', 0o711);
  await file(noRead, 'known', 0o644);
  await as(ALICE, async () => {
    assert.equal((await c.lookup(noSearch, 'inner')).status, ACCES);
    const listed = await c.readdir(noSearch);
    assert.deepEqual([listed.status, listed.entries.map((e) => e.name)], [OK, ['inner']]);
    const plus = await c.readdirplus(noSearch);
    assert.equal(plus.status, OK);
    assert.deepEqual(plus.entries.map((e) => [e.name, e.fh, e.attr]), [['inner', undefined, undefined]], 'no handles without search permission');
    assert.equal((await c.readdir(noRead)).status, ACCES);
    assert.equal((await c.readdirplus(noRead)).status, ACCES);
    assert.equal((await c.lookup(noRead, 'known')).status, OK, 'search without read still finds a known name');
  });
});

test('group members get the group bits through the primary or an auxiliary gid; others get the other bits', async (t) => {
  const { c, root, as, file } = await setup(t);
  const fh = await file(root, 'team', 0o640, { uid: 0, gid: 500 });
  assert.equal((await as({ flavor: 1, uid: 1000, gid: 500 }, () => c.read(fh, 0, 10))).status, OK);
  assert.equal((await as({ flavor: 1, uid: 1000, gid: 1000, gids: [7, 500] }, () => c.read(fh, 0, 10))).status, OK);
  assert.equal((await as({ flavor: 1, uid: 1000, gid: 500 }, () => c.write(fh, 0, Buffer.from('x')))).status, ACCES);
  assert.equal((await as(ALICE, () => c.read(fh, 0, 10))).status, ACCES);
  // The owner class applies to the owner even when the group or other bits would give more.
  const odd = await file(root, 'odd', 0o077, { uid: 1000, gid: 1000 });
  assert.equal((await as(BOB, () => c.read(odd, 0, 10))).status, OK);
  assert.equal((await as(ALICE, () => c.access(odd, READ))).access, 0);
});

test('the owner may chgrp only to a group it is in (PERM otherwise); a non-owner never', async (t) => {
  const { c, root, as, file } = await setup(t);
  const fh = await file(root, 'g', 0o644, { uid: 1000, gid: 1000 });
  const alice: Cred = { flavor: 1, uid: 1000, gid: 1000, gids: [42] };
  assert.equal((await as(alice, () => c.setattr(fh, { gid: 43 }))).status, PERM);
  assert.equal((await as(alice, () => c.setattr(fh, { gid: 42 }))).status, OK);
  assert.equal((await c.getattr(fh)).attr!.gid, 42);
  assert.equal((await as({ flavor: 1, uid: 1001, gid: 42 }, () => c.setattr(fh, { gid: 42 }))).status, PERM);
});

test('a non-root chmod that sets setgid on a file whose group the caller is not in drops setgid', async (t) => {
  const { c, root, as, file } = await setup(t);
  const fh = await file(root, 'sgid', 0o644, { uid: 1000, gid: 77 });
  assert.equal((await as(ALICE, () => c.setattr(fh, { mode: 0o2755 }))).status, OK);
  assert.equal((await c.getattr(fh)).attr!.mode, 0o755);
  assert.equal((await as({ ...ALICE, gids: [77] }, () => c.setattr(fh, { mode: 0o2755 }))).status, OK);
  assert.equal((await c.getattr(fh)).attr!.mode, 0o2755, 'kept for a member of the group');
});

test('a write by anyone but root clears setuid and setgid, a write by root keeps them', async (t) => {
  const { c, root, as, file } = await setup(t);
  const fh = await file(root, 'suid', 0o6777, { uid: 0, gid: 0 });
  assert.equal((await c.write(fh, 0, Buffer.from('root'))).status, OK);
  assert.equal((await c.getattr(fh)).attr!.mode, 0o6777);
  const w = await as(ALICE, () => c.write(fh, 0, Buffer.from('user')));
  assert.equal(w.status, OK);
  assert.equal(w.wcc.after!.mode, 0o777);
  assert.equal((await c.getattr(fh)).attr!.mode, 0o777);
});

test('in a sticky directory only the entry\'s owner, the directory\'s owner or root may remove or rename it (PERM)', async (t) => {
  const { c, root, as, dir, file } = await setup(t);
  const tmp = await dir(root, 'tmp', 0o1777);
  await file(tmp, 'alices', 0o644, { uid: 1000, gid: 1000 });
  await file(tmp, 'alices2', 0o644, { uid: 1000, gid: 1000 });
  await as(BOB, async () => {
    assert.equal((await c.remove(tmp, 'alices')).status, PERM);
    assert.equal((await c.rename(tmp, 'alices', tmp, 'bobs')).status, PERM);
    assert.equal((await c.create(tmp, 'bobs', 0)).status, OK, 'anyone may create');
    assert.equal((await c.rename(tmp, 'bobs', tmp, 'alices2')).status, PERM, 'nor replace someone else\'s entry');
  });
  assert.equal((await as(ALICE, () => c.remove(tmp, 'alices'))).status, OK);
  assert.equal((await c.remove(tmp, 'bobs')).status, OK);
});

test('removing needs write and search on the directory (ACCES), not on the file', async (t) => {
  const { c, root, as, dir, file } = await setup(t);
  const ro = await dir(root, 'ro', 0o755, { uid: 1000, gid: 1000 });
  await file(ro, 'f', 0o666);
  assert.equal((await as(BOB, () => c.remove(ro, 'f'))).status, ACCES);
  const rw = await dir(root, 'rw', 0o777);
  await file(rw, 'g', 0o600);
  const sub = await dir(rw, 'sub', 0o700);
  assert.equal((await as(BOB, () => c.remove(rw, 'g'))).status, OK, 'a root-owned 0600 file in a 0777 directory');
  assert.equal((await as(BOB, () => c.rmdir(rw, 'sub'))).status, OK);
  assert.ok(sub);
});

test('a directory moved to another parent needs write on itself; a rename within its parent does not', async (t) => {
  const { c, root, as, dir } = await setup(t);
  const a = await dir(root, 'a', 0o777);
  const b = await dir(root, 'b', 0o777);
  await dir(a, 'roots', 0o755);
  assert.equal((await as(ALICE, () => c.rename(a, 'roots', b, 'roots'))).status, ACCES);
  assert.equal((await as(ALICE, () => c.rename(a, 'roots', a, 'renamed'))).status, OK);
});

test('hard links need ownership or read and write access to the file (PERM)', async (t) => {
  const { c, root, as, dir, file } = await setup(t);
  const open = await dir(root, 'open', 0o777);
  const shadow = await file(root, 'shadow', 0o600);
  const mine = await file(root, 'mine', 0o600, { uid: 1000, gid: 1000 });
  assert.equal((await as(ALICE, () => c.link(shadow, open, 'grab'))).status, PERM);
  assert.equal((await as(ALICE, () => c.link(mine, open, 'mine'))).status, OK);
});

test('only the owner may set arbitrary times (PERM); anyone who may write may set them to now', async (t) => {
  const { c, root, as, file } = await setup(t);
  const fh = await file(root, 't', 0o666);
  assert.equal((await as(ALICE, () => c.setattr(fh, { mtime: [1000, 0] }))).status, PERM);
  assert.equal((await as(ALICE, () => c.setattr(fh, { mtime: 'server', atime: 'server' }))).status, OK);
  const ro = await file(root, 'ro', 0o644);
  assert.equal((await as(ALICE, () => c.setattr(ro, { mtime: 'server' }))).status, ACCES);
  const own = await file(root, 'own', 0o444, { uid: 1000, gid: 1000 });
  assert.equal((await as(ALICE, () => c.setattr(own, { mtime: [1000, 0] }))).status, OK);
});

test('the owner may write a file it created read-only (knfsd owner override), others may not', async (t) => {
  const { c, root, as } = await setup(t);
  const fh = await as(ALICE, async () => {
    const r = await c.create(root, 'readonly', 1, { mode: 0o444, size: 0 });
    assert.equal(r.status, OK);
    assert.equal((await c.write(r.fh!, 0, Buffer.from('object'))).status, OK);
    return r.fh!;
  });
  assert.equal((await as(BOB, () => c.write(fh, 0, Buffer.from('x')))).status, ACCES);
  assert.equal((await c.read(fh, 0, 10)).data?.toString(), 'object');
});

test('CREATE UNCHECKED over another user\'s existing file cannot truncate it', async (t) => {
  const { c, root, as, file } = await setup(t);
  await file(root, 'victim', 0o644);
  assert.equal((await as(ALICE, () => c.create(root, 'victim', 0, { size: 0 }))).status, ACCES);
  const fh = (await c.lookup(root, 'victim')).fh!;
  assert.equal((await c.getattr(fh)).attr!.size, 6n);
});

test('new objects belong to the caller, and a client-chosen owner is PERM unless the caller is root', async (t) => {
  const { c, root, as } = await setup(t);
  const r = await as({ ...ALICE, gids: [5] }, () => c.create(root, 'new', 0, { mode: 0o600 }));
  assert.deepEqual([r.status, r.attr!.uid, r.attr!.gid], [OK, 1000, 1000]);
  assert.equal((await as(ALICE, () => c.create(root, 'forged', 0, { uid: 0 }))).status, PERM);
  assert.equal((await as(ALICE, () => c.mkdir(root, 'forged', { gid: 0 }))).status, PERM);
  assert.equal((await as({ ...ALICE, gids: [5] }, () => c.mkdir(root, 'grp', { gid: 5 }))).attr!.gid, 5);
  assert.equal((await c.create(root, 'given', 0, { uid: 7, gid: 8 })).attr!.uid, 7, 'root may');
});

test('a setgid directory gives new entries its group, and its setgid to new subdirectories', async (t) => {
  const { c, root, as, dir } = await setup(t);
  const shared = await dir(root, 'shared', 0o2777, { uid: 0, gid: 300 });
  const f = await as(ALICE, () => c.create(shared, 'f', 0, { mode: 0o644 }));
  assert.deepEqual([f.attr!.uid, f.attr!.gid], [1000, 300]);
  const d = await as(ALICE, () => c.mkdir(shared, 'd', { mode: 0o755 }));
  assert.deepEqual([d.attr!.gid, d.attr!.mode], [300, 0o2755]);
});

test('ACCESS answers what the procedures allow, for owner, group, other and root', async (t) => {
  const { c, root, as, file, dir } = await setup(t);
  const all = READ | LOOKUP | MODIFY | EXTEND | DELETE | EXECUTE;
  const fh = await file(root, 'f', 0o750, { uid: 1000, gid: 500 });
  assert.equal((await as(ALICE, () => c.access(fh, all))).access, READ | MODIFY | EXTEND | EXECUTE);
  assert.equal((await as({ flavor: 1, uid: 2, gid: 2, gids: [500] }, () => c.access(fh, all))).access, READ | EXECUTE);
  assert.equal((await as(BOB, () => c.access(fh, all))).access, 0);
  assert.equal((await c.access(fh, all)).access, READ | MODIFY | EXTEND | EXECUTE);
  const priv = await dir(root, 'priv', 0o700);
  assert.equal((await as(ALICE, () => c.access(priv, all))).access, 0);
  assert.equal((await c.access(priv, all)).access, READ | LOOKUP | MODIFY | EXTEND | DELETE);
  const noexec = await file(root, 'data', 0o666);
  assert.equal((await c.access(noexec, EXECUTE)).access, 0, 'root executes only what someone may execute');
  // And the answers hold: what ACCESS denies, the procedure denies.
  assert.equal((await as(BOB, () => c.read(fh, 0, 1))).status, ACCES);
  assert.equal((await as(ALICE, () => c.create(priv, 'x', 0))).status, ACCES);
});

test('READLINK needs read permission on the link', async (t) => {
  const { c, root, as } = await setup(t);
  const l = (await c.symlink(root, 'l', 'target')).fh!;
  assert.equal((await c.setattr(l, { mode: 0o700 })).status, OK);
  assert.equal((await as(ALICE, () => c.readlink(l))).status, ACCES);
  assert.equal((await c.readlink(l)).target, 'target');
});
