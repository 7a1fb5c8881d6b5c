// How much memory a model needs at a given precision, and how much the machine has, so a model
// that cannot fit is refused before loading with the figure it needed.

import { readFileSync } from 'node:fs';
import { freemem } from 'node:os';
import { type OptConfig, hasProjection } from './config.js';
import type { GraphDtype } from './onnx/optGraph.js';

/** Bytes per weight of a linear layer, block scales included (one float per block: 128 weights at int8, 32 at int4). */
const LINEAR_BYTES: Record<GraphDtype, number> = { fp32: 4, fp16: 2, int8: 1 + 4 / 128, int4: 0.5 + 4 / 32 };

/**
 * Resident bytes of the converted model in onnxruntime: every linear layer at its precision; the
 * embedding tables in float (fp16 on GPU graphs); for quantized graphs a quantized copy of the tied
 * lm_head. fp32 Gemm weights are prepacked by onnxruntime (a second copy), hence the factor 2.
 * Plus a fixed allowance for the runtime, the tokenizer and activations.
 */
export function estimateModelBytes(c: OptConfig, dtype: GraphDtype): number {
  const d = c.hidden_size, e = c.word_embed_proj_dim;
  const perLayer = 4 * d * d + 2 * d * c.ffn_dim;
  let linear = c.num_hidden_layers * perLayer + (hasProjection(c) ? 2 * d * e : 0);
  const floatBytes = dtype === 'fp16' ? 2 : 4;
  const embeddings = (c.vocab_size * e + (c.max_position_embeddings + 2) * d) * floatBytes;
  if (dtype === 'int8' || dtype === 'int4') linear += c.vocab_size * e; // lm_head, quantized separately
  const prepack = dtype === 'fp32' ? 2 : 1;
  return Math.round(linear * LINEAR_BYTES[dtype] * prepack + embeddings + 300 * 2 ** 20);
}

/** Memory the kernel says is available for new allocations (MemAvailable), else free memory. */
export function availableMemoryBytes(): number {
  try {
    const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return freemem();
}

export const gib = (bytes: number): string => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
