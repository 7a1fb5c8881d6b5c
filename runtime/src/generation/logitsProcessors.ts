// transformers' logits processors and sampling warpers for one row of next-token scores, in place, in the
// order `_get_logits_processor` builds them. Nothing allocates per step: make one LogitsScratch per
// generation and pass it to every call. Filtered tokens become -Infinity, as transformers' filter_value.

import { UsageError } from '../../../protocol/errors.js';
import type { ResolvedGenerationOptions } from './generationConfig.js';
import { applyTopP, applyTypicalP } from './massWarpers.js';
import { checkScratch, type LogitsScratch } from './scratch.js';

export { applyTopP, applyTypicalP } from './massWarpers.js';
export { createLogitsScratch, type LogitsScratch } from './scratch.js';

/**
 * RepetitionPenaltyLogitsProcessor: every token id present in `tokens` (prompt included, each id once)
 * has its score divided by `penalty` if positive, multiplied if negative. Arithmetic is float32 with the
 * penalty rounded to float32, as torch does with a Python scalar on a float32 tensor.
 */
export function applyRepetitionPenalty(scores: Float32Array, tokens: ArrayLike<number>, penalty: number, scratch: LogitsScratch): void {
  checkScratch(scores, scratch);
  const p = Math.fround(penalty);
  const seen = scratch.seen;
  if (++scratch.epoch > 0xffffffff) {
    seen.fill(0);
    scratch.epoch = 1;
  }
  const epoch = scratch.epoch;
  const n = scores.length;
  for (let t = 0; t < tokens.length; t++) {
    const id = tokens[t]!;
    if (!(id >= 0 && id < n) || !Number.isInteger(id)) throw new UsageError(`token id ${id} is outside the vocabulary (0..${n - 1})`);
    if (seen[id] === epoch) continue;
    seen[id] = epoch;
    const s = scores[id]!;
    scores[id] = s < 0 ? s * p : s / p;
  }
}

/**
 * NoRepeatNGramLogitsProcessor: bans every token that would complete an n-gram already present in
 * `tokens` (prompt included), i.e. the last token of each earlier n-gram whose first n-1 tokens equal
 * the current last n-1 tokens. No-op while the sequence is shorter than n.
 */
export function applyNoRepeatNgram(scores: Float32Array, tokens: ArrayLike<number>, ngramSize: number): void {
  const n = ngramSize;
  const len = tokens.length;
  if (n < 1 || len < n) return;
  const prefixStart = len - n + 1; // the current last n-1 tokens
  for (let start = 0; start + n <= len; start++) {
    let match = true;
    for (let j = 0; j < n - 1; j++) {
      if (tokens[start + j] !== tokens[prefixStart + j]) {
        match = false;
        break;
      }
    }
    if (match) {
      const banned = tokens[start + n - 1]!;
      if (banned >= 0 && banned < scores.length) scores[banned] = -Infinity;
    }
  }
}

/** Sets the EOS ids' scores to -Infinity. Ids outside the row are ignored (torch.isin finds no match). */
function suppress(scores: Float32Array, eosTokenIds: readonly number[]): void {
  for (const id of eosTokenIds) if (id >= 0 && id < scores.length) scores[id] = -Infinity;
}

/** MinLengthLogitsProcessor: EOS is banned while the sequence (prompt included) is shorter than minLength. */
export function suppressEosBeforeMinLength(
  scores: Float32Array,
  sequenceLength: number,
  minLength: number,
  eosTokenIds: readonly number[],
): void {
  if (sequenceLength < minLength) suppress(scores, eosTokenIds);
}

/** MinNewTokensLengthLogitsProcessor: EOS is banned while fewer than minNewTokens tokens were generated. */
export function suppressEosBeforeMinNewTokens(
  scores: Float32Array,
  generated: number,
  minNewTokens: number,
  eosTokenIds: readonly number[],
): void {
  if (generated < minNewTokens) suppress(scores, eosTokenIds);
}

/** TemperatureLogitsWarper: scores / temperature, in float32 with the temperature rounded to float32 (torch on CPU). */
export function applyTemperature(scores: Float32Array, temperature: number): void {
  const t = Math.fround(temperature);
  for (let i = 0; i < scores.length; i++) scores[i] = scores[i]! / t;
}

/**
 * TopKLogitsWarper (min_tokens_to_keep = 1): removes every score strictly below the k-th largest, so
 * ties with the k-th value are all kept. k <= 0 or k >= vocab leaves the row unchanged (0 = off, as in
 * generate). Selection with a size-k min-heap: O(V) comparisons for small k on typical rows.
 */
