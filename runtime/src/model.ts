// Loads an OPT model folder for inference: the config, the tokenizer and an ONNX decoder
// session, converting Hugging Face weights (cached) or taking an ONNX export as it is.

import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type OptConfig, headDim, readGenerationConfig, readOptConfig } from './config.js';
import { convertCheckpoint } from './convert.js';
import { OptDecoder } from './decoder.js';
import { CheckpointError } from './errors.js';
import { UsageError } from '../../protocol/errors.js';
import { availableMemoryBytes, describeNeed, gib, memoryNeed } from './memory.js';
import { type GraphDtype, type KvCacheLayout, type OptGraphOptions, presentKey, presentValue } from './onnx/optGraph.js';
import { createSessionForDevice } from './device/open.js';
import { probeDevices } from './device/probe.js';
import { type DevicePlan, type ExecutionDevice, fitModelToDevices, planDevices } from './device/select.js';
import type { Device } from './session.js';
import { OptTokenizer } from './tokenizer/optTokenizer.js';

export const DTYPES = ['auto', 'fp32', 'fp16', 'int8', 'int4'] as const;
export type DtypeChoice = (typeof DTYPES)[number];

export interface LoadOptions {
  dtype?: DtypeChoice;
  /** An execution provider, or `auto` (the default): CUDA, else WebGPU, else the CPU (device/select.ts). */
  device?: Device;
  threads?: number;
  /** Let onnxruntime's threads spin between kernels (default on: measured 27% faster decode for 8% more CPU, see session.ts). */
  spin?: boolean;
  /** onnxruntime contrib operators (default) or plain ONNX operators. */
  fused?: boolean;
  cacheDir?: string;
  /** Refuse, before loading, a model whose estimated footprint exceeds the available memory. */
  checkMemory?: boolean;
  /**
   * With checkMemory: the prompt + completion tokens whose KV cache the check counts (the editor's
   * configured context). Default: the model's positions for a generation model, none for the heads.
   */
  contextTokens?: number;
  /** With checkMemory: a prefix-cache budget set by hand, counted too (an automatic one adapts to what is left). */
  prefixCacheBytes?: number;
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
  /** The execution provider the model runs on (after any fallback). */
  readonly device: ExecutionDevice;
  /** Why the model does not run on the device asked for (a GPU that failed to initialize). */
  readonly deviceFallback?: string;
  dispose(): Promise<void>;
}

/** Export file names per dtype (transformers.js v3+/Optimum, newest layout first). */
const EXPORT_SUFFIX: Record<GraphDtype, string> = { fp32: '', fp16: '_fp16', int8: '_quantized', int4: '_q4' };
const EXPORT_BASES = ['model', 'decoder_model_merged'];

/** `auto`: int8 on the CPU, fp16 on a GPU; `device` is the provider that runs (device/select.ts resolves `auto`). */
export function resolveDtype(dtype: DtypeChoice, device: ExecutionDevice): GraphDtype {
  if (dtype !== 'auto') return dtype;
  return device === 'cpu' ? 'int8' : 'fp16';
}

export async function loadOptModel(dir: string, options: LoadOptions = {}): Promise<OptModel> {
  const isDir = await stat(dir).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!isDir)
    throw new UsageError(
      `model folder not found: ${dir} (pass a folder holding config.json and the weights, e.g. a download of huggingface.co/facebook/opt-125m)`,
    );
  if (options.dtype !== undefined && !(DTYPES as readonly string[]).includes(options.dtype)) {
    throw new UsageError(`unknown dtype "${options.dtype}": choose one of ${DTYPES.join(', ')}`);
  }
  const config = await readOptConfig(dir);
  if (config.architectures[0] !== 'OPTForCausalLM') {
    throw new UsageError(
      `${dir} holds an ${config.architectures[0]} checkpoint, which has no language-model head: text generation needs OPTForCausalLM`,
    );
  }
  const { plan } = planLoad(config, { ...options, contextTokens: options.contextTokens ?? config.max_position_embeddings });
  const [tokenizer, generationConfig] = await Promise.all([OptTokenizer.fromDir(dir), readGenerationConfig(dir)]);
  // Each candidate device gets its graph (dtype `auto` and the KV-cache layout depend on it); conversions are cached.
  let source: ModelSource | undefined;
  const opened = await createSessionForDevice(
    async (d) => {
      source = await locateModel(dir, resolveDtype(options.dtype ?? 'auto', d), options, d);
      return source.modelPath;
    },
    {
      device: plan.requested,
      plan,
      threads: options.threads ?? 0,
      spin: options.spin,
      preferredOutputLocation: cacheOnDevice(config.num_hidden_layers),
    },
  );
  const session = opened.session;
  const decoder = new OptDecoder(session, {
    numLayers: config.num_hidden_layers,
    numHeads: config.num_attention_heads,
    headDim: headDim(config),
    vocabSize: config.vocab_size,
    maxPositions: config.max_position_embeddings,
  });
  return {
    dir,
    config,
    generationConfig,
    tokenizer,
    decoder,
    source: source!,
    device: opened.device,
    deviceFallback: opened.fallbackReason,
    dispose: () => decoder.release(),
  };
}

