// The best answer spans of extractive question answering, as transformers' question-answering
// pipeline chooses them: logits of tokens that cannot be in an answer are set to -10000, start and
// end logits are each turned into probabilities by a softmax over the row, a span (s, e) scores
// p_start[s] · p_end[e], and only spans with s ≤ e, e − s + 1 ≤ maxAnswerLength whose start and end
// are both candidate (context) tokens are kept. Pure: token positions in, token positions out.
// (The pipeline also zeroes position 0's probabilities, a CLS token for BERT-like models; for OPT
// position 0 is BOS, never a candidate, so nothing here needs to.)

import { softmaxInPlace } from '../generation/sampling.js';

/** The pipeline's value for excluded tokens (not -inf: a row with no candidate stays finite). */
export const EXCLUDED_LOGIT = -10000;

export interface SpanSearchOptions {
  /** Longest answer in tokens (transformers' max_answer_len, default 15). */
  maxAnswerLength?: number;
  /** How many spans to return, best first (default 1). */
  topK?: number;
}

export interface TokenSpan {
  /** First and last token of the answer (inclusive). */
  start: number;
  end: number;
  score: number;
}

/**
 * `candidate[i]` is true for tokens that may be part of an answer (the context's; never the
 * question's, BOS or padding). Returns at most topK spans, highest score first; equal scores keep
 * the order of (start, end), as numpy's argmax over the flattened start × end matrix does. Spans
 * outside the rules are never returned, even when fewer than topK remain.
 */
export function searchSpans(
  startLogits: ArrayLike<number>,
  endLogits: ArrayLike<number>,
  candidate: ArrayLike<boolean | number>,
  options: SpanSearchOptions = {},
): TokenSpan[] {
  const maxLen = options.maxAnswerLength ?? 15;
  const topK = options.topK ?? 1;
  if (!Number.isInteger(maxLen) || maxLen < 1) throw new RangeError(`maxAnswerLength must be an integer >= 1, got ${maxLen}`);
  if (!Number.isInteger(topK) || topK < 1) throw new RangeError(`topK must be an integer >= 1, got ${topK}`);
  const n = startLogits.length;
  if (endLogits.length !== n || candidate.length !== n)
    throw new RangeError(
      `start logits (${n}), end logits (${endLogits.length}) and candidate mask (${candidate.length}) must have one entry per token`,
    );
  const ok = (i: number) => Boolean(candidate[i]);
  const pStart = maskedSoftmax(startLogits, ok);
  const pEnd = maskedSoftmax(endLogits, ok);

  // Keep the best topK in a small sorted list: n × maxLen candidates, no full sort.
  const best: TokenSpan[] = [];
  for (let s = 0; s < n; s++) {
    if (!ok(s)) continue;
    for (let e = s; e < Math.min(n, s + maxLen); e++) {
      if (!ok(e)) continue;
      const score = pStart[s]! * pEnd[e]!;
      if (best.length === topK && !(score > best[topK - 1]!.score)) continue; // ties: the earlier (s, e) stays
      let at = best.length;
      while (at > 0 && score > best[at - 1]!.score) at--;
      best.splice(at, 0, { start: s, end: e, score });
      if (best.length > topK) best.pop();
    }
  }
  return best;
}

/** softmax over the row with excluded entries at EXCLUDED_LOGIT, in float64. */
function maskedSoftmax(logits: ArrayLike<number>, ok: (i: number) => boolean): Float64Array {
  const n = logits.length;
  const x = new Float64Array(n);
  for (let i = 0; i < n; i++) x[i] = ok(i) ? logits[i]! : EXCLUDED_LOGIT;
  softmaxInPlace(x);
  return x;
}
