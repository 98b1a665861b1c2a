/**
 * check(): the dedup volume's fsck. Verifies every map and refcount page's checksum,
 * every map entry's target, every refcount against the references the map holds,
 * fragment counts against the packed blocks, and the volume counters. Read-only; the
 * caller commits first, so it checks what a crash right now would leave.
 */
import type { BlockDevice } from '../../block/types.ts';
import { BLOCK, PAGE_HEADER, MAP_ENTRIES, REF_ENTRIES, PageType, LocKind, getU64, locKind, locPba, locSlot, refCount, refFragments } from './format.ts';
import { fragmentOf, packedCount } from './fragments.ts';
import type { Page } from './page-cache.ts';
import type { Metadata } from './metadata.ts';

export interface CheckResult {
  ok: boolean;
  problems: string[];
}

async function tryPage(meta: Metadata, no: number, type: PageType, problems: string[]): Promise<Page | null> {
  try {
    return await meta.cache.get(no, type);
  } catch (err) {
    problems.push((err as Error).message);
    return null;
  }
}

export async function checkVolume(meta: Metadata, backing: BlockDevice, logicalSize: number): Promise<CheckResult> {
  const layout = meta.layout;
  const problems: string[] = [];
  const refs = new Map<number, number>();
  const kinds = new Map<number, { kind: LocKind; slots: Set<number>; lbn: number }>();
  const logicalBlocks = logicalSize / BLOCK;
  let mapped = 0;
  for (let p = 0; p < layout.mapPages; p++) {
    const page = await tryPage(meta, layout.mapStart + p, PageType.Map, problems);
    if (!page) continue;
    for (let i = 0; i < MAP_ENTRIES && p * MAP_ENTRIES + i < logicalBlocks; i++) {
      const lbn = p * MAP_ENTRIES + i;
      const loc = getU64(page.view, PAGE_HEADER + 8 * i);
      if (loc === 0) continue;
      mapped++;
      const bad = meta.locProblem(loc);
      if (bad) {
        problems.push(`logical block ${lbn}: ${bad}`);
        continue;
      }
      const pba = locPba(loc);
      refs.set(pba, (refs.get(pba) ?? 0) + 1);
      const k = kinds.get(pba);
      if (k && k.kind !== locKind(loc)) problems.push(`block ${pba} is mapped both raw and packed (logical ${k.lbn} and ${lbn})`);
      if (k) k.slots.add(locSlot(loc));
      else kinds.set(pba, { kind: locKind(loc), slots: new Set([locSlot(loc)]), lbn });
    }
  }
  let used = 0;
  let fragments = 0;
  for (let idx = 0; idx < layout.dataBlocks; idx++) {
    if (idx % REF_ENTRIES === 0) {
      const page = await tryPage(meta, layout.refStart + idx / REF_ENTRIES, PageType.Refcount, problems);
      if (!page) {
        idx += REF_ENTRIES - 1;
        continue;
      }
    }
    const pba = layout.dataStart + idx;
    const e = await meta.getRef(pba);
    const want = refs.get(pba) ?? 0;
    if (refCount(e) !== want) problems.push(`block ${pba}: refcount ${refCount(e)}, but the map references it ${want} time(s)`);
    if (e === 0) continue;
    used++;
    fragments += refFragments(e);
    const k = kinds.get(pba);
    if (!k) continue;
    if (k.kind === LocKind.Raw && refFragments(e) !== 1) problems.push(`raw block ${pba} records ${refFragments(e)} fragments`);
    if (k.kind === LocKind.Packed) {
      const block = new Uint8Array(BLOCK);
      await backing.pread(block, pba * BLOCK);
      const n = packedCount(block);
      if (n !== refFragments(e)) problems.push(`packed block ${pba} holds ${n} fragments, refcount entry says ${refFragments(e)}`);
      for (const slot of k.slots) {
        const f = fragmentOf(block, slot);
        if (typeof f === 'string') problems.push(`packed block ${pba}: ${f}`);
      }
    }
  }
  const c = meta.counters;
  if (mapped !== c.mappedBlocks) problems.push(`counter mappedBlocks is ${c.mappedBlocks}, the map holds ${mapped}`);
  if (used !== c.usedBlocks) problems.push(`counter usedBlocks is ${c.usedBlocks}, refcounts show ${used}`);
  if (fragments !== c.storedFragments) problems.push(`counter storedFragments is ${c.storedFragments}, refcounts show ${fragments}`);
  return { ok: problems.length === 0, problems };
}
