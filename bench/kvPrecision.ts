// The append KV cache stored in float32 (today's default) vs float16 (kvDtype 'fp16': the graph casts
// each layer's buffers to float32 before the attention matmuls), side by side in one process: int8
// weights, 2 threads, batch 1. For each context: decode ms/token (median over the steps, the two
// sessions alternating step by step so drift hits both), the cache's bytes, and the process RSS
// (both sessions live in this process, so RSS here is their sum; each precision's own RSS is then
// measured in a child process of its own). Run:
//   flock /tmp/opt-bench.lock node --import tsx bench/kvPrecision.ts [--steps 24] [--contexts 128,512,1000,1500,2000] [--deep]
// --deep adds a narrow-deep shape with opt-1.3b's KV bytes per token (96 layers × 512 hidden = 24 × 2048).

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { convertCheckpoint } from '../runtime/src/convert.js';
import { type KvCache, OptDecoder } from '../runtime/src/decoder.js';
import type { KvDtype } from '../runtime/src/onnx/optGraph.js';
import { createSession } from '../runtime/src/session.js';
import { writeOptCheckpoint } from '../test/fixtures/optCheckpoint.js';
import { CHECKPOINT_DIR, DECODER_SHAPE, ONNX_CACHE_DIR, OPT_125M, ROOT, ensureCheckpoint, median } from './lib/util.js';

const KV_DTYPES: KvDtype[] = ['fp32', 'fp16'];
const MiB = 1024 * 1024;

interface Shape {
  name: string;
  dir: string;
  config: typeof OPT_125M;
  decoder: typeof DECODER_SHAPE;
}

const OPT125M: Shape = { name: 'opt-125m shapes (12 layers × 768)', dir: CHECKPOINT_DIR, config: OPT_125M, decoder: DECODER_SHAPE };
/** opt-1.3b's KV bytes per token (24 × 2048 = 96 × 512) with a small vocabulary, so the checkpoint stays small. */
const DEEP_CONFIG = {
  ...OPT_125M,
  vocab_size: 4096,
  hidden_size: 512,
  num_hidden_layers: 96,
  num_attention_heads: 8,
  ffn_dim: 2048,
  word_embed_proj_dim: 512,
};
const DEEP: Shape = {
  name: 'narrow-deep (96 layers × 512, opt-1.3b KV bytes per token)',
  dir: join(ROOT, '.cache', 'bench-opt-deep-96x512'),
  config: DEEP_CONFIG,
  decoder: { numLayers: 96, numHeads: 8, headDim: 64, vocabSize: 4096, maxPositions: 2048 },
};

export interface KvPrecisionRow {
  shape: string;
  context: number;
  kvDtype: KvDtype;
  msPerToken: number;
  kvBytes: number;
  /** RSS of this process (both sessions and caches) after the context's steps. */
  rssBothBytes: number;
}

async function openDecoder(shape: Shape, kvDtype: KvDtype, threads: number): Promise<OptDecoder> {
  if (shape === OPT125M) await ensureCheckpoint();
  else await ensureDeepCheckpoint();
  const { modelPath } = await convertCheckpoint(shape.dir, {
    dtype: 'int8',
    fused: true,
    kvCache: 'append',
    kvDtype,
    cacheDir: ONNX_CACHE_DIR,
  });
  return new OptDecoder(await createSession(modelPath, { device: 'cpu', threads }), shape.decoder);
}

async function ensureDeepCheckpoint(): Promise<void> {
  const { existsSync } = await import('node:fs');
  if (existsSync(join(DEEP.dir, 'model.safetensors'))) return;
  console.error(`writing a ${DEEP.name} random checkpoint to ${DEEP.dir} …`);
  await writeOptCheckpoint(DEEP.dir, { config: DEEP.config, tokenizer: false, seed: 2, dtype: 'F16' });
}

