// Builds the OPT decoder (OPTForCausalLM) as an ONNX graph from the checkpoint's weights,
// following transformers' modeling_opt.py exactly: learned positions from the attention mask
// with HF's +2 offset, the head_dim**-0.5 scale folded into q_proj, pre- or post-LayerNorm
// blocks, optional project_in/out, and logits only for the last `num_logits_to_keep` positions.
//
// Legend: B batch, S new tokens, P past tokens, T = P + S, N = B * S rows, D hidden, E embedding
// (word_embed_proj_dim), F ffn, H heads, hd head dim, V vocab rows, K positions whose logits are kept.

import { type OptConfig, LAYER_NORM_EPS, POSITION_OFFSET, hasFinalLayerNorm, hasProjection, headDim } from '../config.js';
import { toFloat16Bits, floatToHalf } from '../checkpoint/dtype.js';
import { type ElemType, type GraphBuilder, float } from './graphBuilder.js';
import { quantizeBlockwise } from './quantize.js';

export type GraphDtype = 'fp32' | 'fp16' | 'int8' | 'int4';

/**
 * How the graph takes and returns the key/value cache:
 * - append: the past is a caller-owned [B, H, capacity, hd] buffer read as an input (onnxruntime
 *   wraps input buffers without copying), attention runs over it and the new tokens without joining
 *   them, and the graph returns only the new keys/values (`new_key_values.*`, [B, H, S, hd]) for
 *   the caller to write into the buffer. Nothing in proportion to the context is copied per step:
 *   the CPU default.
 * - inplace: GroupQueryAttention over a [B, H, capacity, hd] buffer bound as both past and present
 *   and updated in place: for a device-resident cache (GPU), where no output is copied back.
 * - concat: the cache grows by Concat, `present.*` returns all of it (Optimum / transformers.js).
 * - none: no cache at all (one pass over a whole text, e.g. for hidden states).
 */
export type KvCacheLayout = 'append' | 'inplace' | 'concat' | 'none';

/**
 * Storage type of the append layout's cache buffers in a float32 graph (fp16 graphs always keep an
 * fp16 cache). fp16 halves the cache's memory; onnxruntime 1.30's CPU provider then casts each
 * layer's buffers to float32 before the attention matmuls (its fp16 MatMul is slower still), a
 * pass that costs more time than the halved read saves (bench/kvPrecision.ts).
 */
export type KvDtype = 'fp32' | 'fp16';

export interface OptGraphOptions {
  dtype: GraphDtype;
  /**
   * Use onnxruntime's contrib operators: GroupQueryAttention over a fixed-capacity KV cache that is
   * updated in place (past and present share one buffer of `max_sequence_length` positions) and
   * SkipLayerNormalization. Otherwise plain ONNX operators, the cache growing by Concat (Optimum's layout).
   */
  fused: boolean;
  /** Declare the `num_logits_to_keep` input; without it the graph returns logits for every position (Optimum's layout). */
  logitsToKeepInput: boolean;
  /**
   * MatMulNBits block size (default: 128 for int8, whose error is small at any block size, so fewer
   * scales to read per step; 32 for int4, where smaller blocks buy accuracy).
   */
  blockSize?: number;
  /** MatMulNBits accuracy_level: 4 (int8 compute) is the only fast choice on the CPU provider. */
  accuracyLevel: number;
  /** int8/int4 with a tied lm_head: gather token embeddings from the quantized matrix (GatherBlockQuantized) rather than a float table. */
  quantizeEmbedding: boolean;
  /** Default: append with contrib ops, concat with plain ops. `inplace` needs contrib ops. */
  kvCache?: KvCacheLayout;
  /**
   * Element type of the append layout's cache buffers (`past_key_values.*` inputs and
   * `new_key_values.*` outputs) in float32 graphs (fp32, int8, int4). Default fp32.
   */
  kvDtype?: KvDtype;
  /**
   * logits: the causal LM head. hidden: `last_hidden_state` [B, S, E] instead (OPTModel's output,
   * after the final LayerNorm and project_out) for the heads the runtime computes itself.
   */
  output?: 'logits' | 'hidden';
  /** With output 'hidden': also `hidden_states.0` … `hidden_states.L`, as transformers' output_hidden_states. */
  allHiddenStates?: boolean;
}

export function defaultBlockSize(dtype: GraphDtype): number {
  return dtype === 'int4' ? 32 : 128;
}

