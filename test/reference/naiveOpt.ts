// A deliberately naive reference forward pass of Hugging Face transformers' OPTForCausalLM, used
// only by tests as the oracle for the optimized ONNX graph. It follows `modeling_opt.py` with
// eager attention, step by step, in float64, with plain loops and no caching or fusing: it is
// meant to be read next to the Python code, not to be fast.
//
// Semantics mirrored from transformers (see also shared/notes/opt-on-onnxruntime.md §1):
// - positions = cumsum(mask, 1) * mask - 1, looked up at +2 in embed_positions (pads read row 1);
// - h0 = project_in(embed_tokens(ids)) + embed_positions(pos), no sqrt(d) scale;
// - attention: q = (x Wq^T + bq) * head_dim^-0.5, scores q.k^T plus an additive mask that is
//   either 0 or float32 finfo.min (never the sum of two finfo.min), softmax per row. A row whose
//   keys are all masked (a left-pad query) becomes uniform over ALL keys, future ones included,
//   exactly as HF's eager path does;
// - pre-LN blocks (x + attn(LN1 x), then x + fc2(act(fc1(LN2 x)))) or post-LN blocks (opt-350m:
//   h = LN1(x + attn(x)), y = LN2(h + fc2(act(fc1(h))))); LayerNorm eps 1e-5, biased variance;
// - final LayerNorm only when pre-LN and not _remove_final_layer_norm, then project_out;
// - lm_head (no bias) on every position.
// It imports nothing from runtime/ on purpose: it must stay independent of the code it checks.
//
// Shape letters in comments: B batch, S sequence (query positions), T key positions (= S here, no
// cache), H hidden_size, P word_embed_proj_dim, F ffn_dim, V vocab_size, nh heads, hd head_dim.

import { mulberry32 } from '../helpers/prng.js';

export interface NaiveOptConfig {
  // field names exactly as in config.json
  vocab_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  ffn_dim: number;
  max_position_embeddings: number;
  word_embed_proj_dim: number;
  do_layer_norm_before: boolean;
  _remove_final_layer_norm?: boolean;
  enable_bias: boolean;
  layer_norm_elementwise_affine: boolean;
  /** 'relu' in all OPT checkpoints; also 'gelu' (erf), 'gelu_new' / 'gelu_pytorch_tanh' (tanh), 'silu'. */
  activation_function: string;
}

/**
 * Canonical HF parameter name → row-major values in PyTorch's shape (nn.Linear weight is [out, in]).
 * See expectedShapes() for the full list of names a config uses.
 */
export type NaiveWeights = (name: string) => Float64Array | Float32Array;

export interface NaiveOptOutput {
  /** [B][S] → V logits (empty with skipLogits). */
  logits: Float64Array[][];
  /** [B][S] → P values: the decoder output after the final LayerNorm and project_out (OPTModel's last_hidden_state). */
  lastHiddenState: Float64Array[][];
  /**
   * Only with outputHiddenStates: num_hidden_layers + 1 entries, as HF's output_hidden_states:
   * [0] the embeddings (after project_in + positions, H wide), [i] the output of layer i - 1 for
   * i < num_hidden_layers, and the LAST entry is lastHiddenState itself (after the final LayerNorm
   * and project_out, so P wide), not the raw output of the last layer.
   */
  hiddenStates?: Float64Array[][][];
}

/** torch.finfo(torch.float32).min: the value HF's eager mask adds at masked positions. */
export const FLOAT32_MIN = -3.4028234663852886e38;
/** nn.LayerNorm's default epsilon (OPTConfig has no field for it). */
export const LAYER_NORM_EPS = 1e-5;
/** OPTLearnedPositionalEmbedding's offset. */
export const POSITION_OFFSET = 2;

// ---------------------------------------------------------------------------------------------
// Activations

