// Section 7, several OPT sizes side by side: random checkpoints with the exact shapes of opt-125m,
// opt-350m and opt-1.3b (int8, 2 threads), each measured for
// - the editor replay through the runtime process (editor.ts's machinery): prefix reuse while
//   typing, keystroke → result, tokens per completion;
// - decode tokens/s at a short and at a ~1,500-token context, against that size's own bandwidth
//   ceiling (bytes one decode step reads: the int8 weights a step reads + the KV cache at that
//   context, into the machine's DRAM read bandwidth, measured in the same run);
// - the runtime process's peak RSS against its weights + KV.
// Each function runs in a child of bench/run.ts (bench/child.ts).

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import {
  OUT_DIR,
  OPT_SIZES,
  ONNX_CACHE_DIR,
  type OptSize,
  ROOT,
  childScript,
  ensureSizedCheckpoint,
  folderBytes,
  median,
} from '../lib/util.js';

// The runtime's modules are imported where used: bench/run.ts imports this file for its plan only.

export const SIZES = Object.keys(OPT_SIZES) as OptSize[];

/** The shape figures the section's arithmetic needs, from a size's config. */
export function sizeShape(size: OptSize) {
  const c = OPT_SIZES[size].config;
  return {
    layers: c.num_hidden_layers,
    hidden: c.hidden_size,
    heads: c.num_attention_heads,
    proj: c.word_embed_proj_dim,
    /** KV bytes per token at int8: the runtime keeps a float32 cache for every graph but fp16's. */
    kvBytesPerToken: c.num_hidden_layers * 2 * c.hidden_size * 4,
  };
}

/** The runtime's KV buffers grow in steps of 64 positions (runtime/src/decoder.ts). */
export const kvBytesAt = (size: OptSize, tokens: number): number => Math.ceil(tokens / 64) * 64 * sizeShape(size).kvBytesPerToken;

export interface SizePrepareResult {
  size: OptSize;
  dir: string;
  checkpointWritten: boolean;
  checkpointSeconds: number;
  checkpointBytes: number;
  converted: boolean;
  convertSeconds: number;
  /** The converted int8 model files. */
  modelBytes: number;
  /** Initializer bytes one batch-1 decode step reads (bandwidth.ts), by role, and all initializers (what the model holds). */
  decodeBytes: number;
  decodeParts: Record<string, number>;
  initializerBytes: number;
}

/** Writes (once) the size's checkpoint and converts it to int8 (cached), and sums what a decode step reads. */
export async function prepareSize(p: { size: OptSize }): Promise<SizePrepareResult> {
  const { convertCheckpoint } = await import('../../runtime/src/convert.js');
  const { bytesPerDecodeStep } = await import('./bandwidth.js');
  const c = await ensureSizedCheckpoint(p.size);
  const converted = await convertCheckpoint(c.dir, { dtype: 'int8', cacheDir: ONNX_CACHE_DIR });
  const bytes = bytesPerDecodeStep(converted.modelPath, OPT_SIZES[p.size].config.vocab_size);
  return {
    size: p.size,
    dir: c.dir,
    checkpointWritten: c.written,
    checkpointSeconds: c.seconds,
    checkpointBytes: folderBytes(c.dir),
    converted: converted.converted,
    convertSeconds: converted.seconds,
    modelBytes: folderBytes(join(converted.modelPath, '..')),
    decodeBytes: bytes.totalBytes,
    decodeParts: bytes.parts,
    initializerBytes: bytes.initializerBytes,
  };
}

export interface SizeDecodeRun {
  /** Prompt tokens (BOS included) and tokens generated after it. */
  promptTokens: number;
  newTokens: number;
  /** 1000 / the median interval between consecutive tokens (tokens 2…n). */
  tokensPerSecond: number;
  msPerToken: number;
  /** Call → first token (tokenization + prefill). */
  ttftMs: number;
}

export interface SizeDecodeResult {
  size: OptSize;
  dtype: 'int8';
  threads: number;
  loadSeconds: number;
  runs: SizeDecodeRun[];
  peakRssBytes: number;
}