export function kvCacheLayout(o: OptGraphOptions): KvCacheLayout {
  const layout = o.kvCache ?? (o.fused ? 'append' : 'concat');
  if (layout === 'inplace' && !o.fused) throw new Error('the in-place KV cache needs contrib operators (GroupQueryAttention)');
  return layout;
}

/** The cache tensors' element type: the graph's float type, or float16 for an fp16 append cache. */
export function kvElemType(o: OptGraphOptions): 'float32' | 'float16' {
  if (o.dtype === 'fp16') {
    if (o.kvDtype === 'fp32') throw new Error('an fp16 graph keeps an fp16 KV cache: kvDtype fp32 needs a float32 graph');
    return 'float16';
  }
  if ((o.kvDtype ?? 'fp32') === 'fp32') return 'float32';
  const layout = kvCacheLayout(o);
  if (layout !== 'append') throw new Error(`kvDtype fp16 with a float32 graph needs the append KV cache layout (got ${layout})`);
  return 'float16';
}

export const DEFAULT_GRAPH_OPTIONS: OptGraphOptions = {
  dtype: 'fp32',
  fused: true,
  logitsToKeepInput: true,
  accuracyLevel: 4,
  quantizeEmbedding: true,
};

export interface WeightReader {
  read(name: string): Promise<Float32Array>;
  /** Whether lm_head.weight is the embedding matrix itself (so fp32 graphs can share one initializer). */
  readonly tiedLmHead: boolean;
}

const MS = 'com.microsoft';

interface Shapes {
  idsShape: string; // [B, S]
  shapeBSD: string;
  shapeBSHd: string;
  shapeND: string;
}

interface QuantizedWeight {
  prefix: string;
  bits: 4 | 8;
  out: number;
  inp: number;
  kBlocks: number;
  codes: string;
  scales: string;
  scaleValues: Float32Array;
  codeValues: Uint8Array;
}

interface CacheLengths {
  seqlensK: string;
  total: string;
}
const INT64_MAX = Number.MAX_SAFE_INTEGER; // Slice clamps ends; any value ≥ the dimension works.
const FP32_MIN = -3.4028234663852886e38; // torch.finfo(float32).min, HF's mask value

export const OPSETS = { '': 17, [MS]: 1 };

/**
 * Graph input/output names shared with Optimum / transformers.js exports. A KV tensor is the cache
 * fed in, the whole cache returned (concat, inplace), or this step's positions only (append).
 */
export const kvName = (io: 'past_key_values' | 'present' | 'new_key_values', layer: number, kind: 'key' | 'value') =>
  `${io}.${layer}.${kind}`;
export const pastKey = (i: number) => kvName('past_key_values', i, 'key');
export const pastValue = (i: number) => kvName('past_key_values', i, 'value');
export const presentKey = (i: number) => kvName('present', i, 'key');
export const presentValue = (i: number) => kvName('present', i, 'value');
export const newKey = (i: number) => kvName('new_key_values', i, 'key');
export const newValue = (i: number) => kvName('new_key_values', i, 'value');
export const hiddenState = (i: number) => `hidden_states.${i}`;

/** The KV inputs' sequence dimension, by layout: decoders recognise the layout by it. */
export const CACHE_DIM: Record<Exclude<KvCacheLayout, 'none'>, string> = {
  append: 'cache_capacity',
  inplace: 'max_sequence_length',
  concat: 'past_sequence_length',
};

export async function buildOptGraph(g: GraphBuilder, c: OptConfig, w: WeightReader, opts: OptGraphOptions): Promise<void> {
  const b = new OptGraph(g, c, w, opts);
  await b.build();
}

class OptGraph {
  private readonly _float: ElemType; // activation dtype
  private readonly _kv: 'float32' | 'float16'; // cache buffers' dtype
  private readonly _d: number;
  private readonly _heads: number;
  private readonly _hd: number;
  private readonly _layout: KvCacheLayout;
  private readonly _block: number;

  constructor(
    private readonly g: GraphBuilder,
    private readonly c: OptConfig,
    private readonly w: WeightReader,
    private readonly o: OptGraphOptions,
  ) {
    this._float = o.dtype === 'fp16' ? 'float16' : 'float32';
    this._d = c.hidden_size;
    this._heads = c.num_attention_heads;
    this._hd = headDim(c);
    this._layout = kvCacheLayout(o);
    this._kv = kvElemType(o);
    this._block = o.blockSize ?? defaultBlockSize(o.dtype);
  }