/** erf(x) to double precision: erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_n 2^n x^(2n+1) / (1*3*...*(2n+1)). */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const ax = Math.abs(x);
  if (ax >= 6) return Math.sign(x); // erfc(6) ~ 2e-17: below double precision
  // Every term of this series is positive, so there is no cancellation.
  let term = ax;
  let sum = ax;
  for (let n = 1; term > sum * 1e-17; n++) {
    term *= (2 * ax * ax) / (2 * n + 1);
    sum += term;
  }
  const value = (2 / Math.sqrt(Math.PI)) * Math.exp(-ax * ax) * sum;
  return x < 0 ? -value : value;
}

/** The activation named by config.activation_function, as transformers' ACT2FN computes it. */
export function activationFunction(name: string): (x: number) => number {
  switch (name) {
    case 'relu':
      return (x) => (x > 0 ? x : 0);
    case 'gelu': // nn.functional.gelu, exact (erf) form
      return (x) => 0.5 * x * (1 + erf(x / Math.SQRT2));
    case 'gelu_new': // NewGELUActivation
    case 'gelu_pytorch_tanh': // nn.functional.gelu(approximate='tanh'): same formula
      return (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
    case 'silu':
      return (x) => x / (1 + Math.exp(-x));
    default:
      throw new Error(`naiveOpt: unsupported activation_function '${name}'`);
  }
}

// ---------------------------------------------------------------------------------------------
// Building blocks on one vector

/** y = W x + b for an nn.Linear with weight [outDim, inDim] (row-major) and optional bias [outDim]. */
function linear(
  x: Float64Array,
  weight: Float64Array | Float32Array,
  bias: Float64Array | Float32Array | undefined,
  outDim: number,
): Float64Array {
  const inDim = x.length;
  const y = new Float64Array(outDim);
  for (let o = 0; o < outDim; o++) {
    let acc = 0;
    for (let i = 0; i < inDim; i++) acc += weight[o * inDim + i]! * x[i]!;
    y[o] = acc + (bias ? bias[o]! : 0);
  }
  return y;
}

/** nn.LayerNorm over the whole vector: biased variance, eps 1e-5, optional elementwise affine. */
function layerNorm(
  x: Float64Array,
  weight: Float64Array | Float32Array | undefined,
  bias: Float64Array | Float32Array | undefined,
): Float64Array {
  const n = x.length;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += x[i]!;
  mean /= n;
  let variance = 0;
  for (let i = 0; i < n; i++) variance += (x[i]! - mean) * (x[i]! - mean);
  variance /= n;
  const inv = 1 / Math.sqrt(variance + LAYER_NORM_EPS);
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = (x[i]! - mean) * inv * (weight ? weight[i]! : 1) + (bias ? bias[i]! : 0);
  }
  return y;
}

function add(a: Float64Array, b: Float64Array): Float64Array {
  const y = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) y[i] = a[i]! + b[i]!;
  return y;
}

// ---------------------------------------------------------------------------------------------
// Parameter names and shapes

/**
 * Every parameter of OPTForCausalLM for this config with its PyTorch shape, in the order of HF's
 * state_dict (module registration order: note k, v, q, out inside self_attn). lm_head.weight is
 * always listed; in a tied checkpoint it is the same tensor as embed_tokens.
 */
