// Section 1, our runtime per precision and thread count: cold load (convert + session), warm load
// (cached model), prefill tokens/s, time to first token, decode tokens/s (greedy, top-p, top-k) and
// peak RSS. Each function runs inside its own child process (bench/child.ts), started by bench/run.ts.

import { join } from 'node:path';
import { convertCheckpoint } from '../../runtime/src/convert.js';
import type { KvCache } from '../../runtime/src/decoder.js';
import { type GenerateParams, generate, generateStream } from '../../runtime/src/generation/generate.js';
import { type OptModel, loadOptModel } from '../../runtime/src/model.js';
import type { GraphDtype } from '../../runtime/src/onnx/optGraph.js';
import { createSession } from '../../runtime/src/session.js';
import { OptTokenizer } from '../../runtime/src/tokenizer/optTokenizer.js';
import { CHECKPOINT_DIR, ONNX_CACHE_DIR, folderBytes, median, timeRepeated } from '../lib/util.js';
import { typescriptSource } from '../lib/texts.js';

export interface OursParams {
  dtype: GraphDtype;
  threads: number;
  quick?: boolean;
  /** Prompt lengths for the prefill figures. */
  prefillLengths?: number[];
  /** The realistic decode context: prompt tokens, then new tokens. */
  promptTokens?: number;
  newTokens?: number;
}

/** Settings every generation run shares with the peer's (do_sample, top_k, temperature). */
export const SAMPLING = {
  greedy: { do_sample: false },
  topP: { do_sample: true, top_p: 0.95, top_k: 0, temperature: 0.8, seed: 1 },
  topK: { do_sample: true, top_k: 50, temperature: 0.8, seed: 1 },
} as const;

/**
 * The token-for-token check against the peer: greedy with a repetition penalty (HF's rule, which
 * both implement), because plain greedy on random weights repeats one token and proves little.
 */
export const CHECK = { do_sample: false, repetition_penalty: 1.5, max_new_tokens: 32, min_new_tokens: 32 } as const;
export type SamplingName = keyof typeof SAMPLING;

/** The first `n` token ids (BOS included) of the benchmark's TypeScript text. */
export async function benchPromptIds(tokenizer: OptTokenizer, n: number): Promise<number[]> {
  const ids = await tokenizer.encode(typescriptSource(Math.max(24_000, n * 6)));
  if (ids.length < n) throw new Error(`the benchmark text has only ${ids.length} tokens, ${n} wanted`);
  return ids.slice(0, n);
}

/** A prompt text of about `n` tokens and its exact ids (the text re-encoded, as generation will see it). */
export async function benchPrompt(tokenizer: OptTokenizer, n: number): Promise<{ text: string; ids: number[] }> {
  const text = tokenizer.decode((await benchPromptIds(tokenizer, n)).slice(1), { skipSpecialTokens: true });
  return { text, ids: await tokenizer.encode(text) };
}

export interface ColdResult {
  dtype: GraphDtype;
  threads: number;
  convertSeconds: number;
  coldLoadSeconds: number;
  convertPeakRssBytes: number;
  modelBytes: number;
}

/** Cold load: convert the checkpoint (forced, into the bench cache) and open it, as a first start does. */
export async function coldLoad(p: OursParams): Promise<ColdResult> {
  const t0 = performance.now();
  const converted = await convertCheckpoint(CHECKPOINT_DIR, { dtype: p.dtype, cacheDir: ONNX_CACHE_DIR, force: true });
  const model = await loadOptModel(CHECKPOINT_DIR, { dtype: p.dtype, threads: p.threads, cacheDir: ONNX_CACHE_DIR });
  const coldLoadSeconds = (performance.now() - t0) / 1000;
  await model.dispose();
  return {
    dtype: p.dtype,
    threads: p.threads,
    convertSeconds: converted.seconds,
    coldLoadSeconds,
    convertPeakRssBytes: process.resourceUsage().maxRSS * 1024,
    modelBytes: folderBytes(join(converted.modelPath, '..')),
  };
}

