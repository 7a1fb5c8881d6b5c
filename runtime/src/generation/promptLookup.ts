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
 * When lookups keep failing (text that does not repeat itself, random weights), a pass that scores
 * candidates costs more than one that does not: after `patience` passes in a row with nothing
 * accepted, lookup pauses for a while (doubling each time it fails again, up to `maxPause` steps),
 * so speculation never costs much over plain decoding. Any accepted candidate resets it.
 */
export class LookupBackoff {
  private _misses = 0;
  private _pause = 0;
  private _nextPause: number;

  constructor(
    private readonly _patience = 3,
    private readonly _firstPause = 4,
    private readonly _maxPause = 64,
  ) {
    this._nextPause = _firstPause;
  }

  /** Whether this step should look up candidates (call once per step). */
  shouldTry(): boolean {
    if (this._pause > 0) {
      this._pause--;
      return false;
    }
    return true;
  }

  /** The outcome of a pass that scored candidates. */
  record(accepted: number): void {
    if (accepted > 0) {
      this._misses = 0;
      this._nextPause = this._firstPause;
      return;
    }
    if (++this._misses < this._patience) return;
    this._misses = 0;
    this._pause = this._nextPause;
    this._nextPause = Math.min(this._maxPause, this._nextPause * 2);
  }
}
