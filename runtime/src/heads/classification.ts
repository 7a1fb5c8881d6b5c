// Sequence classification as OPTForSequenceClassification does it: the score layer (no bias) on
// the pooled token, which is the last non-padding token of each row, and the scores by problem_type.
//
// Legend: B batch, S tokens, E word_embed_proj_dim (the hidden states' width), N num_labels.

import { UsageError } from '../../../protocol/errors.js';
import { softmaxInPlace } from '../generation/sampling.js';
import type { ProblemType } from './headConfig.js';

/**
 * The pooled position of each row: the rightmost token whose id is not `padTokenId`, found as
 * transformers does (argmax of position × (id ≠ pad)), so it works for left and right padding and
 * a row of padding alone pools position 0. Without a pad id transformers takes the last position,
 * and refuses a batch of more than one row, since padding could not be told from text.
 */
export function pooledPositions(ids: ArrayLike<number | bigint>, batch: number, padTokenId: number | null): number[] {
  const s = ids.length / batch;
  if (padTokenId === null) {
    if (batch > 1)
      throw new UsageError(
        `config.json sets pad_token_id to null, so padding cannot be told from text in a batch of ${batch}: classify one text at a time, or set pad_token_id`,
      );
    return [s - 1];
  }
  const pad = BigInt(padTokenId);
  const out: number[] = [];
  for (let r = 0; r < batch; r++) {
    let at = 0;
    for (let j = 0; j < s; j++) if (BigInt(ids[r * s + j]!) !== pad) at = j;
    out.push(at);
  }
  return out;
}

/**
 * y = W x (+ b) for chosen rows of hidden states [B·S, E], in float32 from float64 sums:
 * returns [rows.length, N]. `weight` is nn.Linear's [N, E].
 */
export function linearAt(
  hidden: Float32Array,
  width: number,
  rows: readonly number[],
  weight: Float32Array,
  bias?: Float32Array,
): Float32Array {
  const n = weight.length / width;
  const out = new Float32Array(rows.length * n);
  for (const [i, row] of rows.entries()) {
    const x = hidden.subarray(row * width, (row + 1) * width);
    for (let o = 0; o < n; o++) {
      let acc = 0;
      for (let k = 0; k < width; k++) acc += weight[o * width + k]! * x[k]!;
      out[i * n + o] = acc + (bias ? bias[o]! : 0);
    }
  }
  return out;
}

export interface LabelScore {
  label: string;
  score: number;
}

/** One row of logits → every label with its score, highest first (ties keep id order). */
export function labelScores(logits: ArrayLike<number>, problemType: ProblemType, labels: readonly string[]): LabelScore[] {
  const values = Array.from(logits, Number);
  let scores: number[];
  if (problemType === 'single_label_classification') {
    const probs = Float64Array.from(values);
    softmaxInPlace(probs);
    scores = Array.from(probs);
  } else if (problemType === 'multi_label_classification') scores = values.map((v) => 1 / (1 + Math.exp(-v)));
  else scores = values; // regression: the raw output
  return scores
    .map((score, i) => ({ label: labels[i] ?? `LABEL_${i}`, score, i }))
    .sort((a, b) => b.score - a.score || a.i - b.i)
    .map(({ label, score }) => ({ label, score }));
}
