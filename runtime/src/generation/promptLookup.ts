// Prompt lookup (transformers' PromptLookupCandidateGenerator): the tokens that followed the
// earliest earlier occurrence of the sequence's last n-gram are proposed as the next ones, longest
// n-gram first. The target model then scores them all in one pass and keeps those it would have
// chosen itself, so the text is the same as without lookup; only the number of passes changes.
// Pure functions, so tests pin the search order and the cuts.

/** transformers' default max_matching_ngram_size. */
export const DEFAULT_MAX_MATCHING_NGRAM_SIZE = 2;

/**
 * Candidates for the tokens after `ids` (prompt and generated so far): for n from
 * min(maxNgram, ids.length - 1) down to 1, the first position where `ids`' last n tokens occur
 * earlier and are followed by at least one token gives up to `numTokens` of those tokens, cut
 * before the first end-of-sequence token (so an accepted run never continues past EOS). None when
 * `maxLength` (total tokens, prompt included) leaves room for only the token the pass itself adds.
 * `room` caps the count further (the caller's buffers); it never changes which tokens are proposed.
 */
export function promptLookupCandidates(
  ids: readonly number[],
  maxNgram: number,
  numTokens: number,
  maxLength: number,
  eos: ReadonlySet<number>,
  room = Number.POSITIVE_INFINITY,
): number[] {
  const n0 = ids.length;
  if (maxLength === n0 + 1) return [];
  for (let n = Math.min(maxNgram, n0 - 1); n >= 1; n--) {
    const tail = n0 - n;
    for (let at = 0; at + n <= n0; at++) {
      let match = true;
      for (let j = 0; j < n; j++) {
        if (ids[at + j] !== ids[tail + j]) {
          match = false;
          break;
        }
      }
      if (!match) continue;
      const start = at + n;
      const end = Math.min(start + numTokens, n0, maxLength);
      if (start >= end) continue;
      const chosen: number[] = [];
      for (let i = start; i < end && chosen.length < room; i++) {
        if (eos.has(ids[i]!)) break;
        chosen.push(ids[i]!);
      }
      return chosen;
    }
  }
  return [];
}

/**
 * Keeps speculation from costing more than it saves. When candidates keep being rejected (text
 * that does not repeat itself, random weights), a pass that scores them costs more than one that
 * does not: after `patience` rounds in a row with nothing accepted, speculation pauses for a while
 * (doubling each time it fails again, up to `maxPause` steps); any accepted candidate resets it.
 * And when rounds are accepted but still cost more per token than plain passes (a draft model
 * nearly as slow as the target, or tiny models whose passes cost their fixed overhead), measured as
 * each kind's recent milliseconds per token, it pauses the same way. The first pass is plain, to
 * have that comparison from the start.
 */
export class LookupBackoff {
  private _misses = 0;
  private _pause = 0;
  private _nextPause: number;
  private _plainMs: number | undefined;
  private _roundMs: number | undefined;

  private readonly _patience: number;
  private readonly _firstPause: number;
  private readonly _maxPause: number;
  private readonly _timed: boolean;

  constructor(
    o: {
      /** Rounds in a row with nothing accepted before a pause (default 3). */
      patience?: number;
      /** The first pause in steps (default 4), doubled after each failed retry up to maxPause (default 64). */
      firstPause?: number;
      maxPause?: number;
      /**
       * Whether timings may pause it (default true). Not with speculative sampling: its rounds draw
       * other random numbers than plain passes, so a pause decided by the clock would make a seed
       * replay other text.
       */
      timed?: boolean;
    } = {},
  ) {
    this._patience = o.patience ?? 3;
    this._firstPause = o.firstPause ?? 4;
    this._maxPause = o.maxPause ?? 64;
    this._timed = o.timed ?? true;
    this._nextPause = this._firstPause;
  }

  /** Whether this step should look up candidates (call once per step). */
  shouldTry(): boolean {
    if (this._pause > 0) {
      this._pause--;
      return false;
    }
    return true;
  }

  /**
   * What a pass cost: `ms` of model work (proposing and scoring) for the `tokens` it produced;
   * `speculative` when it scored candidates. Without timings the back-off counts misses only.
   */
  recordCost(ms: number, tokens: number, speculative: boolean): void {
    if (!this._timed || !Number.isFinite(ms)) return;
    const perToken = ms / Math.max(1, tokens);
    const ewma = (old: number | undefined) => (old === undefined ? perToken : old + 0.5 * (perToken - old));
    if (!speculative) {
      this._plainMs = ewma(this._plainMs);
      return;
    }
    this._roundMs = ewma(this._roundMs);
    if (this._plainMs !== undefined && this._roundMs > this._plainMs) this._pauseNow();
  }

  /** True until a plain pass has been timed (then rounds can be compared with it). */
  get needsPlainTiming(): boolean {
    return this._timed && this._plainMs === undefined;
  }

  /** The outcome of a pass that scored candidates. */
  record(accepted: number): void {
    if (accepted > 0) {
      this._misses = 0;
      this._nextPause = this._firstPause;
      return;
    }
    if (++this._misses < this._patience) return;
    this._pauseNow();
  }

  private _pauseNow(): void {
    this._misses = 0;
    this._pause = this._nextPause;
    this._nextPause = Math.min(this._maxPause, this._nextPause * 2);
  }
}