  async build(): Promise<void> {
    const { g, c } = this;
    const ids = g.input('input_ids', 'int64', ['batch_size', 'sequence_length']);
    const mask = g.input('attention_mask', 'int64', ['batch_size', 'total_sequence_length']);
    const past: ([string, string] | undefined)[] = [];
    for (let i = 0; i < c.num_hidden_layers; i++) {
      if (this._layout === 'none') {
        past.push(undefined);
        continue;
      }
      const kv: [string, string] = [pastKey(i), pastValue(i)];
      for (const name of kv) g.input(name, this._kv, ['batch_size', this._heads, CACHE_DIM[this._layout], this._hd]);
      past.push(kv);
    }
    const hiddenOutput = this.o.output === 'hidden';
    const keep = this.o.logitsToKeepInput && !hiddenOutput ? g.input('num_logits_to_keep', 'int64', []) : undefined;

    // Shapes used throughout, as 1-D int64 tensors.
    const idsShape = g.op1('Shape', [ids]); // [B, S]
    const seqLen = g.op1('Shape', [ids], { start: 1, end: 2 }); // [S]
    const totalLen = g.op1('Shape', [mask], { start: 1, end: 2 }); // [T]
    const shapeBSD = g.op1('Concat', [idsShape, g.constant('int64', [1], [this._d])], { axis: 0 });
    const shapeBSHd = g.op1('Concat', [idsShape, g.constant('int64', [2], [this._heads, this._hd])], { axis: 0 });
    const shapeND = g.constant('int64', [2], [-1, this._d]);
    const shapes: Shapes = { idsShape, shapeBSD, shapeBSHd, shapeND };
    const cacheLengths = this._layout === 'inplace' ? this._cacheLengths(idsShape, totalLen) : undefined;

    // Embeddings: h0 [N, D] = project_in(embed(ids)) + embed_positions(cumsum(mask) * mask - 1 + 2).
    const embedName = 'model.decoder.embed_tokens.weight';
    const e = c.word_embed_proj_dim;
    // Quantized graphs with a tied lm_head quantize the vocabulary matrix once, for both uses.
    const sharedVocab =
      this._quantized && this.o.quantizeEmbedding && this.w.tiedLmHead && e % this._block === 0
        ? await this._quantizedWeight(embedName.replace(/\.weight$/, ''), await this.w.read(embedName), c.vocab_size, e)
        : undefined;
    const embed = sharedVocab ? undefined : await this._floatWeight(embedName, [c.vocab_size, e]);
    let tok = sharedVocab
      ? await this._gatherQuantized(sharedVocab, ids)
      : g.op1('Reshape', [g.op1('Gather', [embed!, ids], { axis: 0 }), g.constant('int64', [2], [-1, e])]); // [N, E]
    if (hasProjection(c)) tok = await this._linear(tok, 'model.decoder.project_in', c.hidden_size, c.word_embed_proj_dim, false);
    const positions = this._positions(mask, seqLen);
    const posTable = await this._floatWeight('model.decoder.embed_positions.weight', [
      c.max_position_embeddings + POSITION_OFFSET,
      this._d,
    ]);
    const pos = g.op1('Reshape', [g.op1('Gather', [posTable, positions], { axis: 0 }), shapeND]); // [N, D]
    let h = g.op1('Add', [tok, pos]);

    const allowed = this._allowedMask(mask, seqLen, totalLen); // bool [B, 1, S, T]
    const attnMask = this._layout === 'inplace' ? this._additiveMask(allowed) : allowed;
    const hiddenStates: string[] = [h];

    // Pre-LN fused graphs carry the next LayerNorm's output along with the residual (SkipLayerNorm).
    let normed = c.do_layer_norm_before ? await this._layerNorm(h, 'model.decoder.layers.0.self_attn_layer_norm') : h;
    for (let i = 0; i < c.num_hidden_layers; i++) {
      const l = `model.decoder.layers.${i}`;
      const next =
        i + 1 < c.num_hidden_layers
          ? `model.decoder.layers.${i + 1}.self_attn_layer_norm`
          : hasFinalLayerNorm(c)
            ? 'model.decoder.final_layer_norm'
            : undefined;
      [h, normed] = await this._layer(i, l, h, normed, next, past[i], attnMask, shapes, cacheLengths);
      if (i + 1 < c.num_hidden_layers) hiddenStates.push(h);
    }
    // After the loop, pre-LN: `normed` is the final LayerNorm's output (or h itself when removed).
    let out = c.do_layer_norm_before ? normed : h;
    if (hiddenOutput) {
      if (hasProjection(c)) out = await this._linear(out, 'model.decoder.project_out', c.word_embed_proj_dim, c.hidden_size, false);
      const shapeBSE = g.op1('Concat', [idsShape, g.constant('int64', [1], [e])], { axis: 0 });
      const asFloat32 = (t: string) => (this._float === 'float16' ? g.op1('Cast', [t], { to: 1 }) : t);
      g.output('last_hidden_state', asFloat32(g.op1('Reshape', [out, shapeBSE])), 'float32', ['batch_size', 'sequence_length', e]);
      if (this.o.allHiddenStates) {
        // transformers' tuple: each layer's input, then the final output (the same tensor as last_hidden_state).
        for (const [j, state] of hiddenStates.entries()) {
          g.output(hiddenState(j), asFloat32(g.op1('Reshape', [state, shapeBSD])), 'float32', ['batch_size', 'sequence_length', this._d]);
        }
        g.output(hiddenState(hiddenStates.length), 'last_hidden_state', 'float32', ['batch_size', 'sequence_length', e]);
      }
      return;
    }

    // Keep the last K positions before the expensive head: [N, D] → [B, S, D] → [B, K, D] → [B*K, D].
    if (keep) {
      const start = g.op1('Neg', [g.op1('Unsqueeze', [keep, g.constant('int64', [1], [0])])]);
      out = g.op1('Slice', [
        g.op1('Reshape', [out, shapeBSD]),
        start,
        g.constant('int64', [1], [INT64_MAX]),
        g.constant('int64', [1], [1]),
      ]);
      out = g.op1('Reshape', [out, shapeND]);
    }
    if (hasProjection(c)) out = await this._linear(out, 'model.decoder.project_out', c.word_embed_proj_dim, c.hidden_size, false);
    const logits2d = sharedVocab
      ? this._matMulNBits(out, sharedVocab)
      : this.w.tiedLmHead && !this._quantized
        ? g.op1('Gemm', [out, embed!], { transB: 1 }) // share the embedding initializer: no second copy on disk
        : await this._linear(out, 'lm_head', c.vocab_size, e, false);
    const logitsShape = g.op1('Concat', [g.op1('Shape', [ids], { start: 0, end: 1 }), g.constant('int64', [2], [-1, c.vocab_size])], {
      axis: 0,
    });
    let logits = g.op1('Reshape', [logits2d, logitsShape]); // [B, K, V]
    if (this._float === 'float16') logits = g.op1('Cast', [logits], { to: 1 });
    g.output('logits', logits, 'float32', ['batch_size', keep ? 'num_logits' : 'sequence_length', c.vocab_size]);
  }

