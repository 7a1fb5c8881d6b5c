// OptConfig: the fields of a Hugging Face OPT `config.json`, with transformers' defaults, and
// the checks that turn a bad or foreign config into a clear error before any weight is read.
// Field names keep Hugging Face's spelling so they can be compared with config.json directly.

import { join } from 'node:path';
import { CONFIG_FILE_CAP, parseJsonText, readModelText } from './checkpoint/modelFiles.js';
import { CheckpointError, brief } from './errors.js';

/** Model heads this runtime knows how to load; transformers' class names. */
export const OPT_ARCHITECTURES = ['OPTForCausalLM', 'OPTModel', 'OPTForSequenceClassification', 'OPTForQuestionAnswering'] as const;
export type OptArchitecture = (typeof OPT_ARCHITECTURES)[number];

export const SUPPORTED_ACTIVATIONS = ['relu', 'gelu', 'gelu_new', 'gelu_pytorch_tanh', 'silu'] as const;
export type Activation = (typeof SUPPORTED_ACTIVATIONS)[number];

export interface OptConfig {
  architectures: OptArchitecture[];
  vocab_size: number; // embedding rows (50272 for every released size; the tokenizer uses 50265)
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  ffn_dim: number;
  max_position_embeddings: number; // the positional table has 2 more rows (HF's offset)
  word_embed_proj_dim: number; // != hidden_size only in opt-350m (512 vs 1024): project_in/out exist
  do_layer_norm_before: boolean; // false only in opt-350m (post-LN)
  _remove_final_layer_norm: boolean; // only for checkpoints fine-tuned before transformers 4.20.1
  enable_bias: boolean;
  layer_norm_elementwise_affine: boolean;
  activation_function: Activation;
  bos_token_id: number;
  eos_token_id: number;
  pad_token_id: number;
  tie_word_embeddings: boolean;
  torch_dtype: string | undefined; // informational: the dtype the weights were saved in
  // Heads other than the causal LM.
  num_labels: number;
  id2label: Record<string, string> | undefined;
  problem_type: string | undefined;
}

/** LayerNorm epsilon: OPTConfig has no field for it; nn.LayerNorm's default applies. */
export const LAYER_NORM_EPS = 1e-5;
/** HF's OPTLearnedPositionalEmbedding offsets positions by 2 (fairseq legacy). */
export const POSITION_OFFSET = 2;

const DEFAULTS = {
  vocab_size: 50272,
  hidden_size: 768,
  num_hidden_layers: 12,
  ffn_dim: 3072,
  max_position_embeddings: 2048,
  do_layer_norm_before: true,
  _remove_final_layer_norm: false,
  num_attention_heads: 12,
  activation_function: 'relu',
  bos_token_id: 2,
  eos_token_id: 2,
  pad_token_id: 1,
  enable_bias: true,
  layer_norm_elementwise_affine: true,
  tie_word_embeddings: true,
} as const;

/**
 * Upper bounds on sizes, far above any OPT (175B: 96 layers, 12288 wide, 49152 ffn, 50272 tokens,
 * 2048 positions), so a hostile config.json cannot make the loader loop or allocate without end.
 */
const MAX_SIZES = {
  vocab_size: 1 << 24,
  hidden_size: 1 << 20,
  num_hidden_layers: 4096,
  ffn_dim: 1 << 22,
  max_position_embeddings: 1 << 22,
  num_attention_heads: 1 << 16,
  word_embed_proj_dim: 1 << 20,
  num_labels: 1 << 16,
} as const;
/** Token ids fit below the largest vocabulary. */
const MAX_TOKEN_ID = MAX_SIZES.vocab_size - 1;

/** Reads `config.json` in a model folder. */
export async function readOptConfig(dir: string): Promise<OptConfig> {
  const read = await readModelText(dir, 'config.json', CONFIG_FILE_CAP);
  if (read === undefined) {
    throw new CheckpointError(
      join(dir, 'config.json'),
      'config.json is missing',
      'a model folder needs the config.json published with the checkpoint (e.g. from huggingface.co/facebook/opt-125m)',
    );
  }
  return parseOptConfig(parseJsonText(read.text, read.file), read.file);
}

