// Warm load: what a second start of the runtime pays for a model converted before — the cache
// lookup (config + content fingerprint), the tokenizer and the onnxruntime session. Run:
//   node --import tsx bench/warmLoad.ts [--dir .cache/bench-opt-125m] [--runs 5]

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadOptModel } from '../runtime/src/model.js';

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: '.cache/bench-opt-125m' },
    runs: { type: 'string', default: '5' },
    threads: { type: 'string', default: '2' },
  },
});
const cacheDir = join(values.dir, '..', 'bench-onnx-cache');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

console.log('| dtype | cold load (convert + session) s | warm load median ms | warm min ms |');
console.log('|---|---|---|---|');
for (const dtype of ['int8', 'int4', 'fp32'] as const) {
  const t0 = performance.now();
  const coldDir = join(cacheDir, `cold-${process.pid}`);
  const cold = await loadOptModel(values.dir, { dtype, cacheDir: coldDir, threads: Number(values.threads) });
  const coldS = (performance.now() - t0) / 1000;
  await cold.dispose();
  rmSync(coldDir, { recursive: true, force: true });
  await (await loadOptModel(values.dir, { dtype, cacheDir, threads: Number(values.threads) })).dispose(); // make sure it is cached
  const warm: number[] = [];
  for (let r = 0; r < Number(values.runs); r++) {
    const s = performance.now();
    const m = await loadOptModel(values.dir, { dtype, cacheDir, threads: Number(values.threads) });
    warm.push(performance.now() - s);
    await m.dispose();
  }
  console.log(`| ${dtype} | ${coldS.toFixed(2)} | ${median(warm).toFixed(0)} | ${Math.min(...warm).toFixed(0)} |`);
}
