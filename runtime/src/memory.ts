// How much memory the machine has, beside what a model needs (protocol/memory.ts, shared with the
// extension's model picker), so a model that cannot fit is refused before loading with the figure.

import { readFileSync } from 'node:fs';
import { freemem } from 'node:os';

export {
  autoPrefixCacheBytes,
  contextKvBytes,
  describeNeed,
  estimateModelBytes,
  kvBytesPerToken,
  memoryNeed,
} from '../../protocol/memory.js';

/** Memory the kernel says is available for new allocations (MemAvailable), else free memory. */
export function availableMemoryBytes(): number {
  try {
    const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return freemem();
}

export const gib = (bytes: number): string => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
