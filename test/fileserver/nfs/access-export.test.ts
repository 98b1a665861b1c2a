/**
 * The export's rules: root squash (default), all squash, AUTH_NONE policy, the
 * client address list, and validation of the options that set them.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { NfsClient, MOUNT, NFS } from './helpers/nfs-client.ts';
import type { Cred } from './helpers/rpc-client.ts';
import { startMemoryServer } from './helpers/server.ts';
import { DEFAULT_EXPORT, ExportPolicy, parseExportOptions, peerAddress, type ExportOptions } from '../../../src/functions/fileserver/nfs/export.ts';
import { HandleCodec } from '../../../src/functions/fileserver/nfs/handle.ts';
import { parseFileServerOptions } from '../../../src/functions/fileserver/index.ts';

const OK = 0, ACCES = 13;
const ROOT: Cred = { flavor: 1, uid: 0, gid: 0 };
const ALICE: Cred = { flavor: 1, uid: 1000, gid: 1000 };
const KEY = Buffer.alloc(32, 0x42);

async function setup(t: TestContext, options: Partial<ExportOptions> = {}) {
  const s = await startMemoryServer({ export: { ...DEFAULT_EXPORT, ...options }, handleKey: KEY });
  const c = await NfsClient.connect(s.port);
  t.after(async () => {
    await c.close();
    await s.server.stop();
  });
  return { ...s, c };
}

test('root squash is the default: uid 0 creates a file owned by 65534:65534', async (t) => {
  const { c } = await setup(t);
  c.cred = ROOT;
  const r = await c.create(await c.root(), 'squashed', 0, { mode: 0o644 });
  assert.deepEqual([r.status, r.attr!.uid, r.attr!.gid], [OK, 65534, 65534]);
});

test('a squashed root cannot read a 0600 file of another user, nor chown, nor chmod it', async (t) => {
  const { c } = await setup(t);
  const root = await c.root();
  c.cred = ALICE;
  const fh = (await c.create(root, 'alice', 0, { mode: 0o600 })).fh!;
  await c.write(fh, 0, Buffer.from('private'));
  c.cred = ROOT;
  assert.equal((await c.read(fh, 0, 10)).status, ACCES);
  assert.equal((await c.write(fh, 0, Buffer.from('x'))).status, ACCES);
  assert.equal((await c.setattr(fh, { uid: 0 })).status, 1);
  assert.equal((await c.setattr(fh, { mode: 0o4777 })).status, 1);
});

test('gid 0 is squashed too: a root-group-only file is out of reach of gid 0 callers', async (t) => {
  const { c, fs } = await setup(t);
  const root = await c.root();
  c.cred = ALICE;
  const fh = (await c.create(root, 'g', 0, { mode: 0o640 })).fh!;
  // Only the filesystem can hand this file to group 0 here: every NFS chgrp to 0 is squashed or PERM.
  const { ino, gen } = new HandleCodec(fs.fsid, KEY).decode(fh);
  await fs.setattr(ino, gen, { gid: 0 });
  c.cred = { flavor: 1, uid: 2000, gid: 0 };
  assert.equal((await c.read(fh, 0, 1)).status, ACCES);
  c.cred = { flavor: 1, uid: 2000, gid: 5, gids: [0] };
  assert.equal((await c.read(fh, 0, 1)).status, ACCES);
});

test('rootSquash: false lets uid 0 act as root; anonUid/anonGid choose the squashed identity', async (t) => {
  const plain = await setup(t, { rootSquash: false });
  const r = await plain.c.create(await plain.c.root(), 'f', 0);
  assert.deepEqual([r.attr!.uid, r.attr!.gid], [0, 0]);
  const anon = await setup(t, { anonUid: 4242, anonGid: 4343 });
  const a = await anon.c.create(await anon.c.root(), 'f', 0);
  assert.deepEqual([a.attr!.uid, a.attr!.gid], [4242, 4343]);
});

test('allSquash maps every caller to the anonymous identity', async (t) => {
  const { c } = await setup(t, { allSquash: true });
  const root = await c.root();
  c.cred = ALICE;
  const r = await c.create(root, 'f', 0);
  assert.deepEqual([r.attr!.uid, r.attr!.gid], [65534, 65534]);
});

test('AUTH_NONE is refused by default: MNT is MOUNT3ERR_ACCES, NFS calls are ACCES, NULL still answers', async (t) => {
  const { c } = await setup(t);
  const root = await c.root();
  c.cred = { flavor: 0 };
  assert.equal((await c.mount('/export')).status, ACCES);
  assert.equal((await c.getattr(root)).status, ACCES);
  assert.equal((await c.lookup(root, 'x')).status, ACCES);
  assert.equal((await c.readdir(root)).status, ACCES);
  assert.equal((await c.create(root, 'x', 0)).status, ACCES);
  const nul = await c.rpc.call(NFS, 3, 0, undefined, { flavor: 0 });
  assert.deepEqual([nul.replyStat, nul.stat], [0, 0]);
});

test('authNone: "read-only" lets AUTH_NONE read what others may read, as 65534, and change nothing', async (t) => {
  const { c } = await setup(t, { authNone: 'read-only' });
  const root = await c.root();
  c.cred = ALICE;
  const pub = (await c.create(root, 'public', 0, { mode: 0o644 })).fh!;
  await c.write(pub, 0, Buffer.from('hello'));
  const priv = (await c.create(root, 'private', 0, { mode: 0o600 })).fh!;
  c.cred = { flavor: 0 };
  const m = await c.mount('/export');
  assert.deepEqual([m.status, m.flavors], [OK, [1, 0]]);
  assert.equal((await c.read(pub, 0, 10)).data?.toString(), 'hello');
  assert.equal((await c.read(priv, 0, 10)).status, ACCES);
  assert.equal((await c.lookup(root, 'public')).status, OK);
  assert.equal((await c.readdir(root)).entries.length, 2);
  assert.equal((await c.create(root, 'anon', 0)).status, ACCES, 'root is 0777 but the caller is read-only');
  assert.equal((await c.write(pub, 0, Buffer.from('x'))).status, ACCES);
  assert.equal((await c.setattr(pub, { mode: 0o777 })).status, ACCES);
  assert.equal((await c.remove(root, 'public')).status, ACCES);
  assert.equal((await c.access(root, 0x3f)).access, 1 | 2, 'ACCESS grants read and lookup only');
});

test('a peer off the client list gets MOUNT3ERR_ACCES on MNT and NFS3ERR_ACCES on every NFS call', async (t) => {
  const { c, fs } = await setup(t, { clients: ['10.0.0.0/8', 'fd00::/8'] });
  assert.equal((await c.mount('/export')).status, ACCES);
  // A handle it could only have got elsewhere (or forged with the key): still refused.
  const rootFh = new HandleCodec(fs.fsid, KEY).encode(fs.rootIno, (await fs.getattr(fs.rootIno, 1)).generation);
  assert.equal((await c.getattr(rootFh)).status, ACCES);
  assert.equal((await c.readdir(rootFh)).status, ACCES);
  assert.equal((await c.create(rootFh, 'x', 0)).status, ACCES);
  assert.equal((await c.fsinfo(rootFh)).status, ACCES);
  // DUMP does not tell it who else mounted.
  const dump = (await c.rpc.call(MOUNT, 3, 2)).body;
  assert.equal(dump.bool(), false);
  assert.deepEqual(await fs.readdir(fs.rootIno, 1, 0, 10), { entries: [], eof: true });
});

test('a peer on the client list, as an address or inside a CIDR, is served', async (t) => {
  for (const clients of [['127.0.0.1'], ['10.0.0.0/8', '127.0.0.0/24'], ['*']]) {
    const { c } = await setup(t, { clients });
    assert.equal((await c.mount('/export')).status, OK, clients.join(','));
  }
});

test('the client list matches IPv4, IPv4-mapped IPv6 and IPv6 peers by address and prefix', () => {
  const p = new ExportPolicy({ ...DEFAULT_EXPORT, clients: ['192.168.1.0/24', '2001:db8::/32', '10.1.2.3'] });
  assert.equal(p.allows('192.168.1.77:900'), true);
  assert.equal(p.allows('192.168.2.1:900'), false);
  assert.equal(p.allows('::ffff:192.168.1.5:900'), true);
  assert.equal(p.allows('2001:db8::1:2049'), true);
  assert.equal(p.allows('2001:db9::1:2049'), false);
  assert.equal(p.allows('10.1.2.3:1'), true);
  assert.equal(p.allows('10.1.2.4:1'), false);
  assert.equal(p.allows('undefined:undefined'), false, 'a socket that lost its peer is refused');
  const def = new ExportPolicy(DEFAULT_EXPORT);
  assert.equal(def.allows('127.0.0.1:700'), true);
  assert.equal(def.allows('127.5.6.7:700'), true);
  assert.equal(def.allows('::1:700'), true);
  assert.equal(def.allows('::ffff:127.0.0.1:700'), true);
  assert.equal(def.allows('192.0.2.1:700'), false, 'the default export is loopback only');
  assert.equal(peerAddress('::ffff:10.0.0.1:2049'), '10.0.0.1');
});

test('export options are validated with errors naming the field', () => {
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ clients: [] }, /options\.clients must be a non-empty array/],
    [{ clients: '127.0.0.1' }, /options\.clients must be/],
    [{ clients: ['127.0.0.1', 'example.com'] }, /options\.clients\[1\] must be an IPv4\/IPv6 address/],
    [{ clients: ['10.0.0.0/33'] }, /options\.clients\[0\]/],
    [{ clients: ['::1/129'] }, /options\.clients\[0\]/],
    [{ rootSquash: 'yes' }, /options\.rootSquash must be true or false/],
    [{ allSquash: 1 }, /options\.allSquash must be true or false/],
    [{ anonUid: -1 }, /options\.anonUid must be an integer id/],
    [{ anonGid: 2 ** 32 }, /options\.anonGid must be an integer id/],
    [{ authNone: 'allow' }, /options\.authNone must be "refuse" or "read-only"/],
  ];
  for (const [raw, re] of bad) assert.throws(() => parseExportOptions(raw), re, JSON.stringify(raw));
  assert.throws(() => parseFileServerOptions({ rootsquash: false }), /unknown option "rootsquash"/);
  assert.deepEqual(parseExportOptions({ clients: ['*'], rootSquash: false, anonUid: 0, authNone: 'read-only' }), {
    ...DEFAULT_EXPORT,
    clients: ['*'],
    rootSquash: false,
    anonUid: 0,
    authNone: 'read-only',
  });
});