  /** One decoder layer. Returns [residual h, LayerNorm(h) for the next block (pre-LN) or h]. */
  private async _layer(
    i: number,
    l: string,
    h: string,
    normed: string,
    nextNorm: string | undefined,
    past: [string, string] | undefined,
    attnMask: string,
    shapes: Shapes,
    cacheLengths: CacheLengths | undefined,
  ): Promise<[string, string]> {
    const { g, c } = this;
    const preLN = c.do_layer_norm_before;
    const fusedNorm = this.o.fused;

    // Attention block.
    const attnIn = preLN ? normed : h;
    const attn = await this._attention(i, l, attnIn, past, attnMask, shapes, cacheLengths, fusedNorm);
    let h1: string, a1: string;
    if (preLN) {
      if (fusedNorm) {
        [a1, h1] = await this._skipLayerNorm(attn.out, h, `${l}.final_layer_norm`, attn.bias);
      } else {
        h1 = g.op1('Add', [h, attn.out]);
        a1 = await this._layerNorm(h1, `${l}.final_layer_norm`);
      }
    } else {
      h1 = fusedNorm
        ? (await this._skipLayerNorm(attn.out, h, `${l}.self_attn_layer_norm`, attn.bias))[0]
        : await this._layerNorm(g.op1('Add', [h, attn.out]), `${l}.self_attn_layer_norm`);
      a1 = h1;
    }

    // Feed-forward block: fc2(act(fc1(x))).
    const f1 = this._activation(await this._linear(a1, `${l}.fc1`, c.ffn_dim, this._d, c.enable_bias));
    const fc2Bias = fusedNorm && c.enable_bias ? await this._floatWeight(`${l}.fc2.bias`, [this._d]) : undefined;
    const f2 = await this._linear(f1, `${l}.fc2`, this._d, c.ffn_dim, c.enable_bias && !fc2Bias);
    if (preLN) {
      if (!nextNorm) {
        const h2 = this._addBias(g.op1('Add', [h1, f2]), fc2Bias);
        return [h2, h2];
      }
      if (fusedNorm) {
        const [a2, h2] = await this._skipLayerNorm(f2, h1, nextNorm, fc2Bias);
        return [h2, a2];
      }
      const h2 = g.op1('Add', [h1, f2]);
      return [h2, await this._layerNorm(h2, nextNorm)];
    }
    const h2 = fusedNorm
      ? (await this._skipLayerNorm(f2, h1, `${l}.final_layer_norm`, fc2Bias))[0]
      : await this._layerNorm(g.op1('Add', [h1, f2]), `${l}.final_layer_norm`);
    return [h2, h2];
  }

