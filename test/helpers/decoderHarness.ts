// Test plumbing shared by the parity tests: open a fixture through the real converter and
// onnxruntime, run the naive reference on the same weights, and compare.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { convertCheckpoint } from '../../runtime/src/convert.js';
import { OptDecoder } from '../../runtime/src/decoder.js';
import type { GraphDtype, KvCacheLayout, KvDtype } from '../../runtime/src/onnx/optGraph.js';
import { createSession } from '../../runtime/src/session.js';
import type { Fixture } from '../fixtures/optCheckpoint.js';
import { naiveOptForward, weightsFromMap } from '../reference/naiveOpt.js';

export function tempDir(prefix: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), `opt-complete-${prefix}-`));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export async function openDecoder(
  f: Fixture,
  cacheDir: string,
  dtype: GraphDtype = 'fp32',
  fused = true,
  kvCache?: KvCacheLayout,
  kvDtype?: KvDtype,
): Promise<OptDecoder> {
  const { modelPath } = await convertCheckpoint(f.dir, { dtype, fused, kvCache, kvDtype, cacheDir });
  const session = await createSession(modelPath, { device: 'cpu', threads: 1 });
  const c = f.config;
  return new OptDecoder(session, {
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    headDim: c.hidden_size / c.num_attention_heads,
    vocabSize: c.vocab_size,
    maxPositions: c.max_position_embeddings,
  });
}

/** Reference logits [B][S] → V values. */
export function naiveLogits(f: Fixture, ids: number[][], mask?: number[][]): Float64Array[][] {
  return naiveOptForward(f.config, weightsFromMap(f.weights), ids, mask).logits;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

export function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
  return best;
}

export const ids64 = (rows: number[][]): BigInt64Array => BigInt64Array.from(rows.flat(), BigInt);

/** Row `r`, position `k` of a [B, K, V] logits buffer. */
export function row(logits: Float32Array, v: number, keep: number, r: number, k: number): Float32Array {
  const at = (r * keep + k) * v;
  return logits.subarray(at, at + v);
}
