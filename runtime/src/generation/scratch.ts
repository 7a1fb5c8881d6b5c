// The reusable buffers the logits processors and the sampler work in, made once per generation so that
// no decode step allocates. Sized to the logits row (the vocabulary).

import { UsageError } from '../../../protocol/errors.js';

/** Histogram bins the mass-based warpers use to find which tokens can matter before sorting. */
export const MASS_BINS = 256;
/** Bins per logit (or per nat of typicality): 256 bins cover 32 units, the last one takes the rest. */
export const BINS_PER_UNIT = 8;

export interface LogitsScratch {
  readonly vocab: number;
  /** Candidate token ids for sorting. */
  readonly idx: Int32Array;
  /** Per-token-id float64 values (probabilities, typicality); also the sampler's weights. */
  readonly probs: Float64Array;
  /** Top-k min-heap of values. */
  readonly heap: Float32Array;
  /** Probability mass per histogram bin (top-p, typical-p). */
  readonly bins: Float64Array;
  /** Repetition penalty: the call in which each id was last penalised, so repeats count once. */
  readonly seen: Uint32Array;
  epoch: number;
}

export function createLogitsScratch(vocab: number): LogitsScratch {
  if (!Number.isInteger(vocab) || vocab < 1) throw new UsageError(`vocabulary size must be a positive integer, got ${vocab}`);
  return {
    vocab,
    idx: new Int32Array(vocab),
    probs: new Float64Array(vocab),
    heap: new Float32Array(vocab),
    bins: new Float64Array(MASS_BINS),
    seen: new Uint32Array(vocab),
    epoch: 0,
  };
}

export function checkScratch(scores: Float32Array, scratch: LogitsScratch): void {
  if (scratch.vocab < scores.length) throw new UsageError(`scratch was made for ${scratch.vocab} tokens but the row has ${scores.length}`);
}

/** The histogram bin of a non-negative distance; +Infinity and NaN land in the last bin. */
export function binOf(distance: number): number {
  const b = distance * BINS_PER_UNIT;
  return b < MASS_BINS - 1 ? b | 0 : MASS_BINS - 1;
}