  /** Self-attention. Returns the out_proj output [N, D]; with fused norms its bias is left to SkipLayerNorm. */
  private async _attention(
    i: number,
    l: string,
    x: string,
    past: [string, string] | undefined,
    attnMask: string,
    shapes: Shapes,
    cacheLengths: CacheLengths | undefined,
    deferOutBias: boolean,
  ): Promise<{ out: string; bias?: string }> {
    const { g, c } = this;
    const d = this._d;
    const qkv = await this._qkvLinear(x, `${l}.self_attn`); // [N, 3D]
    let ctx: string; // [N, D]
    if (cacheLengths) {
      // Packed QKV [B, S, 3D]; the new keys and values are written into the shared cache buffer at T - S.
      const packed = g.op1('Reshape', [qkv, g.op1('Concat', [shapes.idsShape, g.constant('int64', [1], [3 * d])], { axis: 0 })]);
      const [o] = g.op(
        'GroupQueryAttention',
        [packed, '', '', past![0], past![1], cacheLengths.seqlensK, cacheLengths.total, '', '', '', attnMask],
        { num_heads: this._heads, kv_num_heads: this._heads, scale: float(1.0) }, // q is pre-scaled (folded into q_proj)
        { domain: MS, outputs: [`${l}.self_attn.gqa_out`, presentKey(i), presentValue(i)] },
      );
      ctx = g.op1('Reshape', [o!, shapes.shapeND]);
      this._cacheOutputs(presentKey(i), presentValue(i));
    } else {
      const [q, k, v] = g.op('Split', [qkv, g.constant('int64', [3], [d, d, d])], { axis: 1 }, { outputs: 3 }) as [string, string, string];
      const heads = (t: string, name?: string) =>
        g.op('Transpose', [g.op1('Reshape', [t, shapes.shapeBSHd])], { perm: [0, 2, 1, 3] }, name ? { outputs: [name] } : {})[0]!; // [B, H, S, hd]
      const qh = heads(q);
      // MatMul with a transposed right side: onnxruntime fuses the pair (FusedMatMul, transB), no copy.
      const scoresOf = (keys: string) => g.op1('MatMul', [qh, g.op1('Transpose', [keys], { perm: [0, 1, 3, 2] })]);
      // Where rather than an added -inf: a fully padded row becomes uniform, never NaN.
      const softmax = (scores: string) =>
        g.op1('Softmax', [g.op1('Where', [attnMask, scores, this._scalar(this._float === 'float16' ? -65504 : FP32_MIN)])], { axis: -1 });
      let o: string; // [B, H, S, hd]
      if (this._layout === 'append') {
        // Scores over the buffer's C positions (unused ones are masked) and over the new tokens, side by side.
        // An fp16 buffer in a float32 graph: the new keys/values leave as fp16 (attention over
        // them stays float32), and each buffer is cast to float32 once, straight before its matmul.
        const narrow = this._kv !== this._float;
        const kh = narrow ? heads(k) : heads(k, newKey(i));
        const vh = narrow ? heads(v) : heads(v, newValue(i));
        if (narrow) {
          g.op('Cast', [kh], { to: 10 }, { outputs: [newKey(i)] });
          g.op('Cast', [vh], { to: 10 }, { outputs: [newValue(i)] });
        }
        const [pastK, pastV] = narrow ? (past!.map((t) => g.op1('Cast', [t], { to: 1 })) as [string, string]) : past!;
        const probs = softmax(g.op1('Concat', [scoresOf(pastK), scoresOf(kh)], { axis: 3 })); // [B, H, S, C + S]
        const capacity = g.op1('Shape', [past![0]], { start: 2, end: 3 }); // [C]
        const axis = g.constant('int64', [1], [3]);
        const pPast = g.op1('Slice', [probs, g.constant('int64', [1], [0]), capacity, axis]);
        const pNew = g.op1('Slice', [probs, capacity, g.constant('int64', [1], [INT64_MAX]), axis]);
        o = g.op1('Add', [g.op1('MatMul', [pPast, pastV]), g.op1('MatMul', [pNew, vh])]);
        this._cacheOutputs(newKey(i), newValue(i), 'sequence_length');
      } else if (past) {
        const keys = g.op('Concat', [past[0], heads(k)], { axis: 2 }, { outputs: [presentKey(i)] })[0]!; // [B, H, T, hd]
        const values = g.op('Concat', [past[1], heads(v)], { axis: 2 }, { outputs: [presentValue(i)] })[0]!;
        o = g.op1('MatMul', [softmax(scoresOf(keys)), values]);
        this._cacheOutputs(presentKey(i), presentValue(i));
      } else {
        o = g.op1('MatMul', [softmax(scoresOf(heads(k))), heads(v)]);
      }
      ctx = g.op1('Reshape', [g.op1('Transpose', [o], { perm: [0, 2, 1, 3] }), shapes.shapeND]); // [B, S, H, hd] → [N, D]
    }
    if (deferOutBias && c.enable_bias) {
      return {
        out: await this._linear(ctx, `${l}.self_attn.out_proj`, d, d, false),
        bias: await this._floatWeight(`${l}.self_attn.out_proj.bias`, [d]),
      };
    }
    return { out: await this._linear(ctx, `${l}.self_attn.out_proj`, d, d, c.enable_bias) };
  }

