import assert from 'node:assert/strict';
import { NfsClient } from './nfs-client.ts';

/**
 * The crash load shared by the file-server guest crash tests (local volume and
 * RBD): four files written with FILE_SYNC in 16 KiB chunks until the guest is
 * killed, then every acknowledged byte checked after the restart.
 */
export const CHUNK = 16 * 1024;

/** A chunk that says which file and which offset it belongs to. */
export function pattern(file: number, offset: number): Buffer {
  const b = Buffer.alloc(CHUNK);
  for (let i = 0; i < CHUNK; i += 8) b.writeUInt32BE(file, i), b.writeUInt32BE((offset + i) >>> 0, i + 4);
  return b;
}

/** Write until `kill` has been called after `killAfter` stable writes; returns the bytes acknowledged per file. */
export async function writeUntilKilled(port: number, killAfter: number, kill: () => void): Promise<{ acked: Map<string, number>; killed: boolean }> {
  const client = await NfsClient.connect(port);
  const root = await client.root();
  const acked = new Map<string, number>();
  let total = 0;
  let killed = false;
  await Promise.all(
    Array.from({ length: 4 }, async (_, f) => {
      const name = `file-${f}`;
      try {
        const created = await client.create(root, name, 1, { mode: 0o644 });
        assert.equal(created.status, 0);
        acked.set(name, 0);
        for (let off = 0; ; off += CHUNK) {
          const w = await client.write(created.fh!, off, pattern(f, off), 2);
          assert.equal(w.status, 0);
          acked.set(name, off + CHUNK);
          if (++total === killAfter && !killed) {
            killed = true;
            kill();
          }
        }
      } catch (err) {
        if (!killed) throw err;
      }
    }),
  );
  await client.close().catch(() => {});
  return { acked, killed };
}

/** Every file created and every chunk acknowledged reads back as written. */
export async function verifyStableWrites(port: number, acked: Map<string, number>): Promise<void> {
  const again = await NfsClient.connect(port);
  const root = await again.root();
  for (const [name, bytes] of acked) {
    const found = await again.lookup(root, name);
    assert.equal(found.status, 0, `${name} was created and acknowledged`);
    const f = Number(name.split('-')[1]);
    for (let off = 0; off < bytes; off += CHUNK) {
      const r = await again.read(found.fh!, off, CHUNK);
      assert.ok(r.data!.equals(pattern(f, off)), `${name} @${off} lost in the crash`);
    }
  }
  await again.close();
}
