import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import os from 'node:os';

/** What the report records about the machine it ran on. */
export interface Machine {
  hostname: string;
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  disk: string;
  node: string;
  engine: string;
}

/** The block device under `dir`: its name and model from sysfs, or what could be learned. */
export function diskOf(dir: string): string {
  try {
    const dev = statSync(dir).dev;
    const major = Math.floor(dev / 256) & 0xfff; // Linux new_decode_dev, enough for disks
    const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    const sys = `/sys/dev/block/${major}:${minor}`;
    const uevent = readFileSync(`${sys}/uevent`, 'utf8');
    const name = /DEVNAME=(\S+)/.exec(uevent)?.[1] ?? `${major}:${minor}`;
    const read = (p: string) => { try { return readFileSync(p, 'utf8').trim(); } catch { return ''; } };
    // A partition's model and queue live on its parent disk.
    const parent = read(`${sys}/partition`) ? `${sys}/..` : sys;
    const model = read(`${parent}/device/model`) || read(`${parent}/device/vendor`) || 'unknown model';
    const rotational = read(`${parent}/queue/rotational`) === '1' ? 'rotational' : 'non-rotational';
    const sizeGiB = Number(read(`${parent}/size`)) * 512 / 2 ** 30;
    return `${name} (${model}, ${rotational}, ${sizeGiB.toFixed(0)} GiB)`;
  } catch (err) {
    return `unknown (${(err as Error).message})`;
  }
}

export function probeMachine(dataDir: string, engine: string): Machine {
  const cpus = os.cpus();
  let kernel = os.release();
  try {
    kernel = execFileSync('uname', ['-srm'], { encoding: 'utf8' }).trim();
  } catch {
    // os.release() is enough
  }
  return {
    hostname: os.hostname(),
    cores: os.availableParallelism(),
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel,
    disk: diskOf(dataDir),
    node: process.version,
    engine,
  };
}