export function applyTopK(scores: Float32Array, topK: number, scratch: LogitsScratch): void {
  checkScratch(scores, scratch);
  const n = scores.length;
  const k = Math.floor(topK);
  if (k <= 0 || k >= n) return;
  const heap = scratch.heap;
  for (let i = 0; i < k; i++) heap[i] = scores[i]!;
  for (let i = (k >> 1) - 1; i >= 0; i--) heapDown(heap, i, k);
  let kth = heap[0]!;
  for (let i = k; i < n; i++) {
    const v = scores[i]!;
    if (v > kth) {
      heap[0] = v;
      heapDown(heap, 0, k);
      kth = heap[0]!;
    }
  }
  for (let i = 0; i < n; i++) if (scores[i]! < kth) scores[i] = -Infinity;
}

/**
 * MinPLogitsWarper (min_tokens_to_keep = 1): removes every token less probable than `minP` times the
 * most probable one. Dividing both sides by the softmax's sum, that is exp(score - max) < minP, so no
 * softmax is needed; the most probable token always stays. minP <= 0 is off.
 */
export function applyMinP(scores: Float32Array, minP: number): void {
  if (!(minP > 0)) return;
  let max = -Infinity;
  for (let i = 0; i < scores.length; i++) if (scores[i]! > max) max = scores[i]!;
  if (!(max > -Infinity) || max === Infinity) return; // nothing to rank, or no finite softmax
  const cut = Math.log(minP);
  for (let i = 0; i < scores.length; i++) if (scores[i]! - max < cut) scores[i] = -Infinity;
}

function heapDown(heap: Float32Array, at: number, size: number): void {
  const v = heap[at]!;
  for (;;) {
    let child = 2 * at + 1;
    if (child >= size) break;
    if (child + 1 < size && heap[child + 1]! < heap[child]!) child++;
    if (!(heap[child]! < v)) break;
    heap[at] = heap[child]!;
    at = child;
  }
  heap[at] = v;
}

/** Which processors run and with what values, fixed for one generation. */
export interface LogitsPlan {
  /** 1 = off. */
  readonly repetitionPenalty: number;
  /** 0 = off. */
  readonly noRepeatNgramSize: number;
  /** Total length (prompt included) below which EOS is banned; 0 = off. */
  readonly minLength: number;
  /** 0 = off. */
  readonly minNewTokens: number;
  readonly eosTokenIds: readonly number[];
  /** Whether the sampling warpers below run at all (transformers skips them for greedy decoding). */
  readonly sample: boolean;
  /** 1 = off. */
  readonly temperature: number;
  /** 0 = off. */
  readonly topK: number;
  /** 1 = off. */
  readonly topP: number;
  /** 0 = off. */
  readonly minP: number;
  /** 1 = off. */
  readonly typicalP: number;
}

/** The plan for one prompt; min_new_tokens becomes a total min length, as in `_prepare_generated_length`. */
export function logitsPlan(o: ResolvedGenerationOptions, promptLength: number): LogitsPlan {
  return {
    repetitionPenalty: o.repetition_penalty,
    noRepeatNgramSize: o.no_repeat_ngram_size,
    minLength: o.min_new_tokens !== undefined ? promptLength + o.min_new_tokens : o.min_length,
    minNewTokens: o.min_new_tokens ?? 0,
    eosTokenIds: o.eos_token_id,
    sample: o.do_sample,
    temperature: o.temperature,
    topK: o.top_k,
    topP: o.top_p,
    minP: o.min_p ?? 0,
    typicalP: o.typical_p,
  };
}

/**
 * Runs the processors in `_get_logits_processor`'s order: repetition penalty, no-repeat-ngram, min length,
 * min new tokens, then (sampling only) temperature, top-k, top-p, min-p, typical-p. `tokens` holds the row's
 * prompt and generated ids; `generated` how many of them were generated.
 */
export function processLogits(
  scores: Float32Array,
  tokens: ArrayLike<number>,
  generated: number,
  plan: LogitsPlan,
  scratch: LogitsScratch,
): void {
  if (plan.repetitionPenalty !== 1) applyRepetitionPenalty(scores, tokens, plan.repetitionPenalty, scratch);
  if (plan.noRepeatNgramSize > 0) applyNoRepeatNgram(scores, tokens, plan.noRepeatNgramSize);
  if (plan.minLength > 0) suppressEosBeforeMinLength(scores, tokens.length, plan.minLength, plan.eosTokenIds);
  if (plan.minNewTokens > 0) suppressEosBeforeMinNewTokens(scores, generated, plan.minNewTokens, plan.eosTokenIds);
  if (!plan.sample) return;
  if (plan.temperature !== 1) applyTemperature(scores, plan.temperature);
  if (plan.topK !== 0) applyTopK(scores, plan.topK, scratch);
  if (plan.topP < 1) applyTopP(scores, plan.topP, scratch);
  if (plan.minP > 0) applyMinP(scores, plan.minP);
  if (plan.typicalP < 1) applyTypicalP(scores, plan.typicalP, scratch);
}