  private _cacheOutputs(
    key: string,
    value: string,
    positions = this._layout === 'inplace' ? CACHE_DIM.inplace : 'total_sequence_length',
  ): void {
    for (const name of [key, value]) this.g.output(name, name, this._kv, ['batch_size', this._heads, positions, this._hd]);
  }

  /** q, k and v projections as one matmul; q's weight and bias carry the head_dim**-0.5 scale. */
  private async _qkvLinear(x: string, prefix: string): Promise<string> {
    const d = this._d;
    const scale = this._hd ** -0.5;
    const weight = new Float32Array(3 * d * d);
    const bias = this.c.enable_bias ? new Float32Array(3 * d) : undefined;
    for (const [j, m] of ['q_proj', 'k_proj', 'v_proj'].entries()) {
      const s = j === 0 ? scale : 1;
      const wm = await this.w.read(`${prefix}.${m}.weight`);
      for (let t = 0; t < wm.length; t++) weight[j * d * d + t] = Math.fround(wm[t]! * s);
      if (bias) {
        const bm = await this.w.read(`${prefix}.${m}.bias`);
        for (let t = 0; t < d; t++) bias[j * d + t] = Math.fround(bm[t]! * s);
      }
    }
    return this._linearFrom(x, `${prefix}.qkv_proj`, weight, bias, 3 * d, d);
  }

  private async _linear(x: string, prefix: string, out: number, inp: number, bias: boolean): Promise<string> {
    const weight = await this.w.read(`${prefix}.weight`);
    return this._linearFrom(x, prefix, weight, bias ? await this.w.read(`${prefix}.bias`) : undefined, out, inp);
  }

  /** y [N, out] = x [N, in] · Wᵀ + b, with W in PyTorch's [out, in] layout. */
  private async _linearFrom(
    x: string,
    prefix: string,
    weight: Float32Array,
    bias: Float32Array | undefined,
    out: number,
    inp: number,
  ): Promise<string> {
    const { g } = this;
    const b = bias ? await this._floatData(`${prefix}.bias`, [out], bias) : undefined;
    if (this._quantized) {
      const y = this._matMulNBits(x, await this._quantizedWeight(prefix, weight, out, inp));
      return b ? g.op1('Add', [y, b]) : y;
    }
    const wName = await this._floatData(`${prefix}.weight`, [out, inp], weight);
    return g.op1('Gemm', b ? [x, wName, b] : [x, wName], { transB: 1 });
  }