const kvBytes = (c: KvCache) => c.tensors.reduce((n, t) => n + (t.data as Float32Array | Uint16Array).byteLength, 0);
const promptOf = (n: number) => BigInt64Array.from({ length: n }, (_, i) => BigInt(4 + ((i * 7919) % 4000)));

export async function measureKvPrecision(shape: Shape, contexts: number[], steps: number, threads = 2): Promise<KvPrecisionRow[]> {
  const decs: OptDecoder[] = [];
  for (const k of KV_DTYPES) decs.push(await openDecoder(shape, k, threads)); // one at a time: the first writes the checkpoint
  const rows: KvPrecisionRow[] = [];
  for (const context of contexts) {
    // Each cache gets room for the whole run (as generate reserves prompt + new tokens).
    const pasts: KvCache[] = [];
    for (const dec of decs) {
      pasts.push(
        (
          await dec.forward({
            inputIds: promptOf(context),
            batch: 1,
            attentionMask: new BigInt64Array(context).fill(1n),
            logitsToKeep: 1,
            reserve: context + steps + 2,
          })
        ).present,
      );
    }
    const mask = new BigInt64Array(context + steps + 2).fill(1n);
    const logits = decs.map(() => new Float32Array(shape.decoder.vocabSize));
    const times: number[][] = decs.map(() => []);
    // One untimed warm-up step each, then alternate: fp32, fp16, fp32, fp16, … (who goes first alternates too).
    for (let t = -1; t < steps; t++) {
      const order = t % 2 === 0 ? [0, 1] : [1, 0];
      for (const j of order) {
        const s = performance.now();
        const out = await decs[j]!.forward({
          inputIds: BigInt64Array.of(BigInt(100 + t)),
          batch: 1,
          attentionMask: mask.subarray(0, context + t + 2),
          past: pasts[j]!,
          logitsToKeep: 1,
          logitsBuffer: logits[j],
        });
        if (t >= 0) times[j]!.push(performance.now() - s);
        pasts[j] = out.present;
      }
    }
    const rss = process.memoryUsage().rss;
    KV_DTYPES.forEach((kvDtype, j) =>
      rows.push({ shape: shape.name, context, kvDtype, msPerToken: median(times[j]!), kvBytes: kvBytes(pasts[j]!), rssBothBytes: rss }),
    );
    pasts.length = 0;
    (globalThis as { gc?: () => void }).gc?.();
  }
  for (const d of decs) await d.release();
  return rows;
}

/** One precision alone in this process: RSS after prefilling each context (fresh cache each time) and a few steps. */
async function rssAlone(shape: Shape, kvDtype: KvDtype, contexts: number[], threads: number): Promise<Record<number, number>> {
  const dec = await openDecoder(shape, kvDtype, threads);
  const out: Record<number, number> = {};
  for (const context of contexts) {
    let past = (
      await dec.forward({
        inputIds: promptOf(context),
        batch: 1,
        attentionMask: new BigInt64Array(context).fill(1n),
        logitsToKeep: 1,
        reserve: context + 8,
      })
    ).present;
    for (let t = 0; t < 4; t++) {
      past = (
        await dec.forward({
          inputIds: BigInt64Array.of(100n),
          batch: 1,
          attentionMask: new BigInt64Array(context + t + 1).fill(1n),
          past,
          logitsToKeep: 1,
        })
      ).present;
    }
    out[context] = process.memoryUsage().rss;
    dec.releaseCache(past); // a no-op on the CPU: the cache goes with the loop's scope
    (globalThis as { gc?: () => void }).gc?.();
  }
  await dec.release();
  return out;
}

