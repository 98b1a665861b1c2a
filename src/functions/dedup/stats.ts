/** Counters of a dedup volume: this session's work, and the savings derived from the committed counters. */
import { BLOCK, type Layout } from './format.ts';
import type { Counters, Journal } from './journal.ts';
import type { PageCache } from './page-cache.ts';

/** Work done since the volume was opened (not persisted). */
export class SessionStats {
  logicalBytesWritten = 0;
  logicalBytesRead = 0;
  zeroBlocksWritten = 0;
  dedupHits = 0;
  rawBlocksStored = 0;
  fragmentsStored = 0;
  /** Request-thread time (wall, us) in prepare's passes and phase 1's classification; blocks each covered. */
  hashMicros = 0;
  hashedBlocks = 0;
  probeMicros = 0;
  probedBlocks = 0;
  planMicros = 0;
  plannedBlocks = 0;
  compressMicros = 0;
  compressedAttempts = 0;
  /** Blocks a pool worker compressed (the rest were compressed inline). */
  compressedInWorkers = 0;
}

export interface StatsSources {
  size: number;
  layout: Layout;
  counters: Counters;
  session: SessionStats;
  journal: Journal;
  cache: PageCache;
  pendingFree: number;
  groupedFlushes: number;
}

export function volumeStats(src: StatsSources): Record<string, number> {
  const c = src.counters;
  const s = src.session;
  return {
    logicalSize: src.size,
    logicalBytesWritten: s.logicalBytesWritten,
    logicalBytesRead: s.logicalBytesRead,
    logicalBytesUsed: c.mappedBlocks * BLOCK,
    mappedBlocks: c.mappedBlocks,
    physicalBlocksUsed: c.usedBlocks,
    physicalBytesUsed: c.usedBlocks * BLOCK,
    physicalBytesFree: (src.layout.dataBlocks - c.usedBlocks) * BLOCK,
    metadataBytes: src.layout.dataStart * BLOCK,
    storedFragments: c.storedFragments,
    dedupRatio: c.storedFragments === 0 ? 1 : c.mappedBlocks / c.storedFragments,
    compressionRatio: c.usedBlocks === 0 ? 1 : c.storedFragments / c.usedBlocks,
    dataReductionRatio: c.usedBlocks === 0 ? 1 : c.mappedBlocks / c.usedBlocks,
    zeroBlocksWritten: s.zeroBlocksWritten,
    dedupHits: s.dedupHits,
    rawBlocksStored: s.rawBlocksStored,
    fragmentsStored: s.fragmentsStored,
    hashMicrosPerBlock: s.hashedBlocks === 0 ? 0 : s.hashMicros / s.hashedBlocks,
    probeMicrosPerBlock: s.probedBlocks === 0 ? 0 : s.probeMicros / s.probedBlocks,
    planMicrosPerBlock: s.plannedBlocks === 0 ? 0 : s.planMicros / s.plannedBlocks,
    hashMicros: s.hashMicros,
    probeMicros: s.probeMicros,
    planMicros: s.planMicros,
    compressMicros: s.compressMicros,
    compressMicrosPerBlock: s.compressedAttempts === 0 ? 0 : s.compressMicros / s.compressedAttempts,
    compressedBlocks: s.compressedAttempts,
    compressedInWorkers: s.compressedInWorkers,
    indexHitRate: s.hashedBlocks === 0 ? 0 : s.dedupHits / s.hashedBlocks,
    commits: src.journal.commits,
    groupedFlushes: src.groupedFlushes,
    checkpoints: src.journal.checkpoints,
    cachePages: src.cache.size,
    cacheHits: src.cache.hits,
    cacheMisses: src.cache.misses,
    pendingFreeBlocks: src.pendingFree,
  };
}
