import { invalidArgument } from './errors.ts';

/** Parse a human size: "4096", "64K", "512M", "1G", "2GiB" (binary units). */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  if (!m) throw invalidArgument(`'${text}' is not a size (examples: 4096, 64K, 512M, 1G)`);
  const scale = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }[m[2]!.toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'];
  const v = Number(m[1]) * scale;
  if (!Number.isSafeInteger(v)) throw invalidArgument(`'${text}' is not a whole number of bytes`);
  return v;
}

export function formatBytes(n: number): string {
  for (const [unit, scale] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (n >= scale) return `${(n / scale).toFixed(n % scale ? 1 : 0)} ${unit}`;
  }
  return `${n} B`;
}