  /** Block-quantizes W [out, in] into MatMulNBits' layout: codes [out, kBlocks, blob] and scales [out * kBlocks]. */
  private async _quantizedWeight(prefix: string, weight: Float32Array, out: number, inp: number): Promise<QuantizedWeight> {
    const { g, o } = this;
    const bits = o.dtype === 'int4' ? 4 : 8;
    const q = quantizeBlockwise(weight, out, inp, bits, this._block);
    const kBlocks = q.scales.length / out;
    return {
      prefix,
      bits,
      out,
      inp,
      kBlocks,
      scaleValues: q.scales,
      codeValues: q.codes,
      codes: await g.weight(`${prefix}.weight_Q${bits}G${this._block}`, 'uint8', [out, kBlocks, (this._block * bits) / 8], q.codes),
      scales: await g.weight(`${prefix}.weight_scales`, 'float32', [out * kBlocks], q.scales),
    };
  }

  private _matMulNBits(x: string, q: QuantizedWeight): string {
    return this.g.op1(
      'MatMulNBits',
      [x, q.codes, q.scales],
      { K: q.inp, N: q.out, bits: q.bits, block_size: this._block, accuracy_level: this.o.accuracyLevel },
      MS,
    );
  }

  /**
   * Rows of a quantized matrix, by index: the token embedding gathered from the tied lm_head's
   * quantized values instead of a float table (opt-125m: 38.6 MB at int8 rather than 154 MB).
   * The codes are a separate initializer: shared with MatMulNBits they stop onnxruntime from
   * prepacking it, and the lm_head falls back to a dequantizing path 5× slower. Returns [N, in].
   */
  private async _gatherQuantized(q: QuantizedWeight, ids: string): Promise<string> {
    const { g } = this;
    const codes = await g.weight(
      `${q.prefix}.rows_Q${q.bits}G${this._block}`,
      'uint8',
      [q.out, q.kBlocks, (this._block * q.bits) / 8],
      q.codeValues,
    );
    // GatherBlockQuantized wants scales (and 8-bit zero points) of the data's rank: [out, kBlocks, 1].
    const scales = await g.weight(`${q.prefix}.rows_scales`, 'float32', [q.out, q.kBlocks, 1], q.scaleValues);
    const inputs = [codes, ids, scales];
    if (q.bits === 8)
      inputs.push(
        await g.weight(`${q.prefix}.rows_zero_points`, 'uint8', [q.out, q.kBlocks, 1], new Uint8Array(q.out * q.kBlocks).fill(128)),
      );
    const rows = g.op1('GatherBlockQuantized', inputs, { gather_axis: 0, quantize_axis: 2, block_size: this._block, bits: q.bits }, MS); // [B, S, kBlocks, block]
    return g.op1('Reshape', [rows, g.constant('int64', [2], [-1, q.inp])]);
  }

  private get _quantized(): boolean {
    return this.o.dtype === 'int8' || this.o.dtype === 'int4';
  }

  private async _floatWeight(name: string, dims: number[]): Promise<string> {
    return this._floatData(name, dims, await this.w.read(name));
  }

  /** Writes a float initializer in the graph's activation dtype. */
  private _floatData(name: string, dims: number[], data: Float32Array): Promise<string> {
    return this._float === 'float16'
      ? this.g.weight(name, 'float16', dims, toFloat16Bits(data))
      : this.g.weight(name, 'float32', dims, data);
  }

  private async _layerNorm(x: string, prefix: string): Promise<string> {
    const [gamma, beta] = await this._normParams(prefix);
    return this.g.op1('LayerNormalization', [x, gamma, beta], { axis: -1, epsilon: float(LAYER_NORM_EPS) });
  }

  /** SkipLayerNormalization: returns [LayerNorm(x + skip + bias), x + skip + bias]. */
  private async _skipLayerNorm(x: string, skip: string, prefix: string, bias?: string): Promise<[string, string]> {
    const [gamma, beta] = await this._normParams(prefix);
    const outs = this.g.op(
      'SkipLayerNormalization',
      [x, skip, gamma, beta, bias ?? ''],
      { epsilon: float(LAYER_NORM_EPS) },
      { domain: MS, outputs: 4 },
    );
    return [outs[0]!, outs[3]!];
  }

  private async _normParams(prefix: string): Promise<[string, string]> {
    if (this.c.layer_norm_elementwise_affine) {
      return [await this._floatWeight(`${prefix}.weight`, [this._d]), await this._floatWeight(`${prefix}.bias`, [this._d])];
    }
    return [
      await this._floatData(`${prefix}.ones`, [this._d], new Float32Array(this._d).fill(1)),
      await this._floatData(`${prefix}.zeros`, [this._d], new Float32Array(this._d)),
    ];
  }

