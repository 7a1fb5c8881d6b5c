// The warpers that rank tokens and keep a probability mass: top-p (TopPLogitsWarper) and typical-p
// (TypicalLogitsWarper), min_tokens_to_keep = 1, in place. transformers sorts the whole vocabulary; here a
// histogram of the mass first bounds which tokens can matter, and only those are sorted (exactly the same
// result: every token outside has at least the target mass ranked before it).

import { sortIdsAscending, sortIdsDescending } from './indexSort.js';
import { binOf, checkScratch, type LogitsScratch, MASS_BINS } from './scratch.js';

/**
 * Float rounding of the histogram's sums must not decide which tokens get sorted: the bins taken hold a
 * little more than the target, and the walk over the sorted tokens falls back to all of them if it
 * still runs out.
 */
const MARGIN = 1e-9;

/**
 * TopPLogitsWarper. transformers sorts ascending, takes the cumulative softmax and removes tokens whose
 * cumulative probability is <= 1 - top_p, keeping the most probable token. Equivalently, walking from the
 * most probable token down, a token is kept iff the mass strictly before it is < top_p. Equal scores are
 * ordered as a stable ascending sort orders them: the lower id counts as less probable. top_p >= 1 is a
 * no-op, as generate does not add the warper then.
 */
export function applyTopP(scores: Float32Array, topP: number, scratch: LogitsScratch): void {
  checkScratch(scores, scratch);
  if (!(topP < 1)) return;
  const n = scores.length;
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (scores[i]! > max) max = scores[i]!;
  if (!(max > -Infinity) || max === Infinity) return; // nothing to rank, or no finite softmax
  const bins = scratch.bins;
  bins.fill(0);
  let total = 0;
  let finite = 0;
  for (let i = 0; i < n; i++) {
    const x = scores[i]!;
    if (x === -Infinity) continue;
    const e = Math.exp(x - max);
    total += e;
    finite++;
    bins[binOf(max - x)]! += e; // bin 0 holds the most probable tokens (binOf is always in range)
  }
  let lastBin = 0;
  for (let acc = bins[0]!; acc < (topP + MARGIN) * total && lastBin < MASS_BINS - 1;) acc += bins[++lastBin]!;

  const idx = scratch.idx;
  const probs = scratch.probs;
  let m: number;
  let keep: number;
  for (;;) {
    m = 0;
    for (let i = 0; i < n; i++) {
      const x = scores[i]!;
      if (x === -Infinity || binOf(max - x) > lastBin) continue;
      probs[i] = Math.exp(x - max) / total;
      idx[m++] = i;
    }
    sortIdsDescending(idx, m, scores);
    keep = 1;
    let before = probs[idx[0]!]!;
    while (keep < m && before < topP) before += probs[idx[keep++]!]!;
    if (!(keep === m && before < topP && m < finite)) break;
    lastBin = MASS_BINS - 1; // the candidates ran out before top_p: rank every finite token
  }
  const lastId = idx[keep - 1]!;
  const lastValue = scores[lastId]!;
  for (let i = 0; i < n; i++) {
    const x = scores[i]!;
    if (x < lastValue || (x === lastValue && i < lastId)) scores[i] = -Infinity;
  }
}

/**
 * TypicalLogitsWarper. Tokens are ranked by |-log p - H| (H the entropy); last_ind is how many of them,
 * in that order, have cumulative probability < mass; every token farther from H than the token at
 * last_ind is removed (ties with it stay), and the most typical token always stays. Already-filtered
 * tokens (-Infinity) have infinite distance and stay filtered. mass >= 1 is a no-op (generate skips it).
 */
export function applyTypicalP(scores: Float32Array, mass: number, scratch: LogitsScratch): void {
  checkScratch(scores, scratch);
  if (!(mass < 1)) return;
  const n = scores.length;
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (scores[i]! > max) max = scores[i]!;
  if (!(max > -Infinity) || max === Infinity) return;
  let sum = 0;
  let finite = 0;
  for (let i = 0; i < n; i++) {
    const x = scores[i]!;
    if (x === -Infinity) continue;
    sum += Math.exp(x - max);
    finite++;
  }
  const logZ = max + Math.log(sum);
  let entropy = 0; // transformers' nansum: the -inf * 0 terms of filtered tokens are skipped
  for (let i = 0; i < n; i++) {
    const x = scores[i]!;
    if (x === -Infinity) continue;
    const logp = x - logZ;
    entropy -= Math.exp(logp) * logp;
  }
  const shifted = scratch.probs;
  const bins = scratch.bins;
  bins.fill(0);
  for (let i = 0; i < n; i++) {
    const x = scores[i]!;
    if (x === -Infinity) continue;
    const s = Math.abs(-(x - logZ) - entropy);
    shifted[i] = s;
    bins[binOf(s)]! += Math.exp(x - logZ); // bin 0 holds the most typical tokens (binOf is always in range)
  }
  let lastBin = 0;
  for (let acc = bins[0]!; acc < mass + MARGIN && lastBin < MASS_BINS - 1;) acc += bins[++lastBin]!;

  const idx = scratch.idx;
  let m: number;
  let lastInd: number;
  for (;;) {
    m = 0;
    for (let i = 0; i < n; i++) if (scores[i]! !== -Infinity && binOf(shifted[i]!) <= lastBin) idx[m++] = i;
    sortIdsAscending(idx, m, shifted);
    // last_ind: the sum only grows, so the tokens with cumulative probability < mass are a prefix.
    let cumulative = 0;
    for (lastInd = 0; lastInd < m; lastInd++) {
      cumulative += Math.exp(scores[idx[lastInd]!]! - logZ);
      if (!(cumulative < mass)) break;
    }
    if (lastInd < m || m === finite) break;
    lastBin = MASS_BINS - 1; // the candidates ran out before the mass: rank every finite token
  }
  // Past every finite token the threshold is +Infinity (or the clamped last token): nothing is removed.
  if (lastInd >= m) return;
  const threshold = shifted[idx[lastInd]!]!;
  for (let i = 0; i < n; i++) if (scores[i]! !== -Infinity && shifted[i]! > threshold) scores[i] = -Infinity;
}
