// Suggestions already computed, so that backspacing and retyping, or typing the very characters a
// suggestion predicted, shows ghost text at once without asking the engine. Entries are found by
// the end of the text before the cursor (its last `anchorChars`), so the clipped prompt window
// sliding as the user types does not defeat the cache. Least recently used entries go first.
// No vscode import.

import type { InlineSuggestion } from './postprocess.js';

export interface CacheKey {
  documentId: string;
  /** Text before the cursor (as sent to the engine). */
  prefix: string;
  /** What the suggestion was computed against after the cursor: the rest of the line and the lines below. */
  suffixKey: string;
}

export interface CacheHit {
  /** The suggestion from the cursor's position now (the typed-ahead characters removed); undefined: known to be none. */
  suggestion: InlineSuggestion | undefined;
  /** Characters typed since the suggestion was computed ('' for an exact hit). */
  typed: string;
}

interface Entry {
  documentId: string;
  suffixKey: string;
  anchor: string;
  /** undefined: the engine had nothing to suggest here. */
  suggestion: InlineSuggestion | undefined;
}

export class CompletionCache {
  private readonly _entries = new Map<string, Entry>();
  private _hits = 0;
  private _misses = 0;

  constructor(
    private readonly _maxEntries = 256,
    private readonly _anchorChars = 200,
  ) {}

  get size(): number {
    return this._entries.size;
  }

  get stats(): { entries: number; hits: number; misses: number } {
    return { entries: this._entries.size, hits: this._hits, misses: this._misses };
  }

  /** Remembers the suggestion computed at `key` (undefined when there was none). */
  set(key: CacheKey, suggestion: InlineSuggestion | undefined): void {
    const anchor = key.prefix.slice(-this._anchorChars);
    const id = this._id(key.documentId, key.suffixKey, anchor);
    this._entries.delete(id);
    this._entries.set(id, { documentId: key.documentId, suffixKey: key.suffixKey, anchor, suggestion });
    while (this._entries.size > this._maxEntries) this._entries.delete(this._entries.keys().next().value!);
  }

  /**
   * The suggestion for `key`: an exact entry (which may say "nothing here": `suggestion` undefined
   * comes back as a hit only when `includeEmpty`), or an entry from a few characters back whose
   * suggestion starts with exactly the characters typed since, on the same line.
   */
  get(key: CacheKey, options: { includeEmpty?: boolean } = {}): CacheHit | undefined {
    const exact = this._entries.get(this._id(key.documentId, key.suffixKey, key.prefix.slice(-this._anchorChars)));
    if (exact && (exact.suggestion || options.includeEmpty)) {
      this._touch(exact);
      this._hits++;
      return { suggestion: exact.suggestion, typed: '' };
    }
    let best: { entry: Entry; typed: string } | undefined;
    for (const entry of this._entries.values()) {
      if (entry.documentId !== key.documentId || entry.suffixKey !== key.suffixKey || !entry.suggestion) continue;
      const at = key.prefix.lastIndexOf(entry.anchor);
      if (at === -1) continue;
      const typed = key.prefix.slice(at + entry.anchor.length);
      if (typed === '' || typed.includes('\n')) continue;
      const s = entry.suggestion;
      // What was typed must be the suggestion's own new text, and something must remain of it.
      if (!s.text.startsWith(typed) || s.text.length - typed.length <= s.replaceSuffix) continue;
      if (!best || typed.length < best.typed.length) best = { entry, typed };
    }
    if (!best) {
      this._misses++;
      return undefined;
    }
    this._touch(best.entry);
    this._hits++;
    const s = best.entry.suggestion!;
    return { suggestion: { ...s, text: s.text.slice(best.typed.length) }, typed: best.typed };
  }

  /** Forgets one document's entries (closed) or everything (model or settings changed). */
  clear(documentId?: string): void {
    if (documentId === undefined) this._entries.clear();
    else for (const [id, e] of this._entries) if (e.documentId === documentId) this._entries.delete(id);
  }

  private _touch(entry: Entry): void {
    const id = this._id(entry.documentId, entry.suffixKey, entry.anchor);
    this._entries.delete(id);
    this._entries.set(id, entry);
  }

  private _id(documentId: string, suffixKey: string, anchor: string): string {
    return `${documentId}\u0000${suffixKey}\u0000${anchor}`;
  }
}

/** The suffix part of a cache key: the rest of the line and the next few lines. */
export function suffixKeyOf(lineSuffix: string, nextLines: readonly string[]): string {
  return `${lineSuffix}\n${nextLines.slice(0, 3).join('\n')}`;
}
