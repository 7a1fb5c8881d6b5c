// The released OPT sizes and what each needs in memory at each precision, for the model picker:
// the weights, the KV cache at the configured context and a hand-set prefix cache, computed by
// protocol/memory.ts, the module the runtime checks a load with. No vscode import.

import { type OptShape as MemoryShape, type WeightDtype, formatBytes, memoryNeed } from '../../../protocol/memory.js';

export { formatBytes };

/** The fields of a facebook/opt-* config.json the picker needs (Hugging Face spelling). */
export interface OptShape extends MemoryShape {
  num_attention_heads: number;
}

export interface OptSize {
  id: string;
  label: string;
  shape: OptShape;
}

const shape = (L: number, d: number, heads: number, proj = d): OptShape => ({
  num_hidden_layers: L,
  hidden_size: d,
  ffn_dim: 4 * d,
  num_attention_heads: heads,
  word_embed_proj_dim: proj,
  vocab_size: 50272,
  max_position_embeddings: 2048,
});

/** From the facebook/opt-* configs (arXiv 2205.01068, Table 1). */
export const OPT_SIZES: readonly OptSize[] = [
  { id: 'facebook/opt-125m', label: '125m', shape: shape(12, 768, 12) },
  { id: 'facebook/opt-350m', label: '350m', shape: shape(24, 1024, 16, 512) },
  { id: 'facebook/opt-1.3b', label: '1.3b', shape: shape(24, 2048, 32) },
  { id: 'facebook/opt-2.7b', label: '2.7b', shape: shape(32, 2560, 32) },
  { id: 'facebook/opt-6.7b', label: '6.7b', shape: shape(32, 4096, 32) },
  { id: 'facebook/opt-13b', label: '13b', shape: shape(40, 5120, 40) },
  { id: 'facebook/opt-30b', label: '30b', shape: shape(48, 7168, 56) },
  { id: 'facebook/opt-66b', label: '66b', shape: shape(64, 9216, 72) },
];

export type ModelDtype = WeightDtype;
export const MODEL_DTYPES: readonly ModelDtype[] = ['int4', 'int8', 'fp16', 'fp32'];

/** Parameters: attention and MLP matrices and their biases, layer norms, embeddings and projections. */
export function parameterCount(c: OptShape): number {
  const d = c.hidden_size,
    e = c.word_embed_proj_dim;
  const perLayer = 4 * d * d + 4 * d + 2 * d * c.ffn_dim + c.ffn_dim + d + 4 * d;
  const projections = e !== d ? 2 * d * e : 0;
  return c.num_hidden_layers * perLayer + c.vocab_size * e + (c.max_position_embeddings + 2) * d + projections + 2 * d;
}

/** The dtype `auto` resolves to in the runtime (runtime/src/model.ts resolveDtype). */
export function resolveDtype(dtype: string, device: string): ModelDtype {
  if ((MODEL_DTYPES as readonly string[]).includes(dtype)) return dtype as ModelDtype;
  return device === 'cpu' || device === 'auto' || device === '' ? 'int8' : 'fp16';
}

export function formatParams(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(n >= 1e10 ? 0 : 1)}B` : `${Math.round(n / 1e6)}M`;
}

/** The known size a model id or folder names (facebook/opt-1.3b, …/opt-1.3b-int8, a folder opt-125m). */
export function knownSize(model: string): OptSize | undefined {
  const m = /opt-(\d+(?:\.\d+)?[mb])(?![\w.])/i.exec(model);
  if (!m) return undefined;
  return OPT_SIZES.find((s) => s.label === m[1]!.toLowerCase());
}

/** What the editor's runtime asks for: the inline context (prompt + completion tokens) and a hand-set prefix cache, if any. */
export interface RuntimeSizing {
  contextTokens: number;
  prefixCacheBytes?: number;
}

/** Bytes the runtime needs for a model at a precision, as its check before loading counts them. */
export function modelNeedBytes(c: OptShape, dtype: ModelDtype, sizing: RuntimeSizing): number {
  return memoryNeed(c, dtype, sizing.contextTokens, sizing.prefixCacheBytes).total;
}

/** One line per dtype for the picker: "int8 1.5 GiB · fp16 2.7 GiB …", marking what does not fit. */
export function memoryLine(c: OptShape, availableBytes: number | undefined, sizing: RuntimeSizing): string {
  return MODEL_DTYPES.map((dt) => {
    const bytes = modelNeedBytes(c, dt, sizing);
    const fits = availableBytes === undefined || bytes <= availableBytes;
    return `${dt} ${formatBytes(bytes)}${fits ? '' : ' (too big)'}`;
  }).join(' · ');
}

/** The smallest released OPT, which shares every size's tokenizer: an assistant for the larger ones. */
export const OPT_ASSISTANT = 'facebook/opt-125m';

/**
 * The assistant worth suggesting for a model: facebook/opt-125m for a released OPT of 1.3b or more
 * (there a pass of the model costs several of the assistant's, so its drafts pay); none for the
 * small sizes or for anything that is not a released OPT (its tokenizer is unknown here).
 */
export function suggestedAssistant(modelId: string): string | undefined {
  const size = OPT_SIZES.find((s) => s.id === modelId.trim());
  if (!size) return undefined;
  const smallest = OPT_SIZES.find((s) => s.id === OPT_ASSISTANT)!;
  return parameterCount(size.shape) >= 8 * parameterCount(smallest.shape) ? OPT_ASSISTANT : undefined;
}
