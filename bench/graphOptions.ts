// Measures the graph choices of the converter side by side on one opt-125m-shaped random
// checkpoint: precision (fp32 / int8 / int4), onnxruntime contrib operators or plain ONNX, and
// MatMulNBits accuracy_level. Prints a markdown table of medians; run with
//   node --import tsx bench/graphOptions.ts [--threads 2] [--steps 32] [--prompt 128]
// (bench/run.ts calls measureGraphOptions in a child process). Compare rows within one run.

import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { convertCheckpoint } from '../runtime/src/convert.js';
import { OptDecoder } from '../runtime/src/decoder.js';
import type { OptGraphOptions } from '../runtime/src/onnx/optGraph.js';
import { createSession } from '../runtime/src/session.js';
import { CHECKPOINT_DIR, DECODER_SHAPE, ONNX_CACHE_DIR, ensureCheckpoint, median, timeRepeated } from './lib/util.js';

export const GRAPH_CASES: [string, Partial<OptGraphOptions>][] = [
  ['fp32, plain ops', { dtype: 'fp32', fused: false }],
  ['fp32, contrib ops', { dtype: 'fp32', fused: true }],
  ['int8, accuracy_level 0', { dtype: 'int8', fused: true, accuracyLevel: 0 }],
  ['int8, accuracy_level 4', { dtype: 'int8', fused: true, accuracyLevel: 4 }],
  ['int4, accuracy_level 0', { dtype: 'int4', fused: true, accuracyLevel: 0 }],
  ['int4, accuracy_level 4', { dtype: 'int4', fused: true, accuracyLevel: 4 }],
];

export interface GraphOptionRow {
  name: string;
  /** Seconds a conversion took in this run (undefined: the model came from the cache). */
  convertSeconds?: number;
  warmLoadMs: number;
  prefillTokensPerSecond: number;
  decodeMsPerToken: number;
  decodeTokensPerSecond: number;
  decodeSteps: number;
}

export interface GraphOptionsParams {
  threads?: number;
  /** Decode steps per case (fewer when a case is slow: each case has a time budget). */
  steps?: number;
  promptLen?: number;
  /** Rebuild every model, to report conversion time (the CLI default). */
  force?: boolean;
  budgetMs?: number;
}

export async function measureGraphOptions(
  p: GraphOptionsParams = {},
): Promise<{ threads: number; promptLen: number; rows: GraphOptionRow[] }> {
  const threads = p.threads ?? 2,
    steps = p.steps ?? 32,
    promptLen = p.promptLen ?? 128,
    budgetMs = p.budgetMs ?? 6000;
  await ensureCheckpoint();
  const rows: GraphOptionRow[] = [];
  for (const [name, options] of GRAPH_CASES) {
    const converted = await convertCheckpoint(CHECKPOINT_DIR, { ...options, cacheDir: ONNX_CACHE_DIR, force: p.force });
    const t0 = performance.now();
    await convertCheckpoint(CHECKPOINT_DIR, { ...options, cacheDir: ONNX_CACHE_DIR });
    const session = await createSession(converted.modelPath, { device: 'cpu', threads });
    const warmLoadMs = performance.now() - t0;
    const dec = new OptDecoder(session, DECODER_SHAPE);
    const prompt = BigInt64Array.from({ length: promptLen }, (_, i) => BigInt(4 + ((i * 7919) % 50000)));
    const mask = new BigInt64Array(promptLen + steps).fill(1n);
    const logitsBuffer = new Float32Array(DECODER_SHAPE.vocabSize);
    const prefill = () =>
      dec.forward({
        inputIds: prompt,
        batch: 1,
        attentionMask: mask.subarray(0, promptLen),
        logitsToKeep: 1,
        reserve: promptLen + steps,
        logitsBuffer,
      });
    const prefillTimes = await timeRepeated(prefill, { min: 1, max: 3, budgetMs });
    let past = (await prefill()).present;
    let t = 0;
    const stepTimes = await timeRepeated(
      async () => {
        past = (
          await dec.forward({
            inputIds: BigInt64Array.of(BigInt(100 + t)),
            batch: 1,
            attentionMask: mask.subarray(0, promptLen + ++t),
            past,
            logitsToKeep: 1,
            logitsBuffer,
          })
        ).present;
      },
      { min: 3, max: steps, budgetMs },
    );
    await dec.release();
    const decodeMs = median(stepTimes);
    rows.push({
      name,
      convertSeconds: converted.converted ? converted.seconds : undefined,
      warmLoadMs,
      prefillTokensPerSecond: promptLen / (median(prefillTimes) / 1000),
      decodeMsPerToken: decodeMs,
      decodeTokensPerSecond: 1000 / decodeMs,
      decodeSteps: stepTimes.length,
    });
  }
  return { threads, promptLen, rows };
}

export function graphOptionsTable(r: { threads: number; promptLen: number; rows: GraphOptionRow[] }): string {
  const lines = [
    `opt-125m shapes, random weights, CPU, ${r.threads} threads, prompt ${r.promptLen} tokens (medians)`,
    '',
    '| graph | convert s | warm load ms | prefill tok/s | decode ms/token | decode tok/s | decode steps |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const x of r.rows) {
    lines.push(
      `| ${x.name} | ${x.convertSeconds?.toFixed(2) ?? 'cached'} | ${x.warmLoadMs.toFixed(0)} | ${x.prefillTokensPerSecond.toFixed(0)} | ${x.decodeMsPerToken.toFixed(2)} | ${x.decodeTokensPerSecond.toFixed(1)} | ${x.decodeSteps} |`,
    );
  }
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({
    options: {
      threads: { type: 'string', default: '2' },
      steps: { type: 'string', default: '32' },
      prompt: { type: 'string', default: '128' },
    },
  });
  console.log(
    graphOptionsTable(
      await measureGraphOptions({
        threads: Number(values.threads),
        steps: Number(values.steps),
        promptLen: Number(values.prompt),
        force: true,
      }),
    ),
  );
}
