// Measures the graph choices of the converter side by side on one opt-125m-shaped random
// checkpoint: precision (fp32 / int8 / int4), onnxruntime contrib operators or plain ONNX, and
// MatMulNBits accuracy_level. Prints a markdown table of medians; run with
//   node --import tsx bench/graphOptions.ts [--threads 2] [--steps 32]
// Figures are for comparing rows within one run; absolute times drift on shared machines.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { convertCheckpoint } from '../runtime/src/convert.js';
import { OptDecoder } from '../runtime/src/decoder.js';
import type { OptGraphOptions } from '../runtime/src/onnx/optGraph.js';
import { createSession } from '../runtime/src/session.js';
import { writeOptCheckpoint } from '../test/fixtures/optCheckpoint.js';

const { values } = parseArgs({ options: { threads: { type: 'string', default: '2' }, steps: { type: 'string', default: '32' }, prompt: { type: 'string', default: '128' }, dir: { type: 'string', default: '.cache/bench-opt-125m' } } });
const threads = Number(values.threads), steps = Number(values.steps), promptLen = Number(values.prompt);
const OPT_125M = { vocab_size: 50272, hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, ffn_dim: 3072, max_position_embeddings: 2048, word_embed_proj_dim: 768, do_layer_norm_before: true };

if (!existsSync(join(values.dir, 'config.json'))) {
  console.error(`writing an opt-125m-shaped random checkpoint to ${values.dir} …`);
  await writeOptCheckpoint(values.dir, { config: OPT_125M, tokenizer: true });
}
const cacheDir = join(values.dir, '..', 'bench-onnx-cache');

const CASES: [string, Partial<OptGraphOptions>][] = [
  ['fp32, plain ops', { dtype: 'fp32', fused: false }],
  ['fp32, contrib ops', { dtype: 'fp32', fused: true }],
  ['int8, accuracy_level 0', { dtype: 'int8', fused: true, accuracyLevel: 0 }],
  ['int8, accuracy_level 4', { dtype: 'int8', fused: true, accuracyLevel: 4 }],
  ['int4, accuracy_level 0', { dtype: 'int4', fused: true, accuracyLevel: 0 }],
  ['int4, accuracy_level 4', { dtype: 'int4', fused: true, accuracyLevel: 4 }],
];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rows: string[] = [];
for (const [name, options] of CASES) {
  const cold = await convertCheckpoint(values.dir, { ...options, cacheDir, force: true });
  const t0 = performance.now();
  await convertCheckpoint(values.dir, { ...options, cacheDir });
  const session = await createSession(cold.modelPath, { device: 'cpu', threads });
  const warmLoad = performance.now() - t0;
  const dec = new OptDecoder(session, { numLayers: 12, numHeads: 12, headDim: 64, vocabSize: 50272, maxPositions: 2048 });
  const prompt = BigInt64Array.from({ length: promptLen }, (_, i) => BigInt(4 + ((i * 7919) % 50000)));
  const prefillTimes: number[] = [];
  let out;
  for (let r = 0; r < 3; r++) {
    const s = performance.now();
    out = await dec.forward({ inputIds: prompt, batch: 1, attentionMask: new BigInt64Array(promptLen).fill(1n), logitsToKeep: 1 });
    prefillTimes.push(performance.now() - s);
  }
  const stepTimes: number[] = [];
  for (let t = 0; t < steps; t++) {
    const s = performance.now();
    out = await dec.forward({ inputIds: BigInt64Array.of(BigInt(100 + t)), batch: 1, attentionMask: new BigInt64Array(promptLen + t + 1).fill(1n), past: out!.present, logitsToKeep: 1 });
    stepTimes.push(performance.now() - s);
  }
  await dec.release();
  const decodeMs = median(stepTimes);
  rows.push(`| ${name} | ${cold.seconds.toFixed(2)} | ${warmLoad.toFixed(0)} | ${(promptLen / (median(prefillTimes) / 1000)).toFixed(0)} | ${decodeMs.toFixed(2)} | ${(1000 / decodeMs).toFixed(1)} |`);
  console.error(rows.at(-1));
}
console.log(`\nopt-125m shapes, random weights, CPU, ${threads} threads, prompt ${promptLen} tokens, ${steps} decode steps (medians)\n`);
console.log('| graph | convert s | warm load ms | prefill tok/s | decode ms/token | decode tok/s |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
