// What an OPT model needs in memory in the runtime: its converted weights, the KV cache of the
// request being run at the configured context, and the prefix cache that keeps recent prompts'
// KV states so typing re-runs only the new tokens. The runtime refuses a load with these figures
// and sizes its prefix cache from them; the extension's model picker shows the same figures. Both
// import this module, so the number a user is shown is the number the runtime checks. Pure math.

/** The fields of a facebook/opt-* config.json the estimate needs (Hugging Face spelling). */
export interface OptShape {
  num_hidden_layers: number;
  hidden_size: number;
  ffn_dim: number;
  word_embed_proj_dim: number;
  vocab_size: number;
  max_position_embeddings: number;
}

export type WeightDtype = 'fp32' | 'fp16' | 'int8' | 'int4';

const MiB = 2 ** 20;

/** Node, onnxruntime, the tokenizer and activations, measured at about 145 MiB before any model; rounded up. */
const RUNTIME_ALLOWANCE = 300 * MiB;

/** Bytes per weight of a linear layer, block scales included (one float per block: 128 weights at int8, 32 at int4). */
const LINEAR_BYTES: Record<WeightDtype, number> = { fp32: 4, fp16: 2, int8: 1 + 4 / 128, int4: 0.5 + 4 / 32 };

/**
 * Resident bytes of the converted model in onnxruntime: every linear layer at its precision; the
 * embedding tables in float (fp16 on GPU graphs); for quantized graphs a quantized copy of the tied
 * lm_head. fp32 Gemm weights are prepacked by onnxruntime (a second copy), hence the factor 2.
 * Plus a fixed allowance for the runtime, the tokenizer and activations.
 */
export function estimateModelBytes(c: OptShape, dtype: WeightDtype): number {
  const d = c.hidden_size,
    e = c.word_embed_proj_dim;
  const perLayer = 4 * d * d + 2 * d * c.ffn_dim;
  let linear = c.num_hidden_layers * perLayer + (e !== d ? 2 * d * e : 0);
  const floatBytes = dtype === 'fp16' ? 2 : 4;
  const embeddings = (c.vocab_size * e + (c.max_position_embeddings + 2) * d) * floatBytes;
  if (dtype === 'int8' || dtype === 'int4') linear += c.vocab_size * e; // lm_head, quantized separately
  const prepack = dtype === 'fp32' ? 2 : 1;
  return Math.round(linear * LINEAR_BYTES[dtype] * prepack + embeddings + RUNTIME_ALLOWANCE);
}

/** Bytes of one KV-cache element: fp16 graphs keep an fp16 cache, the others float32. */
export const kvElementBytes = (dtype: WeightDtype): number => (dtype === 'fp16' ? 2 : 4);

/** KV-cache bytes per token: a key and a value of `hidden_size` per layer. */
export function kvBytesPerToken(c: OptShape, dtype: WeightDtype): number {
  return c.num_hidden_layers * 2 * c.hidden_size * kvElementBytes(dtype);
}

/** The cache grows in steps of this many positions (runtime/src/decoder.ts CACHE_GRANULE). */
const KV_GRANULE = 64;

/** KV bytes of one request of `contextTokens` (prompt + completion), as the runtime's buffers hold it. */
export function contextKvBytes(c: OptShape, dtype: WeightDtype, contextTokens: number): number {
  const positions = Math.min(c.max_position_embeddings, Math.ceil(Math.max(1, contextTokens) / KV_GRANULE) * KV_GRANULE);
  return positions * kvBytesPerToken(c, dtype);
}

/**
 * Full contexts the automatic prefix cache has room for, the state being extended included: the
 * document being typed in and one other (a tab switched away from, a rewrite beside a completion)
 * keep their states, and the runtime's KV memory stays within two contexts (the cache makes room
 * before a request copies a state, see PrefixCache.makeRoom).
 */
export const PREFIX_CACHE_CONTEXTS = 2;

/**
 * The automatic prefix-cache budget: room for PREFIX_CACHE_CONTEXTS contexts, but at most half of
 * the memory left once the weights and the request being run are in (the rest stays with the
 * editor and the machine). May be less than one context, down to 1 byte (a budget of 0 turns reuse
 * off): the runtime still keeps the newest state (the document being typed in), which costs nothing
 * the request did not already hold.
 */
export function autoPrefixCacheBytes(c: OptShape, dtype: WeightDtype, contextTokens: number, availableBytes: number): number {
  const context = contextKvBytes(c, dtype, contextTokens);
  const spare = availableBytes - estimateModelBytes(c, dtype) - context;
  return Math.max(1, Math.min(PREFIX_CACHE_CONTEXTS * context, Math.floor(spare / 2)));
}

export interface MemoryNeed {
  /** Weights as converted, plus the runtime's own allowance (estimateModelBytes). */
  model: number;
  /** The KV cache of one request at the configured context. */
  context: number;
  /** A prefix-cache budget the user set (an automatic budget adapts to what is left, so it is not counted). */
  prefixCache: number;
  total: number;
}

/** What a load needs before it may start: the model, one context's KV cache, and a prefix-cache budget set by hand. */
export function memoryNeed(c: OptShape, dtype: WeightDtype, contextTokens: number, prefixCacheBytes?: number): MemoryNeed {
  const model = estimateModelBytes(c, dtype);
  const context = contextKvBytes(c, dtype, contextTokens);
  const prefixCache = prefixCacheBytes ?? 0;
  return { model, context, prefixCache, total: model + context + prefixCache };
}

/** "weights and runtime 1.5 GiB, KV cache for 816 tokens 0.3 GiB, prefix cache 1.0 GiB". */
export function describeNeed(n: MemoryNeed, contextTokens: number): string {
  const parts = [`weights and runtime ${formatBytes(n.model)}`, `KV cache for ${contextTokens} tokens ${formatBytes(n.context)}`];
  if (n.prefixCache > 0) parts.push(`prefix cache ${formatBytes(n.prefixCache)}`);
  return parts.join(', ');
}

export function formatBytes(bytes: number): string {
  if (bytes >= 2 ** 30) return `${(bytes / 2 ** 30).toFixed(bytes >= 10 * 2 ** 30 ? 0 : 1)} GiB`;
  return `${Math.round(bytes / MiB)} MiB`;
}
