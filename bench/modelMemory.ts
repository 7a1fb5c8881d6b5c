// Peak resident memory of a loaded model against the size of its weights, for any checkpoint
// (the main benchmark uses opt-125m's shapes, where Node, onnxruntime and the tokenizer alone are
// most of the footprint). Loads the model as the runtime does, prefills a prompt in the decoder's
// chunks, decodes, and prints RSS after each phase with the ratio to the converted model files.
//   node --import tsx bench/modelMemory.ts --model DIR [--dtype int8] [--threads 2] [--prompt 1024] [--steps 32]
// Uses the sizes section's opt-1.3b-shaped random checkpoint (fp16, written once to .cache/bench-opt-1.3b-f16) when --model is omitted.

import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { KvCache } from '../runtime/src/decoder.js';
import { loadOptModel } from '../runtime/src/model.js';
import type { GraphDtype } from '../runtime/src/onnx/optGraph.js';
import { ONNX_CACHE_DIR, ensureSizedCheckpoint, folderBytes } from './lib/util.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    dtype: { type: 'string', default: 'int8' },
    threads: { type: 'string', default: '2' },
    prompt: { type: 'string', default: '1024' },
    steps: { type: 'string', default: '32' },
  },
});
const dir = values.model ?? (await ensureSizedCheckpoint('opt-1.3b')).dir;
const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
const rss = () => process.memoryUsage().rss;
const started = performance.now();
const model = await loadOptModel(dir, { dtype: values.dtype as GraphDtype, threads: Number(values.threads), cacheDir: ONNX_CACHE_DIR });
const loadSeconds = (performance.now() - started) / 1000;
const afterLoad = rss();
const n = Number(values.prompt),
  steps = Number(values.steps);
const mask = new BigInt64Array(n + steps).fill(1n);
const ids = BigInt64Array.from({ length: n }, (_, i) => BigInt(4 + ((i * 7919) % 50000)));
let past: KvCache = (
  await model.decoder.forward({ inputIds: ids, batch: 1, attentionMask: mask.subarray(0, n), logitsToKeep: 1, reserve: n + steps })
).present;
const afterPrefill = rss();
const t0 = performance.now();
for (let t = 0; t < steps; t++) {
  past = (
    await model.decoder.forward({
      inputIds: BigInt64Array.of(BigInt(100 + t)),
      batch: 1,
      attentionMask: mask.subarray(0, n + t + 1),
      past,
      logitsToKeep: 1,
    })
  ).present;
}
const msPerStep = (performance.now() - t0) / steps;
const weights = folderBytes(join(model.source.modelPath, '..'));
const peak = process.resourceUsage().maxRSS * 1024;
console.log(
  `model ${dir}: ${model.config.num_hidden_layers} layers, hidden ${model.config.hidden_size}, ${values.dtype}, ${values.threads} threads; loaded in ${loadSeconds.toFixed(1)} s`,
);
console.log(`converted model files ${mib(weights)}`);
console.log(
  `RSS after load ${mib(afterLoad)}, after a ${n}-token prefill ${mib(afterPrefill)}, after ${steps} steps ${mib(rss())}; peak ${mib(peak)} = ${(peak / weights).toFixed(2)}× the model files`,
);
console.log(`decode ${msPerStep.toFixed(1)} ms per step at context ${n}…${n + steps}`);
await model.dispose();
