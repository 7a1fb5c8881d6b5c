// Speculative sampling (Leviathan et al. 2023, transformers' `_speculative_sampling`): a draft token
// x sampled from the draft's distribution q is kept with probability min(1, p(x) / q(x)), where p
// is the target's; when it is not, the token is drawn from max(0, p - q) renormalised. The tokens
// that come out are distributed exactly as the target's own samples. Pure functions over processed
// score rows (the same processors and warpers on both sides), so tests can pin them.

import type { Rng } from './sampling.js';

/** softmax(scores) in float64 into `out` (-Infinity scores get 0). */
export function softmaxInto(scores: ArrayLike<number>, out: Float64Array): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < scores.length; i++) if (scores[i]! > max) max = scores[i]!;
  let total = 0;
  for (let i = 0; i < scores.length; i++) {
    const e = scores[i]! === -Infinity ? 0 : Math.exp(scores[i]! - max);
    out[i] = e;
    total += e;
  }
  for (let i = 0; i < scores.length; i++) out[i] = out[i]! / total;
  return out;
}

/** Whether the draft's token survives: u ≤ p(x) / q(x), one uniform draw. */
export function acceptDraft(p: Float64Array, q: Float64Array, token: number, rng: Rng): boolean {
  const qx = q[token]!;
  if (!(qx > 0)) return false; // a draft never samples a token it gives no mass; refuse it if it did
  return rng.nextFloat() <= p[token]! / qx;
}

/**
 * The replacement after a rejection: a draw from max(0, p - q) renormalised. When p and q are equal
 * (nothing left), from p itself, as transformers' clamp-then-divide would be undefined there.
 */
export function sampleResidual(p: Float64Array, q: Float64Array, rng: Rng): number {
  let total = 0;
  for (let i = 0; i < p.length; i++) total += Math.max(0, p[i]! - q[i]!);
  if (!(total > 0)) return sampleFrom(p, rng);
  let u = rng.nextFloat() * total;
  let last = -1;
  for (let i = 0; i < p.length; i++) {
    const w = Math.max(0, p[i]! - q[i]!);
    if (w <= 0) continue;
    last = i;
    u -= w;
    if (u < 0) return i;
  }
  return last;
}

/** A draw from a probability vector. */
export function sampleFrom(p: Float64Array, rng: Rng): number {
  let u = rng.nextFloat();
  let last = -1;
  for (let i = 0; i < p.length; i++) {
    if (!(p[i]! > 0)) continue;
    last = i;
    u -= p[i]!;
    if (u < 0) return i;
  }
  return last;
}
