// KV states of recent prompts, so a completion request that shares most of its prompt with an
// earlier one (typing one more character, deleting one) prefills only the tokens that changed.
// Bounded by bytes, least recently used first out, except the newest state: the document being
// typed in keeps its state whatever its size (a large model's context can exceed any fixed budget,
// and the request that just ended held that memory anyway). A state is handed over on `take` (its
// buffers are then extended in place by the new request) and comes back with `put` when that one ends.

import { type KvCache, kvStorageBytes } from '../decoder.js';
import { type PrefixStore, type StoredPrefix, commonPrefix } from '../generation/generate.js';

interface Entry extends StoredPrefix {
  bytes: number;
  used: number; // recency counter
}

export interface PrefixCacheStats {
  entries: number;
  bytes: number;
  /** What the older states may hold; the newest is kept even beyond it. */
  budgetBytes: number;
  hits: number;
  misses: number;
}

export class PrefixCache implements PrefixStore {
  private readonly _entries: Entry[] = [];
  private _clock = 0;
  private _hits = 0;
  private _misses = 0;

  /**
   * `budgetBytes`: 0 turns reuse off (nothing is kept). `minShared`: fewer shared tokens than this
   * is a miss (a lone BOS is shared by every prompt).
   */
  constructor(
    private readonly _budgetBytes: number,
    private readonly _minShared = 2,
  ) {}

  take(tokens: readonly number[]): StoredPrefix | undefined {
    let best = -1,
      bestShared = 0;
    for (const [i, e] of this._entries.entries()) {
      const shared = commonPrefix(e.tokens, tokens);
      if (shared > bestShared || (shared === bestShared && shared > 0 && e.used > this._entries[best]!.used)) {
        best = i;
        bestShared = shared;
      }
    }
    if (best < 0 || bestShared < this._minShared) {
      this._misses++;
      return undefined;
    }
    this._hits++;
    const [e] = this._entries.splice(best, 1);
    return { tokens: e!.tokens, cache: e!.cache, promptTokens: e!.promptTokens };
  }

  put(tokens: readonly number[], cache: KvCache, promptTokens = tokens.length): void {
    if (this._budgetBytes <= 0 || tokens.length === 0) return;
    // A state whose tokens extend (or equal) a stored one's makes that one redundant.
    for (let i = this._entries.length - 1; i >= 0; i--) {
      const e = this._entries[i]!;
      if (e.tokens.length <= tokens.length && commonPrefix(e.tokens, tokens) === e.tokens.length) this._entries.splice(i, 1);
    }
    const newest: Entry = { tokens, cache, promptTokens, bytes: kvStorageBytes(cache), used: ++this._clock };
    this._entries.push(newest);
    this._evictOldest(0, 1); // never the newest
  }

  /**
   * Evicts least recently used states until `bytes` more would fit in the budget: called before a
   * request allocates KV storage beside the states kept here (a copy of one), so that the states and
   * the request together stay within the budget.
   */
  makeRoom(bytes: number): void {
    this._evictOldest(bytes, 0);
  }

  /** Least recently used out until `extra` more bytes fit in the budget, keeping at least `keep` states. */
  private _evictOldest(extra: number, keep: number): void {
    let total = this._entries.reduce((n, e) => n + e.bytes, 0);
    while (this._entries.length > keep && total + extra > this._budgetBytes) {
      const oldest = this._entries.reduce((a, e) => (e.used < a.used ? e : a));
      this._entries.splice(this._entries.indexOf(oldest), 1);
      total -= oldest.bytes;
    }
  }

  clear(): void {
    this._entries.length = 0;
  }

  stats(): PrefixCacheStats {
    return {
      entries: this._entries.length,
      bytes: this._entries.reduce((n, e) => n + e.bytes, 0),
      budgetBytes: this._budgetBytes,
      hits: this._hits,
      misses: this._misses,
    };
  }
}
