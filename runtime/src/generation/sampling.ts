// Token choice after the logits processors: a small seeded PRNG (xoshiro128**, integer-only so a seed gives
// the same draws on every platform), softmax, categorical sampling by inverse CDF (torch.multinomial's
// role in transformers' `_sample`) and greedy argmax with torch.argmax's tie rule.

import { getRandomValues } from 'node:crypto';
import { UsageError } from '../../../protocol/errors.js';

export interface Rng {
  /** The seed this generator started from; pass it back to createRng to replay the same draws. */
  readonly seed: number;
  /** Next 32 random bits as an unsigned integer. */
  nextUint32(): number;
  /** Uniform in [0, 1), 53 bits. */
  nextFloat(): number;
}

/**
 * xoshiro128** seeded from a safe integer through SplitMix32. Without a seed, one is drawn from crypto
 * randomness (and reported in `seed`, so a run can be replayed).
 */
export function createRng(seed?: number): Rng {
  if (seed === undefined) {
    const words = getRandomValues(new Uint32Array(2));
    seed = (words[0]! & 0x1fffff) * 0x100000000 + words[1]!; // 53 bits: a safe integer
  }
  if (!Number.isSafeInteger(seed)) throw new UsageError(`seed must be a safe integer, got ${seed}`);
  return new Xoshiro128(seed);
}

class Xoshiro128 implements Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(readonly seed: number) {
    // Both 32-bit halves of the seed feed the state, so seeds differing only above bit 32 differ.
    const lo = seed >>> 0;
    const hi = Math.floor(seed / 0x100000000) >>> 0;
    let x = lo;
    const next = (): number => {
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = (next() ^ hi) >>> 0;
    this.s2 = next();
    this.s3 = (next() ^ Math.imul(hi, 0x2545f491)) >>> 0;
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // the all-zero state is a fixed point
  }

  nextUint32(): number {
    const s1 = this.s1;
    const r = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return r;
  }

  nextFloat(): number {
    const a = this.nextUint32() >>> 5; // 27 bits
    const b = this.nextUint32() >>> 6; // 26 bits
    return (a * 67108864 + b) / 9007199254740992;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** softmax over the row, in place. Like torch, a row with no finite maximum yields NaN. */
export function softmaxInPlace(scores: Float32Array | Float64Array): void {
  let max = -Infinity;
  for (let i = 0; i < scores.length; i++) if (scores[i]! > max) max = scores[i]!;
  let sum = 0;
  for (let i = 0; i < scores.length; i++) {
    const e = Math.exp(scores[i]! - max);
    scores[i] = e;
    sum += e;
  }
  for (let i = 0; i < scores.length; i++) scores[i] = scores[i]! / sum;
}

/** Any buffer of at least vocabulary length; a LogitsScratch serves. */
export interface CategoricalScratch {
  readonly probs: Float64Array;
}

export function createCategoricalScratch(vocab: number): CategoricalScratch {
  return { probs: new Float64Array(vocab) };
}

/**
 * Draws a token id from softmax(scores) by inverse CDF: one uniform u in [0, 1) scaled to the total
 * unnormalised mass, then the first id whose running sum exceeds it. -Infinity scores have zero mass and
 * are never drawn. `scores` is left unchanged. Throws when no token can be drawn (all -Infinity, or a
 * NaN / +Infinity score, where torch.multinomial raises too).
 */
export function sampleCategorical(scores: ArrayLike<number>, rng: Rng, scratch: CategoricalScratch): number {
  const n = scores.length;
  if (scratch.probs.length < n) throw new UsageError(`scratch holds ${scratch.probs.length} values but the row has ${n}`);
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (scores[i]! > max) max = scores[i]!;
  const w = scratch.probs;
  let total = 0;
  for (let i = 0; i < n; i++) {
    const x = scores[i]!;
    const e = x === -Infinity ? 0 : Math.exp(x - max);
    w[i] = e;
    total += e;
  }
  if (!(total > 0) || !Number.isFinite(total)) {
    throw new UsageError('cannot sample the next token: every score is -Infinity, or a score is NaN or +Infinity');
  }
  const u = rng.nextFloat() * total;
  let acc = 0;
  let last = -1;
  for (let i = 0; i < n; i++) {
    const e = w[i]!;
    if (e === 0) continue;
    acc += e;
    last = i;
    if (u < acc) return i;
  }
  return last; // u landed past the rounded running sum: the last token with mass
}

/** Index of the largest score, the first one on ties; a NaN counts as largest (torch.argmax). */
export function argmax(scores: ArrayLike<number>): number {
  if (scores.length === 0) throw new UsageError('argmax of an empty row');
  let best = 0;
  let max = scores[0]!;
  if (max !== max) return 0;
  for (let i = 1; i < scores.length; i++) {
    const x = scores[i]!;
    if (x !== x) return i;
    if (x > max) {
      max = x;
      best = i;
    }
  }
  return best;
}