/** Greedy decode (batch 1) through generateStream after a short and after a long prompt. */
export async function measureSizeDecode(p: {
  size: OptSize;
  threads?: number;
  contexts?: number[];
  newTokens?: number;
}): Promise<SizeDecodeResult> {
  const { loadOptModel } = await import('../../runtime/src/model.js');
  const { generateStream } = await import('../../runtime/src/generation/generate.js');
  const { benchPrompt } = await import('./ours.js');
  const threads = p.threads ?? 2,
    newTokens = p.newTokens ?? 32;
  const t0 = performance.now();
  const model = await loadOptModel(OPT_SIZES[p.size].dir, { dtype: 'int8', threads, cacheDir: ONNX_CACHE_DIR });
  const loadSeconds = (performance.now() - t0) / 1000;
  const run = async (text: string, n: number): Promise<SizeDecodeRun> => {
    const stamps: number[] = [];
    let promptTokens = 0;
    const s = performance.now();
    for await (const e of generateStream(model, text, { do_sample: false, max_new_tokens: n, min_new_tokens: n })) {
      if (e.type === 'token') stamps.push(performance.now());
      else if (e.type === 'done') promptTokens = e.result.promptTokens;
    }
    const gaps = stamps.slice(1).map((t, i) => t - stamps[i]!);
    const ms = median(gaps);
    return { promptTokens, newTokens: stamps.length, tokensPerSecond: 1000 / ms, msPerToken: ms, ttftMs: stamps[0]! - s };
  };
  const runs: SizeDecodeRun[] = [];
  const contexts = p.contexts ?? [128, 1500];
  await run((await benchPrompt(model.tokenizer, contexts[0]!)).text, 4); // warm-up: onnxruntime plans its buffers
  for (const n of contexts) runs.push(await run((await benchPrompt(model.tokenizer, n)).text, newTokens));
  await model.dispose();
  return { size: p.size, dtype: 'int8', threads, loadSeconds, runs, peakRssBytes: process.resourceUsage().maxRSS * 1024 };
}

export interface SizeBandwidthResult {
  bufferBytes: number;
  threads: number;
  gbps: number[];
  medianGBps: number;
  bestGBps: number;
}

/** DRAM read bandwidth with bench/membw.c (as bandwidth.ts measures it): a buffer far past the last-level cache, read once per repetition. */
export async function measureSizeBandwidth(p: { threads?: number; reps?: number }): Promise<SizeBandwidthResult> {
  const exe = join(OUT_DIR, 'membw');
  mkdirSync(OUT_DIR, { recursive: true });
  execFileSync('cc', ['-O3', '-march=native', '-pthread', join(ROOT, 'bench', 'membw.c'), '-o', exe]);
  const threads = p.threads ?? 2;
  // As bandwidth.ts: far past the last-level cache, within a quarter of RAM.
  const bytes = Math.min(Math.max(4 * lastLevelCacheBytes(), 2 ** 30), totalmem() / 4, 4 * 2 ** 30);
  const out = JSON.parse(execFileSync(exe, [String(bytes), String(threads), String(p.reps ?? 5), '1'], { encoding: 'utf8' })) as {
    gbps: number[];
  };
  return { bufferBytes: bytes, threads, gbps: out.gbps, medianGBps: median(out.gbps), bestGBps: Math.max(...out.gbps) };
}

/** What the section replays per size: the larger the model, the fewer keystrokes (each may re-prefill ~1,500 tokens). */
export const SIZE_EDITOR_PLAN: Record<OptSize, { typedChars?: number; pausedSamples: number }> = {
  'opt-125m': { pausedSamples: 5 },
  'opt-350m': { pausedSamples: 5 },
  'opt-1.3b': { typedChars: 90, pausedSamples: 3 },
};

function lastLevelCacheBytes(): number {
  let best = 0;
  for (let i = 0; i < 8; i++) {
    try {
      const m = /^(\d+)([KMG]?)/.exec(readFileSync(`/sys/devices/system/cpu/cpu0/cache/index${i}/size`, 'utf8').trim());
      if (m) best = Math.max(best, Number(m[1]) * ({ '': 1, K: 1024, M: 2 ** 20, G: 2 ** 30 } as Record<string, number>)[m[2]!]!);
    } catch {
      // no such level, or not Linux
    }
  }
  return best || 32 * 2 ** 20;
}

/** This section's child tasks (bench/lib/util.ts runChild starts this file with `script`). */
const TASKS: Record<string, (params: never) => Promise<unknown>> = {
  'sizes-prepare': (p) => prepareSize(p),
  'sizes-decode': (p) => measureSizeDecode(p),
  'sizes-bandwidth': (p) => measureSizeBandwidth(p),
  'sizes-editor': async (p) => (await import('./editor.js')).replayEditing(p),
};
export const SIZES_SCRIPT = await childScript(import.meta.url, TASKS);
