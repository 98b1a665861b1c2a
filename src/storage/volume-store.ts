import { mkdirSync, openSync, closeSync, fsyncSync, ftruncateSync, writeFileSync, renameSync, readFileSync, readdirSync, unlinkSync, existsSync, statfsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { FileBackend } from './backend.ts';
import { BlockCache, BLOCK } from './block-cache.ts';
import { Volume } from './volume.ts';
import { Snapshots, type CloneParent } from './snapshots/snapshots.ts';
import { alreadyExists, inUse, invalidArgument, notFound, overcommitted, badManifest, StorvisorError } from '../util/errors.ts';
import { formatBytes } from '../util/size.ts';
import { createImage, removeImage, openRbd, describeLocation, checkLocation, type RbdLocation, type RbdBackend } from './rbd-backend.ts';

/**
 * The volumes of one data directory: `<data>/volumes/<name>.img` is the thin
 * (sparse) image, `<name>.json` its manifest. Manifests are replaced atomically
 * (write, fsync, rename, fsync the directory), so a crash leaves either the old
 * or the new one. Open volumes share the controller's one BlockCache.
 *
 * Overcommit: thin volumes take disk space only as they are written, so their
 * sizes can add up to more than the disk. Creating or growing a volume is
 * refused (SV_ERR_OVERCOMMIT, ENOSPC) when the sum of all volume sizes would
 * exceed `overcommit` times the space the volumes can get: the filesystem's
 * free space (for unprivileged users) plus what the volume images already
 * occupy. At 1.0 (the default) every volume can be written in full, so a guest's
 * filesystem or database never meets ENOSPC in the middle of its log; a larger
 * ratio is a deliberate bet that the volumes will not all fill up.
 */
export interface VolumeManifest {
  name: string;
  uuid: string;
  size: number;
  createdAt: string;
  /** A clone: the snapshot it shares unwritten blocks with (snapshots/). */
  parent?: CloneParent;
  /** Where the blocks are: absent or 'file' = `<name>.img` here; 'rbd' = the Ceph RBD image in `rbd`. */
  backend?: 'file' | 'rbd';
  rbd?: RbdLocation;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export class VolumeStore {
  readonly dir: string;
  private readonly open = new Map<string, Volume>();
  private nextId = 1;
  /** Growth promised to resizes still in progress (counted against the overcommit limit). */
  private reserved = 0;
  /** Snapshots and clones; a snapshot's export name is `<volume>@<snapshot>`. */
  readonly snapshots: Snapshots;

  constructor(
    dataDir: string,
    readonly cache: BlockCache,
    private readonly log: (m: string) => void = () => {},
    private readonly direct = true,
    readonly overcommit = 1,
    /** Block-map memory all snapshots and clones may reserve (snapshots/snapshots.ts). */
    maxSnapshotMapBytes?: number,
  ) {
    this.dir = join(dataDir, 'volumes');
    mkdirSync(this.dir, { recursive: true });
    this.snapshots = new Snapshots(this.dir, {
      imagePath: (n) => this.imagePath(n),
      exists: (n) => this.exists(n),
      manifest: (n) => this.manifest(n),
      manifests: () => this.list(),
      writeManifest: (m) => this.writeManifest(m),
      openVolumeOf: (n) => this.open.get(n),
      checkCommit: (n, size) => this.checkCommit(n, size, 0),
      direct,
      log,
    }, maxSnapshotMapBytes);
  }

  static checkName(name: string): void {
    if (!NAME.test(name)) {
      throw invalidArgument(`volume name '${name}' must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit`);
    }
  }

  static checkSize(size: number): void {
    if (!Number.isSafeInteger(size) || size <= 0 || size % BLOCK !== 0) {
      throw invalidArgument(`volume size ${size} must be a positive multiple of ${BLOCK} bytes`);
    }
  }

  list(): VolumeManifest[] {
    return readdirSync(this.dir)
      .filter((f) => f.endsWith('.json') && !f.startsWith('.'))
      .map((f) => this.manifest(f.slice(0, -5)))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  exists(name: string): boolean {
    const snap = Snapshots.split(name);
    if (snap) return this.snapshots.exists(snap.volume, snap.snapshot);
    return existsSync(this.manifestPath(name));
  }

  manifest(name: string): VolumeManifest {
    VolumeStore.checkName(name);
    let text: string;
    try {
      text = readFileSync(this.manifestPath(name), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw notFound(`volume '${name}'`);
      throw err;
    }
    try {
      return JSON.parse(text) as VolumeManifest;
    } catch (err) {
      throw badManifest(`volume '${name}': manifest ${this.manifestPath(name)} is not valid JSON`, err);
    }
  }

  /** Create a thin volume: a sparse file of `size` bytes, then its manifest. */
  create(name: string, size: number): VolumeManifest {
    VolumeStore.checkName(name);
    VolumeStore.checkSize(size);
    if (this.exists(name)) throw alreadyExists(`volume '${name}'`);
    this.checkCommit(name, size, 0);
    syncFile(this.imagePath(name), 'w', (fd) => ftruncateSync(fd, size));
    const manifest: VolumeManifest = { name, uuid: randomUUID(), size, createdAt: new Date().toISOString() };
    this.writeManifest(manifest);
    this.log(`volume ${name}: created, ${size} bytes (thin)`);
    return manifest;
  }

  /** The open Volume (one instance per name, shared by everyone who opens it). */
  openVolume(name: string): Volume {
    const existing = this.open.get(name);
    if (existing) return existing;
    const snap = Snapshots.split(name);
    if (snap) return this.openSnapshot(name, snap.volume, snap.snapshot);
    const manifest = this.manifest(name);
    if (manifest.backend === 'rbd') {
      throw new StorvisorError('SV_ERR_VOLUME_UNAVAILABLE', 'EIO', `volume '${name}' (${describeLocation(manifest.rbd!)}) is not open on this controller`);
    }
    const backend = this.snapshots.isLayered(name) ? this.snapshots.acquire(name) : FileBackend.open(this.imagePath(name), { direct: this.direct, log: this.log });
    const volume = new Volume({ id: this.nextId++, name, size: manifest.size }, backend, this.cache);
    this.open.set(name, volume);
    return volume;
  }

  /** A snapshot, read-only, as a volume named `<volume>@<snapshot>` (what the NBD export serves). */
  private openSnapshot(name: string, volume: string, snapshot: string): Volume {
    const { backend, size } = this.snapshots.openView(volume, snapshot);
    const view = new Volume({ id: this.nextId++, name, size }, backend, this.cache, true);
    this.open.set(name, view);
    return view;
  }

  async resize(name: string, size: number, opts: { allowShrink?: boolean } = {}): Promise<VolumeManifest> {
    VolumeStore.checkSize(size);
    const manifest = this.manifest(name);
    if (size !== manifest.size && this.snapshots.isLayered(name)) {
      throw inUse(`volume '${name}' has snapshots or is a clone: its size is fixed (delete its snapshots, or flatten it, first)`);
    }
    if (size < manifest.size && !opts.allowShrink) {
      throw invalidArgument(`volume '${name}': shrinking from ${manifest.size} to ${size} bytes destroys data; pass allowShrink`);
    }
    const growth = Math.max(0, size - manifest.size);
    if (growth > 0) this.checkCommit(name, size, manifest.size);
    this.reserved += growth;
    try {
      const volume = this.open.get(name);
      if (volume) await volume.resize(size);
      else if (manifest.backend === 'rbd') throw inUse(`volume '${name}' (${describeLocation(manifest.rbd!)}) is not open on this controller: resize it where it is open`);
      else syncFile(this.imagePath(name), 'r+', (fd) => ftruncateSync(fd, size));
      this.writeManifest({ ...manifest, size });
    } finally {
      this.reserved -= growth;
    }
    const next = { ...manifest, size };
    this.log(`volume ${name}: resized to ${size} bytes`);
    return next;
  }

  async delete(name: string): Promise<void> {
    const m = this.manifest(name);
    if (this.open.has(name)) throw inUse(`volume '${name}' is open; stop what uses it first`);
    if (m.backend === 'rbd') await removeImage(m.rbd!);
    this.snapshots.beforeDelete(name);
    unlinkSync(this.manifestPath(name));
    if (m.backend !== 'rbd') unlinkSync(this.imagePath(name));
    this.syncDir();
    this.snapshots.afterDelete(name);
    this.log(`volume ${name}: deleted`);
  }

  async closeVolume(name: string): Promise<void> {
    const volume = this.open.get(name);
    if (!volume) return;
    this.open.delete(name);
    try {
      await volume.close();
    } catch (err) {
      this.log(`volume ${name}: sync on close failed: ${(err as Error).message}`);
      throw err;
    }
  }

  /** Close every volume (all of them, even when one fails); rejects with the first failure. */
  async closeAll(): Promise<void> {
    const results = await Promise.allSettled([...this.open.keys()].map((n) => this.closeVolume(n)));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  // ---- RBD volumes (src/storage/rbd-backend.ts) ------------------------------

  /**
   * Create an RBD volume: the image (adopted if it already exists, with its own
   * size), then the manifest that points at it.
   */
  async createRbd(name: string, size: number, rbd: RbdLocation): Promise<VolumeManifest> {
    VolumeStore.checkName(name);
    VolumeStore.checkSize(size);
    checkLocation(rbd);
    if (this.exists(name)) throw alreadyExists(`volume '${name}'`);
    const image = await createImage(rbd, size);
    const manifest: VolumeManifest = { name, uuid: randomUUID(), size: image.size, createdAt: new Date().toISOString(), backend: 'rbd', rbd };
    this.writeManifest(manifest);
    this.log(`volume ${name}: ${image.created ? 'created' : 'adopted existing'} ${describeLocation(rbd)}, ${image.size} bytes`);
    return manifest;
  }

  /**
   * Open an RBD volume and take its image's exclusive lock (refused, naming the
   * holder, when another controller has it). With `takeover`, a foreign holder
   * is blocklisted and its lock broken first: only for a holder known dead.
   */
  async attach(name: string, opts: { takeover?: boolean } = {}): Promise<Volume> {
    const existing = this.open.get(name);
    if (existing) return existing;
    const manifest = this.manifest(name);
    if (manifest.backend !== 'rbd') throw invalidArgument(`volume '${name}' is not an RBD volume`);
    const backend: RbdBackend = await openRbd(manifest.rbd!, { controller: this.controllerId(), takeover: opts.takeover, volume: name, log: this.log });
    if (this.open.has(name)) {
      await backend.close();
      return this.open.get(name)!;
    }
    if (backend.size() !== manifest.size) {
      this.log(`volume ${name}: ${describeLocation(manifest.rbd!)} is ${backend.size()} bytes, the manifest said ${manifest.size}; using the image's size`);
      this.writeManifest({ ...manifest, size: backend.size() });
    }
    const volume = new Volume({ id: this.nextId++, name, size: backend.size() }, backend, this.cache);
    this.open.set(name, volume);
    this.log(`volume ${name}: ${describeLocation(manifest.rbd!)} open, exclusive lock held (client ${backend.address})`);
    return volume;
  }

  /** Where a volume's blocks are, for /status: 'file', or 'rbd' with its pool and image. */
  backendOf(name: string): { backend: 'file' | 'rbd'; rbd?: { pool: string; image: string; conf: string } } {
    const m = this.manifest(name);
    if (m.backend !== 'rbd') return { backend: 'file' };
    return { backend: 'rbd', rbd: { pool: m.rbd!.pool, image: m.rbd!.image, conf: m.rbd!.conf } };
  }

  /** This controller's identity in RBD lock records: one per data directory, kept across restarts. */
  controllerId(): string {
    const path = join(this.dir, '..', 'controller-id');
    try {
      return readFileSync(path, 'utf8').trim();
    } catch {
      const id = randomUUID();
      writeFileSync(path, id + '\n');
      syncFile(path, 'r');
      return id;
    }
  }

  openVolumes(): Volume[] {
    return [...this.open.values()];
  }

  /**
   * Refuse to take volume `name` from `oldSize` to `newSize` bytes if all volumes
   * together would then exceed the overcommit limit (see the class comment).
   */
  private checkCommit(name: string, newSize: number, oldSize: number): void {
    if (this.exists(name) && this.manifest(name).backend === 'rbd') return; // the cluster's space, not this disk's
    const fs = statfsSync(this.dir);
    let committed = newSize + this.reserved;
    let allocated = 0;
    for (const m of this.list()) {
      if (m.backend === 'rbd') continue;
      if (m.name !== name) committed += m.size;
      try {
        allocated += statSync(this.imagePath(m.name)).blocks * 512;
      } catch {
        /* a missing image occupies nothing */
      }
    }
    const capacity = fs.bavail * fs.bsize + allocated;
    const limit = Math.floor(this.overcommit * capacity);
    if (committed > limit) {
      const what = oldSize === 0 ? `creating '${name}' (${formatBytes(newSize)})` : `growing '${name}' from ${formatBytes(oldSize)} to ${formatBytes(newSize)}`;
      throw overcommitted(
        `${what} would commit ${formatBytes(committed)} of thin volumes, more than the limit of ${formatBytes(limit)} ` +
          `(overcommit ${this.overcommit} x ${formatBytes(capacity)}: free space plus what the volumes already use, in ${this.dir}); ` +
          `free disk space, shrink or delete volumes, or raise "overcommit" in the config`,
      );
    }
  }

  imagePath(name: string): string {
    return join(this.dir, `${name}.img`);
  }

  private manifestPath(name: string): string {
    return join(this.dir, `${name}.json`);
  }

  private writeManifest(m: VolumeManifest): void {
    const tmp = `${this.manifestPath(m.name)}.tmp`;
    writeFileSync(tmp, JSON.stringify(m, null, 2) + '\n');
    syncFile(tmp, 'r');
    renameSync(tmp, this.manifestPath(m.name));
    this.syncDir();
  }

  private syncDir(): void {
    syncFile(this.dir, 'r');
  }
}

/** Open `path`, apply `change` (if any), fsync and close: the change is durable on return. */
function syncFile(path: string, flags: 'r' | 'r+' | 'w', change?: (fd: number) => void): void {
  const fd = openSync(path, flags);
  try {
    change?.(fd);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