/**
 * Where a load will try to run: the device plan (a GPU too small for the model is dropped, or
 * refused when asked for by name) and the dtype its first candidate uses; with `checkMemory`, a
 * model that cannot fit in the machine's memory is refused with the figure before anything loads.
 */
export function planLoad(config: OptConfig, options: LoadOptions): { plan: DevicePlan; dtype: GraphDtype } {
  const probe = probeDevices();
  const context = options.contextTokens ?? 0;
  const need = (dtype: GraphDtype) => memoryNeed(config, dtype, context, options.prefixCacheBytes);
  let plan = planDevices(options.device ?? 'auto', probe);
  if (options.checkMemory) plan = fitModelToDevices(plan, probe, (d) => need(resolveDtype(options.dtype ?? 'auto', d)).total);
  const dtype = resolveDtype(options.dtype ?? 'auto', plan.candidates[0]!);
  if (options.checkMemory && plan.candidates[0] === 'cpu') {
    const n = need(dtype);
    const have = options.availableMemoryBytes ?? availableMemoryBytes();
    if (n.total > have) {
      const fixes = [
        ...(n.prefixCache > 0 ? ['a smaller prefix cache (optComplete.runtime.prefixCacheMiB)'] : []),
        ...(n.context >= n.total / 10 ? ['a shorter context (the editor: optComplete.inline.maxContextTokens)'] : []),
        dtype === 'int4' ? 'a smaller model' : 'a smaller model or a lower precision (--dtype int4)',
      ];
      const breakdown = context > 0 ? ` (${describeNeed(n, context)})` : '';
      throw new UsageError(
        `this model needs about ${gib(n.total)} of memory at ${dtype}, but only ${gib(have)} is available${breakdown}: choose ${fixes.join(', or ')}`,
      );
    }
  }
  return { plan, dtype };
}

/**
 * The KV-cache layout for a device. CPU: the append layout (the cache is a host buffer read in
 * place, nothing ∝ context copied per step). WebGPU: Concat, its present outputs left in GPU memory
 * (preferredOutputLocation) and fed back, so a step moves only ids in and logits out. CUDA: the
 * append layout too, since onnxruntime-node 1.30 can leave outputs on the device only for WebGPU
 * (its gpu-buffer outputs use WebGPU's memory info): the host cache crosses to the GPU once per step.
 */
export function kvCacheLayoutFor(device: ExecutionDevice): KvCacheLayout {
  return device === 'webgpu' ? 'concat' : 'append';
}

/**
 * The graph a text-generation load on `device` converts and looks up: its dtype, contrib operators
 * or plain ones, and the KV-cache layout for the device. locateModel and `opt convert` both ask
 * here, so a conversion made ahead of time is the one the load finds.
 */
export function graphOptionsFor(
  dtype: GraphDtype,
  device: ExecutionDevice,
  options: Pick<LoadOptions, 'fused'> = {},
): Pick<OptGraphOptions, 'dtype' | 'fused' | 'kvCache'> {
  const fused = options.fused !== false;
  return { dtype, fused, kvCache: fused ? kvCacheLayoutFor(device) : 'concat' };
}

/**
 * What `opt convert` builds: the graph of the device a load with these options tries first, with
 * the dtype that load resolves for it (planLoad).
 */
export function convertGraphOptions(config: OptConfig, options: LoadOptions): Pick<OptGraphOptions, 'dtype' | 'fused' | 'kvCache'> {
  const { plan, dtype } = planLoad(config, options);
  return graphOptionsFor(dtype, plan.candidates[0]!, options);
}

/** The present outputs a GPU session keeps in device memory (applied on WebGPU only, see session.ts). */
function cacheOnDevice(layers: number): Record<string, 'gpu-buffer'> {
  const out: Record<string, 'gpu-buffer'> = {};
  for (let i = 0; i < layers; i++) out[presentKey(i)] = out[presentValue(i)] = 'gpu-buffer';
  return out;
}

/** Prefers converting the checkpoint's weights; falls back to an ONNX export shipped in `onnx/`. */
async function locateModel(dir: string, dtype: GraphDtype, options: LoadOptions, device: ExecutionDevice): Promise<ModelSource> {
  const exported = await findExport(dir, dtype);
  const hasWeights = (await readdir(dir)).some((f) => /^(model.*\.safetensors|pytorch_model.*\.bin)(\.index\.json)?$/.test(f));
  if (exported && !hasWeights) return { kind: 'onnx-export', modelPath: exported, dtype, convertSeconds: 0 };
  if (!hasWeights && !exported) {
    const available = await listExports(dir);
    if (available.length > 0) {
      throw new CheckpointError(
        join(dir, 'onnx'),
        `no ${dtype} export found`,
        `available: ${available.join(', ')}; pick the matching --dtype`,
      );
    }
  }
  const r = await convertCheckpoint(dir, { ...graphOptionsFor(dtype, device, options), cacheDir: options.cacheDir });
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