export interface GenerationFigures {
  promptTokens: number;
  newTokens: number;
  /** Median over runs: call → first token event (tokenization + prefill + first sampling). */
  ttftMs: number;
  /** Median over runs of (new tokens − 1) / (last token − first token). */
  decodeTokensPerSecond: number;
  decodeMsPerToken: number;
  runs: number;
  /** Greedy: the generated ids of the first run, for the token-for-token check against the peer. */
  tokenIds: number[];
}

export interface OursResult {
  dtype: GraphDtype;
  threads: number;
  warmLoadMs: number;
  warmLoadRunsMs: number[];
  /** The parts of a warm load, timed one by one (page cache warm). */
  warmLoadParts: { cacheLookupMs: number; tokenizerMs: number; sessionMs: number };
  /** Resident memory after the warm load, after generation at the decode context, and the peak after the prefills. */
  rssAfterLoadBytes: number;
  rssAfterGenerationBytes: number;
  modelBytes: number;
  prefill: { tokens: number; ms: number; tokensPerSecond: number; runs: number }[];
  generation: Record<SamplingName, GenerationFigures>;
  /** The ids CHECK generates after the decode prompt. */
  checkTokenIds: number[];
  /** Decode ms/token measured step by step on the decoder alone (no sampling), at the same context. */
  decoderStepMs: number;
  peakRssBytes: number;
}

