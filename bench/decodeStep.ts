// One decode step, side by side, for each KV cache layout: the plain graph (cache grown by Concat,
// new output buffers every step), GroupQueryAttention updating a bound buffer in place (onnxruntime-node
// copies bound outputs back), and the append layout (the buffer is an input, only the new keys/values
// come back); logits written into a caller-owned buffer. Reports the median step time and the median bytes of
// ArrayBuffer memory the step allocates, at several context lengths. Run:
//   node --import tsx bench/decodeStep.ts [--dtype int8] [--threads 2] [--steps 24]
// (bench/run.ts calls measureDecodeStep in a child process).

import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { convertCheckpoint } from '../runtime/src/convert.js';
import { type KvCache, OptDecoder } from '../runtime/src/decoder.js';
import type { GraphDtype, KvCacheLayout } from '../runtime/src/onnx/optGraph.js';
import { createSession } from '../runtime/src/session.js';
import { CHECKPOINT_DIR, DECODER_SHAPE, ONNX_CACHE_DIR, ensureCheckpoint, median } from './lib/util.js';

export interface DecodeStepRow {
  context: number;
  cache: string;
  msPerToken: number;
  /** Growth of process.memoryUsage().arrayBuffers over a step, the largest seen (a collection during a step only lowers it). */
  arrayBufferBytesPerStep: number;
}

export interface DecodeStepResult {
  dtype: string;
  threads: number;
  steps: number;
  rows: DecodeStepRow[];
}

export async function measureDecodeStep(
  p: { dtype?: GraphDtype; threads?: number; steps?: number; contexts?: number[] } = {},
): Promise<DecodeStepResult> {
  const dtype = p.dtype ?? 'int8',
    threads = p.threads ?? 2,
    steps = p.steps ?? 24;
  await ensureCheckpoint();
  const decoders: [string, OptDecoder][] = [];
  const layouts: [KvCacheLayout, string][] = [
    ['concat', 'Concat cache (plain ops)'],
    ['inplace', 'in-place buffer bound as output (GroupQueryAttention)'],
    ['append', 'append: buffer as input, new keys/values out'],
  ];
  for (const [kvCache, name] of layouts) {
    const { modelPath } = await convertCheckpoint(CHECKPOINT_DIR, {
      dtype,
      fused: kvCache !== 'concat',
      kvCache,
      cacheDir: ONNX_CACHE_DIR,
    });
    const session = await createSession(modelPath, { device: 'cpu', threads });
    decoders.push([name, new OptDecoder(session, DECODER_SHAPE)]);
  }
  const rows: DecodeStepRow[] = [];
  for (const context of p.contexts ?? [128, 512, 1024, 1500]) {
    for (const [name, dec] of decoders) {
      const prompt = BigInt64Array.from({ length: context }, (_, i) => BigInt(4 + ((i * 7919) % 50000)));
      const logitsBuffer = new Float32Array(DECODER_SHAPE.vocabSize);
      let past: KvCache = (
        await dec.forward({
          inputIds: prompt,
          batch: 1,
          attentionMask: new BigInt64Array(context).fill(1n),
          logitsToKeep: 1,
          reserve: context + steps,
        })
      ).present;
      const mask = new BigInt64Array(context + steps).fill(1n);
      const times: number[] = [],
        bytes: number[] = [];
      for (let t = 0; t < steps; t++) {
        const before = process.memoryUsage().arrayBuffers;
        const s = performance.now();
        const out = await dec.forward({
          inputIds: BigInt64Array.of(BigInt(100 + t)),
          batch: 1,
          attentionMask: mask.subarray(0, context + t + 1),
          past,
          logitsToKeep: 1,
          logitsBuffer,
        });
        times.push(performance.now() - s);
        bytes.push(process.memoryUsage().arrayBuffers - before);
        past = out.present;
      }
      rows.push({ context, cache: name, msPerToken: median(times), arrayBufferBytesPerStep: Math.max(...bytes) });
    }
  }
  for (const [, dec] of decoders) await dec.release();
  return { dtype, threads, steps, rows };
}

export function decodeStepTable(r: DecodeStepResult): string {
  return [`opt-125m shapes, ${r.dtype}, ${r.threads} threads, batch 1; medians over ${r.steps} steps`, '', ...decodeStepRows(r.rows)].join(
    '\n',
  );
}

/** The markdown table (header and rows), as the CLI prints it and bench/RESULTS.md shows it. */
export function decodeStepRows(rows: readonly DecodeStepRow[]): string[] {
  return [
    '| context | cache | decode ms/token | ArrayBuffer bytes allocated by a step (largest over the steps) |',
    '|---|---|---|---|',
    ...rows.map((x) => `| ${x.context} | ${x.cache} | ${x.msPerToken.toFixed(2)} | ${x.arrayBufferBytesPerStep.toLocaleString('en')} |`),
  ];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({
    options: {
      dtype: { type: 'string', default: 'int8' },
      threads: { type: 'string', default: '2' },
      steps: { type: 'string', default: '24' },
    },
  });
  console.log(
    decodeStepTable(
      await measureDecodeStep({ dtype: values.dtype as GraphDtype, threads: Number(values.threads), steps: Number(values.steps) }),
    ),
  );
}