export function expectedShapes(config: NaiveOptConfig): Map<string, number[]> {
  const { vocab_size: V, hidden_size: H, word_embed_proj_dim: P, ffn_dim: F } = config;
  const shapes = new Map<string, number[]>();
  const d = 'model.decoder.';
  shapes.set(`${d}embed_tokens.weight`, [V, P]);
  shapes.set(`${d}embed_positions.weight`, [config.max_position_embeddings + POSITION_OFFSET, H]);
  if (P !== H) {
    shapes.set(`${d}project_out.weight`, [P, H]);
    shapes.set(`${d}project_in.weight`, [H, P]);
  }
  const affine = config.layer_norm_elementwise_affine;
  if (hasFinalLayerNorm(config) && affine) {
    shapes.set(`${d}final_layer_norm.weight`, [H]);
    shapes.set(`${d}final_layer_norm.bias`, [H]);
  }
  const linearShapes = (prefix: string, out: number, inp: number): void => {
    shapes.set(`${prefix}.weight`, [out, inp]);
    if (config.enable_bias) shapes.set(`${prefix}.bias`, [out]);
  };
  const layerNormShapes = (prefix: string): void => {
    if (!affine) return;
    shapes.set(`${prefix}.weight`, [H]);
    shapes.set(`${prefix}.bias`, [H]);
  };
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const p = `${d}layers.${l}.`;
    for (const proj of ['k_proj', 'v_proj', 'q_proj', 'out_proj']) linearShapes(`${p}self_attn.${proj}`, H, H);
    layerNormShapes(`${p}self_attn_layer_norm`);
    linearShapes(`${p}fc1`, F, H);
    linearShapes(`${p}fc2`, H, F);
    layerNormShapes(`${p}final_layer_norm`);
  }
  shapes.set('lm_head.weight', [V, P]);
  return shapes;
}

function hasFinalLayerNorm(config: NaiveOptConfig): boolean {
  return config.do_layer_norm_before && !config._remove_final_layer_norm;
}

/** A NaiveWeights over a Map that throws on unknown names; lm_head.weight falls back to embed_tokens (tied). */
export function weightsFromMap(map: ReadonlyMap<string, Float64Array | Float32Array>): NaiveWeights {
  return (name) => {
    const found = map.get(name) ?? (name === 'lm_head.weight' ? map.get('model.decoder.embed_tokens.weight') : undefined);
    if (!found) throw new Error(`naiveOpt: no weight named '${name}'`);
    return found;
  };
}

// ---------------------------------------------------------------------------------------------
// Seeded random weights for fixtures

export interface RandomOptWeights {
  /** Parameter name → values (Float32, as a checkpoint would hold them). Tied: lm_head.weight === embed_tokens. */
  tensors: Map<string, Float32Array>;
  /** Parameter name → PyTorch shape, the same keys and order as tensors (expectedShapes(config)). */
  shapes: Map<string, number[]>;
}

/**
 * Deterministic random weights for every parameter of the config (same seed → same values).
 * Scales are chosen so a tiny test model is numerically lively rather than near-uniform:
 * - nn.Linear weights ~ N(0, 1/in_features) by default (options.std overrides with N(0, std^2),
 *   e.g. 0.02 as HF's init_std), so attention rows are peaked and masking bugs show in the logits;
 * - embeddings ~ N(0, 1/dim) (all rows, including padding_idx 1 and positional rows 0 and 1);
 * - biases ~ N(0, 0.1^2), LayerNorm weight 1 + N(0, 0.1^2) and bias N(0, 0.1^2).
 * options.tied (default true, as every OPT checkpoint): lm_head.weight is the embed_tokens array.
 */
