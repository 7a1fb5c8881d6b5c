// Scripted checkpoints with a classification or question-answering head, for the end-to-end tests:
// the fixture generator's checkpoint (test/fixtures/optCheckpoint.ts, `architecture` option: real
// Hugging Face layout, tokenizer and head tensors) with weights rewritten so the outcome is known.
// The real runtime still runs the real graph (layers, layer norms, the head) on them.
//
// How (as scriptedModel.ts): the layers' output projections (attention out_proj, fc2) and the
// position embeddings are zeroed, so each position's final hidden state is LayerNorm(embedding of
// its own token). Each scripted token's embedding is +1/-1 on its own pair of dimensions (LayerNorm
// turns that into ±sqrt(H/2)) and every other token's embedding is 0 on those pairs (so LayerNorm
// gives both dimensions of a pair the same value, which a +w/-w head row reads as exactly 0). The
// head rows read the pairs:
//  - classifier: label i's row of `score` reads the pair of the token chosen for it, so a text whose
//    last token (the pooled one) is that token gets logit 2w·sqrt(H/2) for label i and 0 elsewhere;
//  - question answering: `qa_outputs` row 0 (start) reads the start token's pair, row 1 (end) the
//    end token's, so the best span runs from the start token to the end token.

import { join } from 'node:path';
import { OptTokenizer } from '../../runtime/src/tokenizer/optTokenizer.js';
import { writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { type TensorView, editSafetensors, silenceLayers } from './scriptedModel.js';

export interface ScriptedHeadShape {
  seed: number;
  hiddenSize?: number;
  layers?: number;
  maxPositions?: number;
}

/** The logit a scripted token gives the row reading its pair: 2·w·sqrt(H/2). */
export function scriptedLogit(weight: number, hiddenSize: number): number {
  return 2 * weight * Math.sqrt(hiddenSize / 2);
}

/**
 * An OPTForSequenceClassification checkpoint: `labels` maps each label (in id order) to the
 * single-token text that, as the last token of a text, raises it by `logit`.
 */
export async function writeScriptedClassifier(
  dir: string,
  o: ScriptedHeadShape & { labels: [string, string][]; logit: number },
): Promise<void> {
  const H = o.hiddenSize ?? 64;
  const id2label = Object.fromEntries(o.labels.map(([label], i) => [String(i), label]));
  const label2id = Object.fromEntries(o.labels.map(([label], i) => [label, i]));
  await writeOptCheckpoint(dir, {
    architecture: 'OPTForSequenceClassification',
    tokenizer: true,
    seed: o.seed,
    config: { ...shapeConfig(o), id2label, label2id, num_labels: o.labels.length },
  });
  const ids = await tokenIds(
    dir,
    o.labels.map(([, text]) => text),
  );
  await rewrite(dir, H, ids, (tensor, pairOf) => {
    const score = tensor('score.weight').data;
    score.fill(0);
    const w = o.logit / scriptedLogit(1, H);
    for (const [i, [, text]] of o.labels.entries()) {
      const p = pairOf(ids.get(text)!);
      score[i * H + 2 * p] = w;
      score[i * H + 2 * p + 1] = -w;
    }
  });
}

/**
 * An OPTForQuestionAnswering checkpoint whose start logit is `logit` on the `start` token and 0
 * elsewhere, and likewise its end logit on the `end` token (single-token texts as they occur in the
 * context, e.g. ' Paris').
 */
export async function writeScriptedQa(dir: string, o: ScriptedHeadShape & { start: string; end: string; logit: number }): Promise<void> {
  const H = o.hiddenSize ?? 64;
  await writeOptCheckpoint(dir, { architecture: 'OPTForQuestionAnswering', tokenizer: true, seed: o.seed, config: shapeConfig(o) });
  const ids = await tokenIds(dir, [o.start, o.end]);
  await rewrite(dir, H, ids, (tensor, pairOf) => {
    const weight = tensor('qa_outputs.weight').data;
    weight.fill(0);
    tensor('qa_outputs.bias').data.fill(0);
    const w = o.logit / scriptedLogit(1, H);
    for (const [row, text] of [
      [0, o.start],
      [1, o.end],
    ] as const) {
      const p = pairOf(ids.get(text)!);
      weight[row * H + 2 * p] = w;
      weight[row * H + 2 * p + 1] = -w;
    }
  });
}

function shapeConfig(o: ScriptedHeadShape): Record<string, number> {
  const H = o.hiddenSize ?? 64;
  return {
    hidden_size: H,
    word_embed_proj_dim: H,
    ffn_dim: 2 * H,
    num_hidden_layers: o.layers ?? 2,
    num_attention_heads: 4,
    max_position_embeddings: o.maxPositions ?? 512,
  };
}

/** Each text's token id; each must be exactly one token. */
async function tokenIds(dir: string, texts: string[]): Promise<Map<string, number>> {
  const tokenizer = await OptTokenizer.fromDir(dir);
  const ids = new Map<string, number>();
  for (const text of texts) {
    const got = await tokenizer.encode(text, { addSpecialTokens: false });
    if (got.length !== 1) throw new Error(`scripted head: ${JSON.stringify(text)} is ${got.length} tokens (${got.join(', ')}), not one`);
    ids.set(text, got[0]!);
  }
  return ids;
}

/** Rewrites model.safetensors in place: the body as described at the top, then `head`. */
async function rewrite(
  dir: string,
  H: number,
  ids: Map<string, number>,
  head: (tensor: TensorView, pairOf: (token: number) => number) => void,
): Promise<void> {
  await editSafetensors(join(dir, 'model.safetensors'), (f) => {
    const { tensor, prefix } = f;
    silenceLayers(f);
    const scripted = [...new Set(ids.values())];
    if (2 * scripted.length > H) throw new Error('scripted head: too many scripted tokens for the hidden size');
    const pairOf = new Map(scripted.map((t, i) => [t, i]));
    const embed = tensor(`${prefix}embed_tokens.weight`).data;
    for (let t = 0; t < embed.length / H; t++) {
      const row = embed.subarray(t * H, (t + 1) * H);
      const own = pairOf.get(t);
      if (own !== undefined) {
        row.fill(0);
        row[2 * own] = 1;
        row[2 * own + 1] = -1;
      } else {
        row.fill(0, 0, 2 * scripted.length);
      }
    }
    head(tensor, (t) => pairOf.get(t)!);
  });
}