/** Validates a parsed config.json and fills transformers' defaults. `file` names it in errors. */
export function parseOptConfig(raw: unknown, file = 'config.json'): OptConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new CheckpointError(file, 'config.json must hold a JSON object');
  }
  const r = raw as Record<string, unknown>;
  if (r.model_type !== undefined && r.model_type !== 'opt') {
    throw new CheckpointError(
      file,
      `model_type is ${brief(r.model_type)}, not "opt"`,
      'this runtime runs OPT checkpoints only (facebook/opt-*)',
    );
  }
  const architectures = (r.architectures ?? ['OPTForCausalLM']) as unknown;
  if (!Array.isArray(architectures) || architectures.length === 0) {
    throw new CheckpointError(file, 'architectures must be a non-empty list');
  }
  for (const a of architectures) {
    if (!(OPT_ARCHITECTURES as readonly unknown[]).includes(a)) {
      throw new CheckpointError(file, `unsupported architecture ${brief(a)}`, `supported: ${OPT_ARCHITECTURES.join(', ')}`);
    }
  }

  const int = (key: keyof typeof DEFAULTS | 'word_embed_proj_dim' | 'num_labels', fallback: number, min = 1): number => {
    const v = r[key] ?? fallback;
    const max: number = (MAX_SIZES as Record<string, number>)[key] ?? MAX_TOKEN_ID;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw new CheckpointError(file, `${key} must be an integer from ${min} to ${max}, got ${brief(v)}`);
    }
    return v;
  };
  const bool = (key: keyof typeof DEFAULTS, fallback: boolean): boolean => {
    const v = r[key] ?? fallback;
    if (typeof v !== 'boolean') throw new CheckpointError(file, `${key} must be true or false, got ${brief(v)}`);
    return v;
  };

  const hidden_size = int('hidden_size', DEFAULTS.hidden_size);
  const num_attention_heads = int('num_attention_heads', DEFAULTS.num_attention_heads);
  if (hidden_size % num_attention_heads !== 0) {
    throw new CheckpointError(file, `hidden_size ${hidden_size} is not divisible by num_attention_heads ${num_attention_heads}`);
  }
  const activation_function = r.activation_function ?? DEFAULTS.activation_function;
  if (!(SUPPORTED_ACTIVATIONS as readonly unknown[]).includes(activation_function)) {
    throw new CheckpointError(
      file,
      `unsupported activation_function ${brief(activation_function)}`,
      `supported: ${SUPPORTED_ACTIVATIONS.join(', ')}`,
    );
  }
  const id2label = r.id2label ?? undefined;
  if (
    id2label !== undefined &&
    (typeof id2label !== 'object' || Array.isArray(id2label) || !Object.values(id2label).every((l) => typeof l === 'string'))
  ) {
    throw new CheckpointError(file, `id2label must map label ids to label names, got ${brief(id2label)}`);
  }
  const num_labels = int('num_labels', id2label ? Object.keys(id2label).length : 2);

  return {
    architectures: architectures as OptArchitecture[],
    vocab_size: int('vocab_size', DEFAULTS.vocab_size),
    hidden_size,
    num_hidden_layers: int('num_hidden_layers', DEFAULTS.num_hidden_layers),
    num_attention_heads,
    ffn_dim: int('ffn_dim', DEFAULTS.ffn_dim),
    max_position_embeddings: int('max_position_embeddings', DEFAULTS.max_position_embeddings),
    word_embed_proj_dim: int('word_embed_proj_dim', hidden_size),
    do_layer_norm_before: bool('do_layer_norm_before', DEFAULTS.do_layer_norm_before),
    _remove_final_layer_norm: bool('_remove_final_layer_norm', DEFAULTS._remove_final_layer_norm),
    enable_bias: bool('enable_bias', DEFAULTS.enable_bias),
    layer_norm_elementwise_affine: bool('layer_norm_elementwise_affine', DEFAULTS.layer_norm_elementwise_affine),
    activation_function: activation_function as Activation,
    bos_token_id: int('bos_token_id', DEFAULTS.bos_token_id, 0),
    eos_token_id: int('eos_token_id', DEFAULTS.eos_token_id, 0),
    pad_token_id: int('pad_token_id', DEFAULTS.pad_token_id, 0),
    tie_word_embeddings: bool('tie_word_embeddings', DEFAULTS.tie_word_embeddings),
    torch_dtype: typeof r.torch_dtype === 'string' ? r.torch_dtype : undefined,
    num_labels,
    id2label: id2label as Record<string, string> | undefined,
    problem_type: typeof r.problem_type === 'string' ? r.problem_type : undefined,
  };
}

/** Derived sizes used throughout the graph builder. */
export function headDim(c: OptConfig): number {
  return c.hidden_size / c.num_attention_heads;
}

/** Whether the decoder has a final LayerNorm (pre-LN models, unless removed by an old fine-tune). */
export function hasFinalLayerNorm(c: OptConfig): boolean {
  return c.do_layer_norm_before && !c._remove_final_layer_norm;
}

/** Whether embeddings are projected in and out (opt-350m: 512 ↔ 1024). */
export function hasProjection(c: OptConfig): boolean {
  return c.word_embed_proj_dim !== c.hidden_size;
}

/** generation_config.json, if present: sampling defaults for `generate`. Unknown keys are kept. */
export async function readGenerationConfig(dir: string): Promise<Record<string, unknown> | undefined> {
  const read = await readModelText(dir, 'generation_config.json', CONFIG_FILE_CAP);
  if (read === undefined) return undefined;
  const v = parseJsonText(read.text, read.file);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new CheckpointError(read.file, `generation_config.json is not a JSON object: it holds ${brief(v)}`);
  }
  return v as Record<string, unknown>;
}
