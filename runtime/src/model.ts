// Loads an OPT model folder for inference: the config, the tokenizer and an ONNX decoder
// session, converting Hugging Face weights (cached) or taking an ONNX export as it is.

import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type OptConfig, headDim, readGenerationConfig, readOptConfig } from './config.js';
import { convertCheckpoint } from './convert.js';
import { OptDecoder } from './decoder.js';
import { CheckpointError, UsageError } from './errors.js';
import { availableMemoryBytes, estimateModelBytes, gib } from './memory.js';
import type { GraphDtype } from './onnx/optGraph.js';
import { type Device, createSession } from './session.js';
import { OptTokenizer } from './tokenizer/optTokenizer.js';

export const DTYPES = ['auto', 'fp32', 'fp16', 'int8', 'int4'] as const;
export type DtypeChoice = (typeof DTYPES)[number];

export interface LoadOptions {
  dtype?: DtypeChoice;
  device?: Device;
  threads?: number;
  /** onnxruntime contrib operators (default) or plain ONNX operators. */
  fused?: boolean;
  cacheDir?: string;
  /** Refuse, before loading, a model whose estimated footprint exceeds the available memory. */
  checkMemory?: boolean;
  /** For tests: the memory to check against (default: what the OS reports available). */
  availableMemoryBytes?: number;
}

export interface ModelSource {
  kind: 'converted' | 'onnx-export';
  modelPath: string;
  dtype: GraphDtype;
  /** Seconds spent converting in this load (0 when the cache had it). */
  convertSeconds: number;
}

export interface OptModel {
  readonly dir: string;
  readonly config: OptConfig;
  readonly generationConfig: Record<string, unknown> | undefined;
  readonly tokenizer: OptTokenizer;
  readonly decoder: OptDecoder;
  readonly source: ModelSource;
  dispose(): Promise<void>;
}

/** Export file names per dtype (transformers.js v3+/Optimum, newest layout first). */
const EXPORT_SUFFIX: Record<GraphDtype, string> = { fp32: '', fp16: '_fp16', int8: '_quantized', int4: '_q4' };
const EXPORT_BASES = ['model', 'decoder_model_merged'];

export function resolveDtype(dtype: DtypeChoice, device: Device): GraphDtype {
  if (dtype !== 'auto') return dtype;
  return device === 'cpu' ? 'int8' : 'fp16';
}

export async function loadOptModel(dir: string, options: LoadOptions = {}): Promise<OptModel> {
  const isDir = await stat(dir).then((s) => s.isDirectory(), () => false);
  if (!isDir) throw new UsageError(`model folder not found: ${dir} (pass a folder holding config.json and the weights, e.g. a download of huggingface.co/facebook/opt-125m)`);
  if (options.dtype !== undefined && !(DTYPES as readonly string[]).includes(options.dtype)) {
    throw new UsageError(`unknown dtype "${options.dtype}": choose one of ${DTYPES.join(', ')}`);
  }
  const device = options.device ?? 'cpu';
  const dtype = resolveDtype(options.dtype ?? 'auto', device);
  const config = await readOptConfig(dir);
  if (config.architectures[0] !== 'OPTForCausalLM') {
    throw new UsageError(`${dir} holds an ${config.architectures[0]} checkpoint, which has no language-model head: text generation needs OPTForCausalLM`);
  }
  if (options.checkMemory) {
    const need = estimateModelBytes(config, dtype);
    const have = options.availableMemoryBytes ?? availableMemoryBytes();
    if (need > have) {
      const smaller = dtype === 'int4' ? 'a smaller model' : 'a smaller model or a lower precision (--dtype int4)';
      throw new UsageError(`this model needs about ${gib(need)} of memory at ${dtype}, but only ${gib(have)} is available: choose ${smaller}`);
    }
  }
  const [tokenizer, generationConfig] = await Promise.all([OptTokenizer.fromDir(dir), readGenerationConfig(dir)]);
  const source = await locateModel(dir, dtype, options);
  const session = await createSession(source.modelPath, { device, threads: options.threads ?? 0 });
  const decoder = new OptDecoder(session, {
    numLayers: config.num_hidden_layers,
    numHeads: config.num_attention_heads,
    headDim: headDim(config),
    vocabSize: config.vocab_size,
    maxPositions: config.max_position_embeddings,
  });
  return { dir, config, generationConfig, tokenizer, decoder, source, dispose: () => decoder.release() };
}

/** Prefers converting the checkpoint's weights; falls back to an ONNX export shipped in `onnx/`. */
async function locateModel(dir: string, dtype: GraphDtype, options: LoadOptions): Promise<ModelSource> {
  const exported = await findExport(dir, dtype);
  const hasWeights = (await readdir(dir)).some((f) => /^(model.*\.safetensors|pytorch_model.*\.bin)(\.index\.json)?$/.test(f));
  if (exported && !hasWeights) return { kind: 'onnx-export', modelPath: exported, dtype, convertSeconds: 0 };
  if (!hasWeights && !exported) {
    const available = await listExports(dir);
    if (available.length > 0) {
      throw new CheckpointError(join(dir, 'onnx'), `no ${dtype} export found`, `available: ${available.join(', ')}; pick the matching --dtype`);
    }
  }
  const r = await convertCheckpoint(dir, { dtype, fused: options.fused, cacheDir: options.cacheDir });
  return { kind: 'converted', modelPath: r.modelPath, dtype, convertSeconds: r.seconds };
}

async function findExport(dir: string, dtype: GraphDtype): Promise<string | undefined> {
  const files = await listExports(dir);
  for (const base of EXPORT_BASES) {
    const name = `${base}${EXPORT_SUFFIX[dtype]}.onnx`;
    if (files.includes(name)) return join(dir, 'onnx', name);
  }
  return undefined;
}

async function listExports(dir: string): Promise<string[]> {
  return (await readdir(join(dir, 'onnx')).catch(() => [] as string[])).filter((f) => f.endsWith('.onnx'));
}