export async function measureOurs(p: OursParams): Promise<OursResult> {
  const quick = p.quick ?? false;
  const promptTokens = p.promptTokens ?? 128;
  const newTokens = p.newTokens ?? 64;
  const load = () => loadOptModel(CHECKPOINT_DIR, { dtype: p.dtype, threads: p.threads, cacheDir: ONNX_CACHE_DIR });

  // Warm load: the cached model, as every later start of the editor pays. The first open warms the page cache.
  await (await load()).dispose();
  const warmLoadParts = await timeWarmLoadParts(p);
  let model: OptModel | undefined;
  const warmLoadRunsMs = await timeRepeated(
    async () => {
      await model?.dispose();
      model = await load();
    },
    { min: quick ? 2 : 3, max: quick ? 2 : 5, budgetMs: 15_000 },
  );
  const m = model!;
  const tokenizer = m.tokenizer;
  const rssAfterLoadBytes = process.memoryUsage().rss;

  // Generation at the realistic context first, so its memory is measured before the long prefills.
  const { text } = await benchPrompt(tokenizer, promptTokens);
  const generation = {} as Record<SamplingName, GenerationFigures>;
  for (const name of Object.keys(SAMPLING) as SamplingName[]) {
    generation[name] = await timeGeneration(
      m,
      text,
      { ...SAMPLING[name], max_new_tokens: newTokens, min_new_tokens: newTokens },
      !quick && name === 'greedy' ? 3 : 2,
    );
  }
  const checkTokenIds = (await generate(m, text, CHECK))[0]!.tokenIds;
  const decoderStepMs = await decoderStepTime(m, await benchPromptIds(tokenizer, promptTokens), newTokens);
  const rssAfterGenerationBytes = process.memoryUsage().rss;

  const prefill: OursResult['prefill'] = [];
  for (const n of p.prefillLengths ?? [128, 512, 1024]) {
    const ids = BigInt64Array.from(await benchPromptIds(tokenizer, n), BigInt);
    const mask = new BigInt64Array(n).fill(1n);
    const logitsBuffer = new Float32Array(m.config.vocab_size);
    const run = () => m.decoder.forward({ inputIds: ids, batch: 1, attentionMask: mask, logitsToKeep: 1, reserve: n, logitsBuffer });
    await run(); // first run at this shape: onnxruntime plans its buffers
    const times = await timeRepeated(run, { min: 1, max: quick ? 2 : 4, budgetMs: quick ? 2500 : 5000 });
    prefill.push({ tokens: n, ms: median(times), tokensPerSecond: n / (median(times) / 1000), runs: times.length });
  }

  await m.dispose();
  return {
    dtype: p.dtype,
    threads: p.threads,
    warmLoadMs: median(warmLoadRunsMs),
    warmLoadRunsMs,
    warmLoadParts,
    rssAfterLoadBytes,
    rssAfterGenerationBytes,
    modelBytes: folderBytes(join(m.source.modelPath, '..')),
    prefill,
    generation,
    checkTokenIds,
    decoderStepMs,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
}

/** loadOptModel's three costs on their own: the converted-model cache lookup (content fingerprint), the tokenizer, the session. */
async function timeWarmLoadParts(p: OursParams): Promise<OursResult['warmLoadParts']> {
  const t0 = performance.now();
  const { modelPath } = await convertCheckpoint(CHECKPOINT_DIR, { dtype: p.dtype, cacheDir: ONNX_CACHE_DIR });
  const t1 = performance.now();
  await OptTokenizer.fromDir(CHECKPOINT_DIR);
  const t2 = performance.now();
  const session = await createSession(modelPath, { device: 'cpu', threads: p.threads });
  const t3 = performance.now();
  await session.release();
  return { cacheLookupMs: t1 - t0, tokenizerMs: t2 - t1, sessionMs: t3 - t2 };
}

/** What the process costs before any weight: Node, onnxruntime-node, the runtime's modules and the tokenizer. */
export async function baselineRss(): Promise<{ rssBytes: number; peakRssBytes: number }> {
  await import('onnxruntime-node');
  await import('../../runtime/src/generation/generate.js');
  await OptTokenizer.fromDir(CHECKPOINT_DIR);
  return { rssBytes: process.memoryUsage().rss, peakRssBytes: process.resourceUsage().maxRSS * 1024 };
}

/** Streams `runs` generations (the first is a warm-up when more than one) and times their tokens. */
async function timeGeneration(model: OptModel, prompt: string, params: GenerateParams, runs: number): Promise<GenerationFigures> {
  const ttft: number[] = [],
    rates: number[] = [];
  let tokenIds: number[] = [],
    promptTokens = 0;
  for (let r = 0; r <= runs; r++) {
    const stamps: number[] = [];
    const ids: number[] = [];
    const s = performance.now();
    for await (const e of generateStream(model, prompt, params)) {
      if (e.type === 'token') {
        stamps.push(performance.now());
        ids.push(e.tokenId);
      } else if (e.type === 'done') promptTokens = e.result.promptTokens;
    }
    if (r === 0) {
      tokenIds = ids;
      continue; // warm-up run
    }
    ttft.push(stamps[0]! - s);
    rates.push((stamps.length - 1) / ((stamps.at(-1)! - stamps[0]!) / 1000));
  }
  const rate = median(rates);
  return {
    promptTokens,
    newTokens: tokenIds.length,
    ttftMs: median(ttft),
    decodeTokensPerSecond: rate,
    decodeMsPerToken: 1000 / rate,
    runs,
    tokenIds,
  };
}

/** The decoder alone, one token per step after the prompt (the same context as generation). */
async function decoderStepTime(model: OptModel, promptIds: number[], steps: number): Promise<number> {
  const n = promptIds.length;
  const mask = new BigInt64Array(n + steps).fill(1n);
  const logitsBuffer = new Float32Array(model.config.vocab_size);
  let past: KvCache = (
    await model.decoder.forward({
      inputIds: BigInt64Array.from(promptIds, BigInt),
      batch: 1,
      attentionMask: mask.subarray(0, n),
      logitsToKeep: 1,
      reserve: n + steps,
      logitsBuffer,
    })
  ).present;
  const times: number[] = [];
  for (let t = 0; t < steps; t++) {
    const s = performance.now();
    past = (
      await model.decoder.forward({
        inputIds: BigInt64Array.of(BigInt(100 + t)),
        batch: 1,
        attentionMask: mask.subarray(0, n + t + 1),
        past,
        logitsToKeep: 1,
        logitsBuffer,
      })
    ).present;
    times.push(performance.now() - s);
  }
  return median(times);
}