function rssInChild(deep: boolean, kvDtype: KvDtype, contexts: number[], threads: number): Record<number, number> | undefined {
  const r = spawnSync(
    process.execPath,
    [
      '--expose-gc',
      '--import',
      'tsx',
      import.meta.filename,
      '--child',
      kvDtype,
      '--contexts',
      contexts.join(','),
      '--threads',
      String(threads),
      ...(deep ? ['--deep-only'] : []),
    ],
    { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const line = r.stdout.trim().split('\n').at(-1);
  try {
    return JSON.parse(line ?? '') as Record<number, number>;
  } catch {
    console.error(`child ${kvDtype} failed: ${r.status} ${r.stdout.slice(-500)}`);
    return undefined;
  }
}

export function kvPrecisionTable(
  rows: KvPrecisionRow[],
  alone: Record<string, Record<number, number> | undefined>,
  steps: number,
  threads: number,
): string {
  const lines: string[] = [];
  for (const shape of [...new Set(rows.map((r) => r.shape))]) {
    lines.push(
      `${shape}: int8 weights, ${threads} threads, batch 1, median of ${steps} decode steps, fp32/fp16 sessions alternating step by step in one process`,
      '',
    );
    lines.push(
      '| context | fp32 cache ms/token | fp16 cache ms/token | fp16 / fp32 | fp32 cache MiB | fp16 cache MiB | RSS both MiB | RSS fp32 alone MiB | RSS fp16 alone MiB |',
    );
    lines.push('|---|---|---|---|---|---|---|---|---|');
    const contexts = [...new Set(rows.filter((r) => r.shape === shape).map((r) => r.context))];
    for (const c of contexts) {
      const a = rows.find((r) => r.shape === shape && r.context === c && r.kvDtype === 'fp32')!;
      const b = rows.find((r) => r.shape === shape && r.context === c && r.kvDtype === 'fp16')!;
      const al = (k: KvDtype) => {
        const v = alone[`${shape}/${k}`]?.[c];
        return v === undefined ? '–' : (v / MiB).toFixed(0);
      };
      lines.push(
        `| ${c} | ${a.msPerToken.toFixed(2)} | ${b.msPerToken.toFixed(2)} | ${(b.msPerToken / a.msPerToken).toFixed(2)}× | ${(a.kvBytes / MiB).toFixed(1)} | ${(b.kvBytes / MiB).toFixed(1)} | ${(a.rssBothBytes / MiB).toFixed(0)} | ${al('fp32')} | ${al('fp16')} |`,
      );
    }
    lines.push('');
  }
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({
    options: {
      steps: { type: 'string', default: '24' },
      threads: { type: 'string', default: '2' },
      contexts: { type: 'string', default: '128,512,1000,1500,2000' },
      'deep-contexts': { type: 'string', default: '512,1500' },
      deep: { type: 'boolean', default: false },
      'deep-only': { type: 'boolean', default: false },
      'no-rss': { type: 'boolean', default: false },
      child: { type: 'string' },
    },
  });
  const threads = Number(values.threads),
    steps = Number(values.steps);
  const contexts = values.contexts.split(',').map(Number);
  const deepContexts = values['deep-contexts'].split(',').map(Number);
  if (values.child) {
    const shape = values['deep-only'] ? DEEP : OPT125M;
    console.log(JSON.stringify(await rssAlone(shape, values.child as KvDtype, contexts, threads)));
  } else {
    const plan: [Shape, number[]][] = [];
    if (!values['deep-only']) plan.push([OPT125M, contexts]);
    if (values.deep || values['deep-only']) plan.push([DEEP, deepContexts]);
    const rows: KvPrecisionRow[] = [];
    const alone: Record<string, Record<number, number> | undefined> = {};
    for (const [shape, cs] of plan) {
      rows.push(...(await measureKvPrecision(shape, cs, steps, threads)));
      console.log(
        kvPrecisionTable(
          rows.filter((r) => r.shape === shape.name),
          {},
          steps,
          threads,
        ),
      );
      if (!values['no-rss']) for (const k of KV_DTYPES) alone[`${shape.name}/${k}`] = rssInChild(shape === DEEP, k, cs, threads);
    }
    console.log('\n# final\n');
    console.log(kvPrecisionTable(rows, alone, steps, threads));
  }
}
