// One decode step, side by side: the plain graph (KV cache grown by Concat, new output buffers every
// step) against the contrib-op graph (GroupQueryAttention updating a fixed-capacity cache in place,
// logits written into a caller-owned buffer). Reports the median step time and the median bytes of
// ArrayBuffer memory the step allocates, at several context lengths. Run:
//   node --import tsx bench/decodeStep.ts [--dtype int8] [--threads 2]
// (the opt-125m-shaped checkpoint comes from bench/graphOptions.ts, which writes it on first use).

import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { convertCheckpoint } from '../runtime/src/convert.js';
import { type KvCache, OptDecoder } from '../runtime/src/decoder.js';
import { createSession } from '../runtime/src/session.js';

const { values } = parseArgs({ options: { dtype: { type: 'string', default: 'int8' }, threads: { type: 'string', default: '2' }, dir: { type: 'string', default: '.cache/bench-opt-125m' }, steps: { type: 'string', default: '24' } } });
const cacheDir = join(values.dir, '..', 'bench-onnx-cache');
const V = 50272;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const decoders: [string, OptDecoder][] = [];
for (const fused of [false, true]) {
  const { modelPath } = await convertCheckpoint(values.dir, { dtype: values.dtype as 'int8', fused, cacheDir });
  const session = await createSession(modelPath, { device: 'cpu', threads: Number(values.threads) });
  decoders.push([fused ? 'in-place cache (GroupQueryAttention)' : 'Concat cache (plain ops)', new OptDecoder(session, { numLayers: 12, numHeads: 12, headDim: 64, vocabSize: V, maxPositions: 2048 })]);
}

console.log(`opt-125m shapes, ${values.dtype}, ${values.threads} threads, batch 1; medians over ${values.steps} steps\n`);
console.log('| context | cache | decode ms/token | ArrayBuffer bytes allocated per step |');
console.log('|---|---|---|---|');
for (const context of [128, 512, 1024]) {
  for (const [name, dec] of decoders) {
    const prompt = BigInt64Array.from({ length: context }, (_, i) => BigInt(4 + ((i * 7919) % 50000)));
    const logitsBuffer = new Float32Array(V);
    let past: KvCache = (await dec.forward({ inputIds: prompt, batch: 1, attentionMask: new BigInt64Array(context).fill(1n), logitsToKeep: 1, reserve: context + Number(values.steps) })).present;
    const mask = new BigInt64Array(context + Number(values.steps)).fill(1n);
    const times: number[] = [], bytes: number[] = [];
    for (let t = 0; t < Number(values.steps); t++) {
      const before = process.memoryUsage().arrayBuffers;
      const s = performance.now();
      const out = await dec.forward({ inputIds: BigInt64Array.of(BigInt(100 + t)), batch: 1, attentionMask: mask.subarray(0, context + t + 1), past, logitsToKeep: 1, logitsBuffer });
      times.push(performance.now() - s);
      bytes.push(process.memoryUsage().arrayBuffers - before); // negative when a GC ran in between: the median ignores those
      past = out.present;
    }
    console.log(`| ${context} | ${name} | ${median(times).toFixed(2)} | ${median(bytes).toLocaleString('en')} |`);
  }
}
for (const [, dec] of decoders) await dec.release();
