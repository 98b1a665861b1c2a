import { closeSync, existsSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { FileBackend } from '../backend.ts';
import { BLOCK } from '../block-cache.ts';
import type { Volume, VolumeBackend } from '../volume.ts';
import { alreadyExists, hasClones, hasSnapshots, invalidArgument, notFound, snapshotLimit, StorvisorError } from '../../util/errors.ts';
import { formatBytes } from '../../util/size.ts';
import { BlockMap, mapBytesFor } from './block-map.ts';
import { LayeredBackend, type SnapLayer } from './layered.ts';

/**
 * Snapshots and clones of the volumes of one VolumeStore (see layered.ts for
 * the data path). Files, in `<data>/volumes/.snapshots/`:
 *
 *   <vol>.chain.json       the volume's snapshots, oldest first (replaced atomically)
 *   <vol>@<snap>.delta     sparse, block b at b * 4096: blocks saved by copy-on-write
 *   <vol>@<snap>.map       which blocks the delta holds (block-map.ts)
 *   <clone>.clone.map      which blocks a clone has written into its own image
 *
 * A clone is an ordinary volume (`<clone>.img`, `<clone>.json`) whose manifest
 * names its parent snapshot; its manifest is the point where it comes into
 * being, and where flattening ends it being a clone.
 *
 * Crash safety of the administrative operations:
 * - create: the delta and map files are made and synced, the chain file is
 *   replaced, then the snapshot takes effect in memory (new writes copy into
 *   it) and writes begun before are waited for. The chain file comes first
 *   because a copy into the new snapshot may be the only copy of a block an
 *   older snapshot reads through it. A crash before create returns leaves the
 *   snapshot listed, holding the volume as of the crash. Files no chain file
 *   names (a create cut short before its chain file) are removed later.
 * - delete: the chain file marks the snapshot `deleting`; its blocks that the
 *   next older snapshot lacks are copied down; then the chain file drops it and
 *   its files go. A deleting snapshot is still read through, so a crash in the
 *   middle leaves every snapshot intact; the next operation on the volume
 *   finishes the job.
 *
 * Memory: a map takes at most one bit per block, loaded lazily in 4 KiB pages.
 * Every snapshot and clone reserves that worst case against `maxMapBytes` when
 * it is made (SV_ERR_SNAPSHOT_LIMIT beyond it), and a volume has at most
 * MAX_SNAPSHOTS snapshots, so the metadata in memory is bounded whatever the
 * writes do.
 */
export const MAX_SNAPSHOTS = 32;
export const DEFAULT_MAX_MAP_BYTES = 64 * 1024 * 1024;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const COPY_BYTES = 1024 * 1024;

export interface CloneParent {
  volume: string;
  snapshot: string;
}

/** The part of a volume manifest this module reads and writes. */
export interface ManifestLike {
  name: string;
  uuid: string;
  size: number;
  createdAt: string;
  parent?: CloneParent;
}

export interface SnapshotInfo {
  volume: string;
  name: string;
  size: number;
  createdAt: string;
  /** Disk space the snapshot's delta takes: the old data of blocks written since it was taken (until a newer snapshot). */
  savedBytes: number;
  clones: string[];
}

interface ChainEntry {
  name: string;
  size: number;
  createdAt: string;
  state: 'ready' | 'deleting';
}

interface ChainFile {
  format: 'storvisor-snapshots';
  version: 1;
  snapshots: ChainEntry[];
}

/** What the snapshots need from the VolumeStore. */
export interface SnapshotHost {
  imagePath(name: string): string;
  exists(name: string): boolean;
  manifest(name: string): ManifestLike;
  manifests(): ManifestLike[];
  writeManifest(m: ManifestLike): void;
  /** The volume if it is open (its backend is replaced when it gains its first snapshot). */
  openVolumeOf(name: string): Volume | undefined;
  checkCommit(name: string, size: number): void;
  direct: boolean;
  log: (m: string) => void;
}

export class Snapshots {
  readonly dir: string;
  private readonly chains = new Map<string, ChainFile>();
  private readonly heads = new Map<string, LayeredBackend>();
  /** Administrative operations run one at a time (they are rare and touch several volumes). */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    volumesDir: string,
    private readonly host: SnapshotHost,
    readonly maxMapBytes = DEFAULT_MAX_MAP_BYTES,
  ) {
    this.dir = join(volumesDir, '.snapshots');
    mkdirSync(this.dir, { recursive: true });
    this.sweep();
  }

  /**
   * Remove files no chain or clone refers to: what a create that crashed
   * before its chain file (or manifest) was written left behind.
   */
  private sweep(): void {
    let removed = 0;
    for (const f of readdirSync(this.dir)) {
      const layer = /^(.+)@(.+)\.(delta|map)$/.exec(f);
      const cloneMap = /^(.+)\.clone\.map$/.exec(f);
      let keep = true;
      try {
        if (layer) keep = this.host.exists(layer[1]!) && this.chain(layer[1]!).snapshots.some((e) => e.name === layer[2]);
        else if (cloneMap) keep = this.host.exists(cloneMap[1]!) && this.host.manifest(cloneMap[1]!).parent !== undefined;
        else if (f.endsWith('.tmp')) keep = false;
      } catch {
        keep = true; // unreadable metadata: leave everything for a person to look at
      }
      if (!keep) {
        rmIfExists(join(this.dir, f));
        removed++;
      }
    }
    if (removed > 0) {
      syncDir(this.dir);
      this.host.log(`snapshots: removed ${removed} file(s) left by an operation a crash interrupted`);
    }
  }

  static checkName(name: string): void {
    if (!NAME.test(name)) {
      throw invalidArgument(`snapshot name '${name}' must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit`);
    }
  }

  /** `vol@snap` for a snapshot's export name, else undefined. */
  static split(name: string): { volume: string; snapshot: string } | undefined {
    const at = name.indexOf('@');
    if (at < 0) return undefined;
    return { volume: name.slice(0, at), snapshot: name.slice(at + 1) };
  }

  // ---- queries ---------------------------------------------------------------

  /** Whether the volume needs the layered backend: it has snapshots or is a clone. */
  isLayered(volume: string): boolean {
    return this.chain(volume).snapshots.length > 0 || this.host.manifest(volume).parent !== undefined;
  }

  hasSnapshots(volume: string): boolean {
    return this.chain(volume).snapshots.length > 0;
  }

  exists(volume: string, snapshot: string): boolean {
    if (!NAME.test(volume) || !NAME.test(snapshot) || !this.host.exists(volume)) return false;
    return this.chain(volume).snapshots.some((s) => s.name === snapshot && s.state === 'ready');
  }

  list(volume: string): SnapshotInfo[] {
    this.host.manifest(volume); // ENOENT for an unknown volume
    const clones = this.host.manifests().filter((m) => m.parent?.volume === volume);
    return this.chain(volume)
      .snapshots.filter((s) => s.state === 'ready')
      .map((s) => {
        let savedBytes = 0;
        try {
          savedBytes = statSync(this.deltaPath(volume, s.name)).blocks * 512;
        } catch {
          /* a delta not there holds nothing */
        }
        return {
          volume,
          name: s.name,
          size: s.size,
          createdAt: s.createdAt,
          savedBytes,
          clones: clones.filter((m) => m.parent!.snapshot === s.name).map((m) => m.name),
        };
      });
  }

  get(volume: string, snapshot: string): SnapshotInfo {
    const s = this.list(volume).find((i) => i.name === snapshot);
    if (!s) throw notFound(`snapshot '${volume}@${snapshot}'`);
    return s;
  }

  clonesOf(volume: string, snapshot?: string): string[] {
    return this.host
      .manifests()
      .filter((m) => m.parent?.volume === volume && (snapshot === undefined || m.parent.snapshot === snapshot))
      .map((m) => m.name);
  }

  // ---- operations ------------------------------------------------------------

  /**
   * Take a snapshot of `volume` without stopping its I/O: from the moment it
   * takes effect every write copies the old data first; writes already under
   * way are waited for, so the snapshot is one point in time.
   */
  create(volume: string, snapshot: string): Promise<SnapshotInfo> {
    return this.serialized(async () => {
      Snapshots.checkName(snapshot);
      const m = this.host.manifest(volume);
      await this.finishDeletes(volume);
      const chain = this.chain(volume);
      if (chain.snapshots.some((s) => s.name === snapshot)) throw alreadyExists(`snapshot '${volume}@${snapshot}'`);
      if (chain.snapshots.length >= MAX_SNAPSHOTS) throw snapshotLimit(`volume '${volume}' has ${MAX_SNAPSHOTS} snapshots, the most it can have; delete one first`);
      this.checkBudget(m.size, `snapshot '${volume}@${snapshot}'`);
      const entry: ChainEntry = { name: snapshot, size: m.size, createdAt: new Date().toISOString(), state: 'ready' };
      this.removeFiles(volume, snapshot); // leftovers of a create that crashed before its chain file
      const deltaPath = this.deltaPath(volume, snapshot);
      syncedFile(deltaPath, (fd) => ftruncateSync(fd, m.size));
      BlockMap.create(this.mapPath(volume, snapshot), Math.ceil(m.size / BLOCK));
      syncDir(this.dir);
      // Listed before any write copies into it: such a copy can be the only one
      // left of an older snapshot's block, so a crash must not drop the layer.
      this.writeChain(volume, { ...chain, snapshots: [...chain.snapshots, entry] });
      const open = this.host.openVolumeOf(volume);
      const head = this.heads.get(volume);
      try {
        if (head) head.chain.push(this.openLayer(volume, entry));
        // The open volume's plain backend becomes the layered one (adopt opens the chain just written).
        else if (open) await open.replaceBackend((old) => this.adopt(volume, old));
      } catch (err) {
        this.writeChain(volume, chain); // nothing copied into it yet: undo the listing
        throw err;
      }
      // Writes begun before it finish first, so the snapshot is one point in time.
      if (head) await head.barrier();
      // Writes left to a flush (WriteFlags.unsynced) are durable before the snapshot
      // is reported taken: it holds every write completed before it, power loss or not.
      await this.heads.get(volume)?.raw.datasync();
      this.host.log(`volume ${volume}: snapshot ${snapshot} taken`);
      return this.get(volume, snapshot);
    });
  }

  /**
   * Delete a snapshot. Its clones are refused (SV_ERR_HAS_CLONES) unless
   * `flatten`, which first copies into each clone what it still shares.
   * Returns the clones flattened.
   */
  delete(volume: string, snapshot: string, opts: { flatten?: boolean } = {}): Promise<string[]> {
    return this.serialized(async () => {
      this.get(volume, snapshot);
      const clones = this.clonesOf(volume, snapshot);
      if (clones.length > 0 && !opts.flatten) {
        throw hasClones(`snapshot '${volume}@${snapshot}' has clones (${clones.join(', ')}); delete them, or pass flatten to give each its own copy of the blocks it shares`);
      }
      for (const c of clones) await this.flattenNow(c);
      const chain = this.chain(volume);
      this.writeChain(volume, { ...chain, snapshots: chain.snapshots.map((s) => (s.name === snapshot ? { ...s, state: 'deleting' as const } : s)) });
      await this.finishDeletes(volume);
      this.host.log(`volume ${volume}: snapshot ${snapshot} deleted${clones.length ? ` (clones flattened: ${clones.join(', ')})` : ''}`);
      return clones;
    });
  }

  /** Make a writable clone of a snapshot: a new volume sharing every block it has not written. */
  clone(volume: string, snapshot: string, name: string): Promise<ManifestLike> {
    return this.serialized(async () => {
      const s = this.get(volume, snapshot);
      if (!NAME.test(name)) throw invalidArgument(`volume name '${name}' must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit`);
      if (this.host.exists(name)) throw alreadyExists(`volume '${name}'`);
      this.host.checkCommit(name, s.size);
      this.checkBudget(s.size, `clone '${name}'`);
      const mapPath = this.cloneMapPath(name);
      rmIfExists(mapPath);
      BlockMap.create(mapPath, Math.ceil(s.size / BLOCK));
      syncDir(this.dir);
      syncedFile(this.host.imagePath(name), (fd) => ftruncateSync(fd, s.size));
      const m: ManifestLike = { name, uuid: randomUUID(), size: s.size, createdAt: new Date().toISOString(), parent: { volume, snapshot } };
      this.host.writeManifest(m);
      this.host.log(`volume ${name}: cloned from ${volume}@${snapshot}`);
      return m;
    });
  }

  /** Give a clone its own copy of every block it shares, and cut it from its parent. */
  flatten(clone: string): Promise<void> {
    return this.serialized(() => this.flattenNow(clone));
  }

  /** Refuse to delete a volume that has snapshots (the store's delete calls this first). */
  beforeDelete(volume: string): void {
    const snaps = this.chain(volume).snapshots;
    if (snaps.length > 0) {
      throw hasSnapshots(`volume '${volume}' has snapshots (${snaps.map((s) => s.name).join(', ')}); delete them first`);
    }
  }

  /** A volume's files are gone: drop its layer files too. */
  afterDelete(volume: string): void {
    rmIfExists(this.cloneMapPath(volume));
    rmIfExists(this.chainPath(volume));
    this.chains.delete(volume);
    syncDir(this.dir);
  }

  // ---- backends ---------------------------------------------------------------

  /** The layered backend of `volume` (one per volume, shared by its holders); close() releases it. */
  acquire(volume: string): LayeredBackend {
    const known = this.heads.get(volume);
    if (known) {
      known.refs++;
      return known;
    }
    const raw = FileBackend.open(this.host.imagePath(volume), { direct: this.host.direct, log: this.host.log });
    try {
      return this.adopt(volume, raw);
    } catch (err) {
      raw.close();
      throw err;
    }
  }

  /** A read-only backend over snapshot `volume@snapshot`, and its size. */
  openView(volume: string, snapshot: string): { backend: VolumeBackend; size: number } {
    if (!this.exists(volume, snapshot)) throw notFound(`snapshot '${volume}@${snapshot}'`);
    const head = this.acquire(volume);
    const layer = head.chain.find((l) => l.name === snapshot && !l.deleting);
    if (!layer) {
      this.release(head);
      throw notFound(`snapshot '${volume}@${snapshot}'`);
    }
    return { backend: head.view(layer, () => this.release(head)), size: layer.size };
  }

  /** Counters of every loaded layered volume (for status and for measuring the cost per write). */
  stats(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [name, h] of this.heads) {
      out[name] = {
        ...h.counters,
        mapBytes: h.chain.reduce((n, l) => n + l.map.bytes, 0) + (h.own?.bytes ?? 0),
        mapWrites: h.chain.reduce((n, l) => n + l.map.stats().writes, 0) + (h.own?.stats().writes ?? 0),
        deltaReads: h.chain.reduce((n, l) => n + l.delta.stats.reads, 0),
        deltaWrites: h.chain.reduce((n, l) => n + l.delta.stats.writes, 0),
      };
    }
    return out;
  }

  /** Finish what a crash interrupted (snapshot deletions) on every volume. */
  async recover(): Promise<void> {
    for (const f of readdirSync(this.dir)) {
      if (f.endsWith('.chain.json')) await this.serialized(() => this.finishDeletes(f.slice(0, -'.chain.json'.length)));
    }
  }

  // ---- internals ---------------------------------------------------------------

  private adopt(volume: string, raw: VolumeBackend): LayeredBackend {
    const head = new LayeredBackend(volume, raw, (h) => this.release(h));
    const opened: SnapLayer[] = [];
    try {
      for (const e of this.chain(volume).snapshots) opened.push(this.openLayer(volume, e));
      const m = this.host.manifest(volume);
      if (m.parent) {
        head.own = BlockMap.open(this.cloneMapPath(volume), Math.ceil(m.size / BLOCK));
        const parent = this.acquire(m.parent.volume);
        const snap = parent.chain.find((l) => l.name === m.parent!.snapshot);
        if (!snap) {
          this.release(parent);
          throw new StorvisorError('SV_ERR_BAD_SNAPSHOT_MAP', 'EIO', `clone '${volume}': its parent snapshot ${m.parent.volume}@${m.parent.snapshot} is missing`);
        }
        head.parent = { head: parent, snap };
      }
    } catch (err) {
      for (const l of opened) closeLayer(l);
      head.own?.close();
      throw err;
    }
    head.chain.push(...opened);
    head.refs = 1;
    this.heads.set(volume, head);
    return head;
  }

  /** One holder of a layered backend is done; the last one closes its files. */
  release(head: LayeredBackend): void {
    if (--head.refs > 0) return;
    this.heads.delete(head.name);
    for (const l of head.chain) closeLayer(l);
    head.chain.length = 0;
    head.own?.close();
    head.raw.close();
    const p = head.parent;
    head.parent = null;
    if (p) this.release(p.head);
  }

  private openLayer(volume: string, e: ChainEntry): SnapLayer {
    const delta = FileBackend.open(this.deltaPath(volume, e.name), { direct: this.host.direct, log: this.host.log });
    try {
      const map = BlockMap.open(this.mapPath(volume, e.name), Math.ceil(e.size / BLOCK));
      return { name: e.name, size: e.size, createdAt: e.createdAt, delta, map, deleting: e.state === 'deleting', reads: 0, drained: [] };
    } catch (err) {
      delta.close();
      throw err;
    }
  }

  /** Finish every deletion the chain file records (see the class comment). */
  private async finishDeletes(volume: string): Promise<void> {
    const doomed = this.chain(volume).snapshots.filter((s) => s.state === 'deleting');
    if (doomed.length === 0) return;
    const head = this.acquire(volume);
    try {
      const buf = head.raw.alloc(COPY_BYTES).buf;
      for (const e of doomed) {
        const layer = head.chain.find((l) => l.name === e.name)!;
        layer.deleting = true;
        await head.barrier(); // no write still copies into it
        await head.mergeDown(layer, buf);
        head.chain.splice(head.chain.indexOf(layer), 1);
        await LayeredBackend.idle(layer);
        const chain = this.chain(volume);
        this.writeChain(volume, { ...chain, snapshots: chain.snapshots.filter((s) => s.name !== e.name) });
        closeLayer(layer);
        this.removeFiles(volume, e.name);
        syncDir(this.dir);
      }
    } finally {
      this.release(head);
    }
  }

  private async flattenNow(clone: string): Promise<void> {
    const m = this.host.manifest(clone);
    if (!m.parent) return;
    const head = this.acquire(clone);
    try {
      const copied = await head.fill(head.raw.alloc(COPY_BYTES).buf);
      await head.parentIdle();
      const { parent: _gone, ...flat } = m;
      this.host.writeManifest(flat);
      const own = head.own!;
      const parent = head.parent!;
      head.own = null;
      head.parent = null;
      own.close();
      rmIfExists(this.cloneMapPath(clone));
      syncDir(this.dir);
      this.release(parent.head);
      this.host.log(`volume ${clone}: flattened (${formatBytes(copied * BLOCK)} copied from ${m.parent.volume}@${m.parent.snapshot})`);
    } finally {
      this.release(head);
    }
  }

  private checkBudget(size: number, what: string): void {
    let reserved = 0;
    for (const f of readdirSync(this.dir)) {
      if (f.endsWith('.chain.json')) for (const s of this.chain(f.slice(0, -'.chain.json'.length)).snapshots) reserved += mapBytesFor(Math.ceil(s.size / BLOCK));
    }
    for (const m of this.host.manifests()) if (m.parent) reserved += mapBytesFor(Math.ceil(m.size / BLOCK));
    const need = mapBytesFor(Math.ceil(size / BLOCK));
    if (reserved + need > this.maxMapBytes) {
      throw snapshotLimit(
        `${what} would need up to ${formatBytes(need)} of block maps in memory, and snapshots and clones already reserve ${formatBytes(reserved)} ` +
          `of the ${formatBytes(this.maxMapBytes)} allowed; delete snapshots or flatten clones first`,
      );
    }
  }

  private chain(volume: string): ChainFile {
    const known = this.chains.get(volume);
    if (known) return known;
    let chain: ChainFile = { format: 'storvisor-snapshots', version: 1, snapshots: [] };
    const path = this.chainPath(volume);
    if (existsSync(path)) {
      try {
        chain = JSON.parse(readFileSync(path, 'utf8')) as ChainFile;
      } catch (err) {
        throw new StorvisorError('SV_ERR_BAD_MANIFEST', 'EIO', `volume '${volume}': snapshot list ${path} is not valid JSON`, { cause: err });
      }
      if (chain.format !== 'storvisor-snapshots' || chain.version !== 1 || !Array.isArray(chain.snapshots)) {
        throw new StorvisorError('SV_ERR_BAD_MANIFEST', 'EIO', `volume '${volume}': ${path} is not a snapshot list this version reads`);
      }
    }
    this.chains.set(volume, chain);
    return chain;
  }

  private writeChain(volume: string, chain: ChainFile): void {
    const path = this.chainPath(volume);
    const tmp = `${path}.tmp`;
    writeFileSync(tmp, JSON.stringify(chain, null, 2) + '\n');
    syncedFile(tmp);
    renameSync(tmp, path);
    syncDir(this.dir);
    this.chains.set(volume, chain);
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }

  private removeFiles(volume: string, snapshot: string): void {
    rmIfExists(this.deltaPath(volume, snapshot));
    rmIfExists(this.mapPath(volume, snapshot));
  }

  private chainPath(volume: string): string {
    return join(this.dir, `${volume}.chain.json`);
  }
  private deltaPath(volume: string, snapshot: string): string {
    return join(this.dir, `${volume}@${snapshot}.delta`);
  }
  private mapPath(volume: string, snapshot: string): string {
    return join(this.dir, `${volume}@${snapshot}.map`);
  }
  private cloneMapPath(clone: string): string {
    return join(this.dir, `${clone}.clone.map`);
  }
}

function closeLayer(l: SnapLayer): void {
  l.delta.close();
  l.map.close();
}

function rmIfExists(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

function syncedFile(path: string, change?: (fd: number) => void): void {
  const fd = openSync(path, change ? 'w' : 'r');
  try {
    change?.(fd);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function syncDir(dir: string): void {
  syncedFile(dir);
}