  private _addBias(x: string, bias: string | undefined): string {
    return bias ? this.g.op1('Add', [x, bias]) : x;
  }

  private _activation(x: string): string {
    const { g } = this;
    switch (this.c.activation_function) {
      case 'relu':
        return g.op1('Relu', [x]);
      case 'silu':
        return g.op1('Mul', [x, g.op1('Sigmoid', [x])]);
      case 'gelu': // x * 0.5 * (1 + erf(x / sqrt 2))
        return g.op1('Mul', [
          g.op1('Mul', [x, this._scalar(0.5)]),
          g.op1('Add', [this._scalar(1), g.op1('Erf', [g.op1('Mul', [x, this._scalar(Math.SQRT1_2)])])]),
        ]);
      case 'gelu_new':
      case 'gelu_pytorch_tanh': {
        // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        const cube = g.op1('Mul', [g.op1('Mul', [x, x]), x]);
        const inner = g.op1('Mul', [g.op1('Add', [x, g.op1('Mul', [cube, this._scalar(0.044715)])]), this._scalar(Math.sqrt(2 / Math.PI))]);
        return g.op1('Mul', [g.op1('Mul', [x, this._scalar(0.5)]), g.op1('Add', [this._scalar(1), g.op1('Tanh', [inner])])]);
      }
    }
  }

  /** HF positions: cumsum(mask) * mask - 1 for the last S columns, + the table offset. int64 [B, S]. */
  private _positions(mask: string, seqLen: string): string {
    const { g } = this;
    const cumsum = g.op1('CumSum', [mask, g.constant('int64', [], [1])]);
    const pos = g.op1('Sub', [g.op1('Mul', [cumsum, mask]), g.constant('int64', [], [1])]);
    const last = g.op1('Slice', [pos, g.op1('Neg', [seqLen]), g.constant('int64', [1], [INT64_MAX]), g.constant('int64', [1], [1])]);
    return g.op1('Add', [last, g.constant('int64', [], [POSITION_OFFSET])]);
  }

  /** Query i (absolute position P + i) may see key j iff j ≤ P + i and mask[b, j] = 1. bool [B, 1, S, T]. */
  private _allowedMask(mask: string, seqLen: string, totalLen: string): string {
    const { g } = this;
    const scalar = (t: string) => g.op1('Squeeze', [t, g.constant('int64', [1], [0])]);
    const t = scalar(totalLen);
    const p = g.op1('Sub', [t, scalar(seqLen)]);
    const one = g.constant('int64', [], [1]);
    const keyPos = g.op1('Unsqueeze', [g.op1('Range', [g.constant('int64', [], [0]), t, one]), g.constant('int64', [1], [0])]); // [1, T]
    const queryPos = g.op1('Unsqueeze', [g.op1('Range', [p, t, one]), g.constant('int64', [1], [1])]); // [S, 1]
    const causal = g.op1('LessOrEqual', [keyPos, queryPos]); // [S, T]
    const padding = g.op1('Unsqueeze', [g.op1('Cast', [mask], { to: 9 }), g.constant('int64', [2], [1, 2])]); // [B, 1, 1, T]
    return g.op1('And', [causal, padding]);
  }

  /** GroupQueryAttention's lengths: every row spans T positions (left padding is masked by the bias). */
  private _cacheLengths(idsShape: string, totalLen: string): CacheLengths {
    const { g } = this;
    const t32 = g.op1('Cast', [totalLen], { to: 6 }); // int32 [1]
    const batch = g.op1('Slice', [idsShape, g.constant('int64', [1], [0]), g.constant('int64', [1], [1])]); // [1] = B
    return {
      seqlensK: g.op1('Expand', [g.op1('Sub', [t32, g.constant('int32', [1], [1])]), batch]), // int32 [B] = T - 1
      total: g.op1('Squeeze', [t32, g.constant('int64', [1], [0])]), // int32 scalar T
    };
  }

  /** The additive form GroupQueryAttention takes: 0 where allowed, a large negative value elsewhere. */
  private _additiveMask(allowed: string): string {
    // fp16 cannot hold float32's min; -10000 still zeroes exp() without overflowing to -inf.
    const blocked = this._float === 'float16' ? -10000 : FP32_MIN;
    return this.g.op1('Where', [allowed, this._scalar(0), this._scalar(blocked)]);
  }

  private _scalar(v: number): string {
    return this._float === 'float16' ? this.g.constant('float16', [], [floatToHalf(v)]) : this.g.constant('float32', [], [v]);
  }
}