export function randomOptWeights(config: NaiveOptConfig, seed: number, options: { tied?: boolean; std?: number } = {}): RandomOptWeights {
  const tied = options.tied ?? true;
  const random = mulberry32(seed);
  const normal = (): number => {
    // Box-Muller; 1 - u is in (0, 1], so the log is finite.
    const u = 1 - random();
    const v = random();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
  const shapes = expectedShapes(config);
  const tensors = new Map<string, Float32Array>();
  for (const [name, shape] of shapes) {
    if (name === 'lm_head.weight' && tied) {
      tensors.set(name, tensors.get('model.decoder.embed_tokens.weight')!);
      continue;
    }
    const size = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(size);
    const isLayerNorm = name.includes('layer_norm');
    const isEmbedding = name.includes('embed_');
    for (let i = 0; i < size; i++) {
      if (isLayerNorm && name.endsWith('.weight')) values[i] = 1 + 0.1 * normal();
      else if (name.endsWith('.bias')) values[i] = 0.1 * normal();
      else if (isEmbedding) values[i] = normal() / Math.sqrt(shape[1]!);
      else values[i] = normal() * (options.std ?? 1 / Math.sqrt(shape[1]!));
    }
    tensors.set(name, values);
  }
  return { tensors, shapes };
}

// ---------------------------------------------------------------------------------------------
// The forward pass

/**
 * OPTForCausalLM.forward(input_ids, attention_mask) with eager attention and no cache, in float64.
 * inputIds: [B][S]; attentionMask: [B][S] of 0/1 (default all ones), left padding being the usual case.
 */
export function naiveOptForward(
  config: NaiveOptConfig,
  weights: NaiveWeights,
  inputIds: number[][],
  attentionMask?: number[][],
  options: {
    outputHiddenStates?: boolean;
    /** Skip lm_head (the heads other than the causal LM read lastHiddenState only). */ skipLogits?: boolean;
  } = {},
): NaiveOptOutput {
  const { vocab_size: V, hidden_size: H, word_embed_proj_dim: P, ffn_dim: F } = config;
  const nh = config.num_attention_heads;
  const hd = H / nh;
  if (!Number.isInteger(hd)) throw new Error(`naiveOpt: hidden_size ${H} is not divisible by num_attention_heads ${nh}`);
  const act = activationFunction(config.activation_function); // throws early on an unsupported name

  const B = inputIds.length;
  const S = B > 0 ? inputIds[0]!.length : 0;
  const mask = attentionMask ?? inputIds.map((row) => row.map(() => 1));
  for (let b = 0; b < B; b++) {
    if (inputIds[b]!.length !== S || mask[b]?.length !== S) throw new Error('naiveOpt: inputIds and attentionMask must be [B][S]');
    for (let s = 0; s < S; s++) {
      if (mask[b]![s] !== 0 && mask[b]![s] !== 1) throw new Error('naiveOpt: attentionMask values must be 0 or 1');
      const id = inputIds[b]![s]!;
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new Error(`naiveOpt: token id ${id} outside [0, ${V})`);
    }
  }

  // Fetch a parameter and check its size against its PyTorch shape.
  const shapes = expectedShapes(config);
  const param = (name: string): Float64Array | Float32Array => {
    const shape = shapes.get(name);
    if (!shape) throw new Error(`naiveOpt: '${name}' is not a parameter of this config`);
    const values = weights(name);
    const size = shape.reduce((a, b) => a * b, 1);
    if (values.length !== size) throw new Error(`naiveOpt: '${name}' has ${values.length} values, expected [${shape.join(', ')}]`);
    return values;
  };
  const optionalBias = (name: string) => (config.enable_bias ? param(name) : undefined);
  const layerNormParams = (prefix: string) =>
    config.layer_norm_elementwise_affine
      ? { weight: param(`${prefix}.weight`), bias: param(`${prefix}.bias`) }
      : { weight: undefined, bias: undefined };

  // Positions: cumsum(mask, 1) * mask - 1, then + 2 into the table (a pad reads row 1). [B][S]
  const positions: number[][] = [];
  for (let b = 0; b < B; b++) {
    const row: number[] = [];
    let cumsum = 0;
    for (let s = 0; s < S; s++) {
      cumsum += mask[b]![s]!;
      row.push(cumsum * mask[b]![s]! - 1 + POSITION_OFFSET);
    }
    positions.push(row);
  }

  // Additive attention mask [B][S][T]: finfo.min where the key is in the future (t > s) or is
  // padding, else 0. HF fills masked entries with finfo.min once (masked_fill), never summing two.
  const attnBias: number[][][] = [];
  for (let b = 0; b < B; b++) {
    attnBias.push([]);
    for (let s = 0; s < S; s++) {
      const row: number[] = [];
      for (let t = 0; t < S; t++) row.push(t > s || mask[b]![t] === 0 ? FLOAT32_MIN : 0);
      attnBias[b]!.push(row);
    }
  }

  // Embeddings: project_in(embed_tokens[id]) + embed_positions[pos]. [B][S] → H
  const embedTokens = param('model.decoder.embed_tokens.weight');
  const embedPositions = param('model.decoder.embed_positions.weight');
  const projectIn = P !== H ? param('model.decoder.project_in.weight') : undefined;
  let hidden: Float64Array[][] = [];
  for (let b = 0; b < B; b++) {
    hidden.push([]);
    for (let s = 0; s < S; s++) {
      const id = inputIds[b]![s]!;
      let x: Float64Array = Float64Array.from(embedTokens.subarray(id * P, (id + 1) * P)); // P
      if (projectIn) x = linear(x, projectIn, undefined, H); // P → H
      const pos = positions[b]![s]!;
      const posRow = Float64Array.from(embedPositions.subarray(pos * H, (pos + 1) * H));
      hidden[b]!.push(add(x, posRow));
    }
  }

  const allHiddenStates: Float64Array[][][] = [];

  for (let l = 0; l < config.num_hidden_layers; l++) {
    if (options.outputHiddenStates) allHiddenStates.push(hidden);
    const p = `model.decoder.layers.${l}.`;
    const wq = param(`${p}self_attn.q_proj.weight`);
    const bq = optionalBias(`${p}self_attn.q_proj.bias`);
    const wk = param(`${p}self_attn.k_proj.weight`);
    const bk = optionalBias(`${p}self_attn.k_proj.bias`);
    const wv = param(`${p}self_attn.v_proj.weight`);
    const bv = optionalBias(`${p}self_attn.v_proj.bias`);
    const wo = param(`${p}self_attn.out_proj.weight`);
    const bo = optionalBias(`${p}self_attn.out_proj.bias`);
    const ln1 = layerNormParams(`${p}self_attn_layer_norm`);
    const w1 = param(`${p}fc1.weight`);
    const b1 = optionalBias(`${p}fc1.bias`);
    const w2 = param(`${p}fc2.weight`);
    const b2 = optionalBias(`${p}fc2.bias`);
    const ln2 = layerNormParams(`${p}final_layer_norm`);

    const next: Float64Array[][] = [];
    for (let b = 0; b < B; b++) {
      const x = hidden[b]!; // [S] → H

      // --- self-attention block ---
      const attnIn = config.do_layer_norm_before ? x.map((v) => layerNorm(v, ln1.weight, ln1.bias)) : x;
      // q is scaled after the projection, bias included. [S] → H (heads side by side: nh × hd)
      const scaling = hd ** -0.5;
      const q = attnIn.map((v) => linear(v, wq, bq, H).map((e) => e * scaling));
      const k = attnIn.map((v) => linear(v, wk, bk, H));
      const vv = attnIn.map((v) => linear(v, wv, bv, H));
      const context: Float64Array[] = attnIn.map(() => new Float64Array(H)); // [S] → H
      for (let h = 0; h < nh; h++) {
        for (let s = 0; s < S; s++) {
          // scores over keys t: q_s . k_t + mask. [T]
          const scores = new Float64Array(S);
          for (let t = 0; t < S; t++) {
            let dot = 0;
            for (let d = 0; d < hd; d++) dot += q[s]![h * hd + d]! * k[t]![h * hd + d]!;
            scores[t] = dot + attnBias[b]![s]![t]!;
          }
          // softmax over t. With |dot| far below 2^74, dot + finfo.min == finfo.min exactly, so a
          // fully masked row is all-equal and comes out uniform, as in HF (no NaN).
          let max = -Infinity;
          for (let t = 0; t < S; t++) max = Math.max(max, scores[t]!);
          let sum = 0;
          for (let t = 0; t < S; t++) {
            scores[t] = Math.exp(scores[t]! - max);
            sum += scores[t]!;
          }
          for (let t = 0; t < S; t++) scores[t] = scores[t]! / sum;
          // context_s = sum_t p_t v_t for this head. [hd]
          for (let d = 0; d < hd; d++) {
            let acc = 0;
            for (let t = 0; t < S; t++) acc += scores[t]! * vv[t]![h * hd + d]!;
            context[s]![h * hd + d] = acc;
          }
        }
      }
      const attnOut = context.map((c) => linear(c, wo, bo, H)); // [S] → H
      let afterAttn = x.map((v, s) => add(v, attnOut[s]!));
      if (!config.do_layer_norm_before) afterAttn = afterAttn.map((v) => layerNorm(v, ln1.weight, ln1.bias));

      // --- feed-forward block (its residual is afterAttn, already normalized in post-LN) ---
      const ffnIn = config.do_layer_norm_before ? afterAttn.map((v) => layerNorm(v, ln2.weight, ln2.bias)) : afterAttn;
      let out = afterAttn.map((residual, s) => {
        const up = linear(ffnIn[s]!, w1, b1, F).map(act); // F
        return add(residual, linear(up, w2, b2, H)); // H
      });
      if (!config.do_layer_norm_before) out = out.map((v) => layerNorm(v, ln2.weight, ln2.bias));
      next.push(out);
    }
    hidden = next;
  }

  // Final LayerNorm (pre-LN models that kept it), then project_out (H → P). [B][S] → P
  if (hasFinalLayerNorm(config)) {
    const lnf = layerNormParams('model.decoder.final_layer_norm');
    hidden = hidden.map((row) => row.map((v) => layerNorm(v, lnf.weight, lnf.bias)));
  }
  if (P !== H) {
    const projectOut = param('model.decoder.project_out.weight');
    hidden = hidden.map((row) => row.map((v) => linear(v, projectOut, undefined, P)));
  }
  if (options.outputHiddenStates) allHiddenStates.push(hidden);

  // lm_head, no bias, on every position. [B][S] → V
  const lmHead = options.skipLogits ? undefined : param('lm_head.weight');
  const logits = lmHead ? hidden.map((row) => row.map((v) => linear(v, lmHead, undefined, V))) : [];

  const result: NaiveOptOutput = { logits, lastHiddenState: hidden };
  if (options.outputHiddenStates) result.hiddenStates = allHiddenStates;
  return result;
}

// ---------------------------------------------------------------------------------------------
// The other heads, on lastHiddenState (modeling_opt.py's OPTForSequenceClassification and
// OPTForQuestionAnswering), written out as plainly as the rest.

/**
 * OPTForSequenceClassification: score = Linear(P, N, bias=False) on every position, then the row's
 * pooled position: argmax over s of s * (id != pad), i.e. the rightmost non-pad token (0 if none);
 * with no pad id, the last position (transformers refuses batches of more than one then). [B] → N
 */
export function naiveSequenceClassification(
  lastHiddenState: Float64Array[][],
  inputIds: number[][],
  scoreWeight: Float32Array | Float64Array,
  numLabels: number,
  padTokenId: number | null,
): Float64Array[] {
  if (padTokenId === null && inputIds.length > 1) throw new Error('Cannot handle batch sizes > 1 if no padding token is defined.');
  return lastHiddenState.map((row, b) => {
    const ids = inputIds[b]!;
    let pooled = ids.length - 1;
    if (padTokenId !== null) {
      let best = 0,
        bestValue = -1;
      for (let s = 0; s < ids.length; s++) {
        const v = s * (ids[s] !== padTokenId ? 1 : 0);
        if (v > bestValue) [best, bestValue] = [s, v];
      }
      pooled = best;
    }
    return linear(row[pooled]!, scoreWeight, undefined, numLabels);
  });
}

/** OPTForQuestionAnswering: qa_outputs = Linear(P, 2) with bias on every position, split into start and end. [B][S] each */
export function naiveQuestionAnswering(
  lastHiddenState: Float64Array[][],
  qaWeight: Float32Array | Float64Array,
  qaBias: Float32Array | Float64Array,
): { start: number[][]; end: number[][] } {
  const both = lastHiddenState.map((row) => row.map((v) => linear(v, qaWeight, qaBias, 2)));
  return { start: both.map((row) => row.map((x) => x[0]!)), end: both.map((row) => row.map((x) => x[1]!)) };
}
