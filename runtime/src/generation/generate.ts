// The generation loop: Hugging Face `generate` over the ONNX decoder. Prompts are left-padded
// into one batch (expanded by num_return_sequences), prefilled (in chunks, reusing a cached KV
// prefix when one matches), then decoded one token per step; each row runs the logits processors,
// picks a token, streams its text, and stops on EOS, length or a stop string. An AbortSignal ends
// it within one decode step. Every `next()` of the stream is at most one model step, so a
// scheduler can interleave several generations.
//
// Legend: B rows (prompts × num_return_sequences), L padded prompt length, V vocab rows.

import type { OptConfig } from '../config.js';
import { type KvCache, type OptDecoder, kvStorageBytes } from '../decoder.js';
import type { FinishReason } from '../../../protocol/engine.js';
import { UsageError } from '../../../protocol/errors.js';
import type { OptTokenizer } from '../tokenizer/optTokenizer.js';
import { type GenerationOptions, type ResolvedGenerationOptions, resolveGenerationOptions, resolveLengths } from './generationConfig.js';
import { ASSISTANT_DEFAULTS, AssistantDrafter, type DraftStateStore, checkSameTokenizer } from './assistant.js';
import { type LogitsPlan, createLogitsScratch, logitsPlan, processLogits } from './logitsProcessors.js';
import { type Rng, argmax, createRng, sampleCategorical } from './sampling.js';
import { acceptDraft, sampleResidual, softmaxInto } from './speculativeSampling.js';
import { DEFAULT_MAX_MATCHING_NGRAM_SIZE, LookupBackoff, promptLookupCandidates } from './promptLookup.js';
import { StopStringMatcher } from './stopStrings.js';

/** What generation needs of a loaded model (an `OptModel` has all of it). */
export interface GenerationModel {
  readonly config: OptConfig;
  readonly generationConfig: Record<string, unknown> | undefined;
  readonly tokenizer: OptTokenizer;
  readonly decoder: OptDecoder;
}

export type GenerationEvent =
  /** Prompt tokens processed so far (one event per prefill chunk). */
  | { type: 'prefill'; done: number; total: number }
  /** The tokens of one decode step are out; the next `next()` runs the model. */
  | { type: 'step'; length: number }
  /** New text of row `sequence` (possibly '' while a multi-byte character is incomplete). */
  | { type: 'token'; sequence: number; tokenId: number; text: string }
  | { type: 'done'; sequence: number; result: GeneratedSequence };

export interface GeneratedSequence {
  /** Index of the prompt this row continues. */
  prompt: number;
  /** The prompt (when return_full_text) followed by the generated text, special tokens removed. */
  text: string;
  /** Generated token ids (EOS included when it ended the row). */
  tokenIds: number[];
  finishReason: FinishReason;
  /** Prompt tokens as run (after truncation), reused from the prefix cache, and whether truncation happened. */
  promptTokens: number;
  reusedTokens: number;
  truncated: boolean;
  /** With prompt lookup or an assistant: the target's passes (the prefill's last included), candidates proposed and accepted. */
  speculation?: { passes: number; proposed: number; accepted: number };
}

/** A stored KV state and the tokens it holds. */
export interface StoredPrefix {
  tokens: readonly number[];
  cache: KvCache;
  /** Of `tokens`, how many were the prompt's (the rest were generated after it). */
  promptTokens: number;
}

/** KV states of earlier prompts, for single-prompt generation on graphs with an in-place cache. */
export interface PrefixStore {
  /** Hands over (and forgets) the stored state sharing the longest token prefix with `tokens`. */
  take(tokens: readonly number[]): StoredPrefix | undefined;
  /** Keeps a state: `cache` holds the KV of exactly `tokens`, the first `promptTokens` of them the prompt's. */
  put(tokens: readonly number[], cache: KvCache, promptTokens: number): void;
  /** Evicts older states so that `bytes` of new KV storage fit beside the rest within the budget. */
  makeRoom?(bytes: number): void;
}

export interface GenerateParams extends Partial<GenerationOptions> {
  signal?: AbortSignal;
  /** What transformers would only warn about (ignored sampling options, conflicting lengths). */
  onWarning?: (message: string) => void;
  /** A prompt longer than the model allows (or than maxPromptTokens): 'error' (default) or drop tokens after BOS from its start. */
  truncate?: 'error' | 'left';
  /** With truncate 'left': the most prompt tokens to keep. */
  maxPromptTokens?: number;
  prefixStore?: PrefixStore;
  /** Prompt tokens per prefill step (in-place caches only), so one step never runs long. */
  prefillChunk?: number;
  /**
   * Prefill the prompt into `prefixStore` and generate nothing (each row ends with no tokens, finish
   * reason 'length'): a later request with this prompt, truncated by the same options, reuses it.
   * Without a store that can keep the state, nothing is run.
   */
  prefillOnly?: boolean;
  /**
   * transformers' assistant_model: a smaller OPT with the same tokenizer that drafts tokens for this
   * model to verify (num_assistant_tokens, num_assistant_tokens_schedule, assistant_confidence_threshold).
   */
  assistantModel?: GenerationModel;
  /** Keeps the assistant's KV state between requests (the runtime's, one per loaded assistant). */
  assistantStore?: DraftStateStore;
}

/** A stored state whose prompt holds more than this many tokens beyond what a new prompt shares is copied from, not consumed. */
const KEEP_TAIL = 16;

/** Left truncation drops prompt tokens in multiples of this. */
const TRUNCATE_GRANULE = 64;

/** Streams generation events for each prompt × num_return_sequences row. */
export async function* generateStream(
  model: GenerationModel,
  prompts: string | readonly string[],
  params: GenerateParams = {},
): AsyncGenerator<GenerationEvent> {
  const {
    signal,
    onWarning,
    truncate = 'error',
    maxPromptTokens,
    prefixStore,
    prefillChunk,
    prefillOnly = false,
    assistantModel,
    assistantStore,
    ...user
  } = params;
  const { config, tokenizer, decoder } = model;
  const o = resolveGenerationOptions(user, model.generationConfig, config);
  const texts = typeof prompts === 'string' ? [prompts] : [...prompts];
  const encoded = await tokenizer.encodeBatch(texts);
  const maxPositions = config.max_position_embeddings;

  // Rows: each prompt repeated num_return_sequences times, consecutively (HF's expand order).
  const rowPrompt = texts.flatMap((_, p) => Array<number>(o.num_return_sequences).fill(p));
  const b = rowPrompt.length;
  let truncated = false;
  if (truncate === 'left') {
    const newTokens = o.max_new_tokens ?? (o.max_length_is_default ? o.max_length : 1);
    const room = Math.min(maxPromptTokens ?? Infinity, maxPositions - Math.max(1, Math.min(newTokens, maxPositions - 2)));
    for (const [p, ids] of encoded.entries()) {
      if (ids.length <= room) continue;
      // The cut moves in whole granules, so while the user types at the end the kept tokens (and
      // their positions) stay the same for a while and the prefix cache keeps hitting.
      const keepBos = ids[0] === tokenizer.bosTokenId ? 1 : 0;
      const drop = Math.min(ids.length - keepBos - 1, Math.ceil((ids.length - room) / TRUNCATE_GRANULE) * TRUNCATE_GRANULE);
      encoded[p] = [...ids.slice(0, keepBos), ...ids.slice(keepBos + drop)];
      truncated = true;
    }
  }
  const promptLen = Math.max(...encoded.map((ids) => ids.length));
  if (promptLen > maxPositions) {
    throw new UsageError(`the prompt has ${promptLen} tokens but the model has ${maxPositions} positions: shorten it`);
  }
  const lengths = resolveLengths(o, promptLen);
  for (const w of [...o.warnings, ...lengths.warnings]) onWarning?.(w);
  const maxLength = Math.min(lengths.maxLength, maxPositions);
  // Room the KV cache's storage is given when it must be (re)allocated: up to the whole generation,
  // but at most double what is held, so a long max_new_tokens that stops early does not keep
  // storage it never used. Within the room the cache grows in place.
  const reserveFor = (t: number) => Math.min(maxLength, 2 * t + 64);

  // Per-row token history, left-padded as HF sees it (processors read padding too).
  const padOf = (p: number) => promptLen - encoded[p]!.length;
  const tokens: number[][] = rowPrompt.map((p) => [...Array<number>(padOf(p)).fill(o.pad_token_id), ...encoded[p]!]);
  const pads = rowPrompt.map(padOf); // a row's mask: 0 over its left padding, 1 after (generated tokens included)
  const maskBuffer = new BigInt64Array(b * maxLength); // reused every step: rows written at the current width
  const stepIds = new BigInt64Array(b);
  const rng = createRng(o.seed);
  // Speculation (prompt lookup or an assistant model) needs one row and caches that a shorter
  // length truncates (the CPU's buffer layouts); otherwise it decodes one token per pass, as
  // transformers does for batches.
  if (o.prompt_lookup_num_tokens !== undefined && assistantModel) {
    throw new UsageError('prompt_lookup_num_tokens and assistant_model are two ways to draft tokens: choose one');
  }
  const wanted = o.prompt_lookup_num_tokens !== undefined ? 'prompt lookup' : assistantModel ? 'assisted generation' : undefined;
  const speculate =
    wanted !== undefined && b === 1 && decoder.inPlaceCache && (!assistantModel || assistantModel.decoder.inPlaceCache) && !prefillOnly;
  if (wanted && !speculate && !prefillOnly) {
    onWarning?.(
      b > 1
        ? `${wanted} runs one sequence at a time; these ${b} rows decode one token per pass`
        : `${wanted} needs caches kept in host memory (the CPU); this device decodes one token per pass`,
    );
  }
  if (speculate && assistantModel) await checkSameTokenizer(model, assistantModel);
  const spec: Speculator | undefined = !speculate
    ? undefined
    : assistantModel
      ? assistantSpeculator(assistantModel, o, logitsPlan(o, promptLen), maxPositions, rng, assistantStore)
      : lookupSpeculator(
          o.prompt_lookup_num_tokens!,
          o.max_matching_ngram_size ?? DEFAULT_MAX_MATCHING_NGRAM_SIZE,
          maxLength,
          new Set(o.eos_token_id),
        );
  const speculating = spec
    ? {
        spec,
        backoff: new LookupBackoff({ timed: !(o.do_sample && assistantModel) }),
        stats: { passes: 1, proposed: 0, accepted: 0 },
        // The target's distribution at a verified position (speculative sampling).
        p: o.do_sample && assistantModel ? new Float64Array(Math.min(tokenizer.vocabSize, config.vocab_size)) : undefined,
      }
    : undefined;
  // Every pass's logits land here: one row per sequence, or the last token and each candidate.
  const logitsBuffer = new Float32Array(b * config.vocab_size * (spec ? spec.maxCandidates + 1 : 1));
  const plan = logitsPlan(o, promptLen);
  const vocab = Math.min(tokenizer.vocabSize, config.vocab_size); // rows past the tokenizer are never sampled
  const scratch = createLogitsScratch(vocab);
  const streams = rowPrompt.map(() => tokenizer.createStreamDecoder({ skipSpecialTokens: true }));
  const stops = rowPrompt.map(() => new StopStringMatcher(o.stop_strings));
  const generatedText = rowPrompt.map(() => '');
  const finished: (FinishReason | undefined)[] = rowPrompt.map(() => undefined);
  const eos = new Set(o.eos_token_id);

  // A cached KV prefix (single row, in-place cache): prefill only what differs. At least one
  // prompt token is always run, for its logits.
  const store = b === 1 && decoder.inPlaceCache ? prefixStore : undefined;
  let past: KvCache | undefined;
  let reused = 0;
  const found = store?.take(tokens[0]!);
  let alreadyCached = false;
  if (found) {
    const shared = commonPrefix(found.tokens, tokens[0]!);
    reused = Math.min(shared, promptLen - 1);
    if (prefillOnly && shared >= promptLen) {
      // A warm-up of a prompt the state already holds: nothing to run.
      store!.put(found.tokens, found.cache, found.promptTokens);
      reused = promptLen;
      alreadyCached = true;
    } else if (reused === 0) {
      store!.put(found.tokens, found.cache, found.promptTokens); // nothing shared: leave it for another prompt
    } else if (found.promptTokens - reused > KEEP_TAIL) {
      // The state's prompt goes on well past what this prompt shares (another document with the same
      // first lines, a cursor moved up): continue from a copy of the shared part and keep the state
      // whole. What was generated after a prompt is not worth a copy: the next keystroke replaces it.
      // Room for the state going back and for the copy, before the copy is made.
      store!.makeRoom?.(2 * kvStorageBytes(found.cache));
      past = decoder.copyPrefix(found.cache, reused, reserveFor(promptLen));
      store!.put(found.tokens, found.cache, found.promptTokens);
    } else {
      past = { ...found.cache, length: reused }; // typing, backspacing: extended in place
    }
  }

  let fed = reused; // positions whose KV is in `past`
  let input: BigInt64Array;
  const endWithoutTokens = function* () {
    for (let r = 0; r < b; r++) {
      finished[r] = 'length';
      yield { type: 'done', sequence: r, result: result(r) } as const;
    }
  };
  if (prefillOnly && (!store || alreadyCached)) {
    yield* endWithoutTokens();
    return;
  }
  try {
    // Prefill, in chunks when the cache is updated in place (each chunk extends it).
    const chunk = decoder.inPlaceCache && prefillChunk ? prefillChunk : promptLen;
    let out;
    while (true) {
      signal?.throwIfAborted();
      const end = Math.min(promptLen, fed + chunk);
      input = BigInt64Array.from(
        tokens.flatMap((row) => row.slice(fed, end)),
        BigInt,
      );
      out = await decoder.forward({
        inputIds: input,
        batch: b,
        attentionMask: fillMask(maskBuffer, pads, end),
        past,
        logitsToKeep: 1,
        logitsBuffer,
        reserve: reserveFor(end),
      });
      past = out.present;
      fed = end;
      if (fed === promptLen) break;
      yield { type: 'prefill', done: fed, total: promptLen };
    }
    if (prefillOnly) {
      yield* endWithoutTokens();
      return;
    }

    /** Row r's next token, streamed; marks the row finished on EOS, a stop string or the length. */
    const emitToken = function* (r: number, next: number, length: number) {
      tokens[r]!.push(next);
      let text = streams[r]!.push(next);
      const stopAt = stops[r]!.push(text);
      if (stopAt >= 0) text = text.slice(0, stopAt - generatedText[r]!.length); // end the text with the stop string
      generatedText[r] += text;
      yield { type: 'token', sequence: r, tokenId: next, text } as const;
      if (eos.has(next)) finished[r] = 'eos';
      else if (stopAt >= 0) finished[r] = 'stop';
      else if (length + 1 >= maxLength) finished[r] = 'length';
      if (finished[r]) yield { type: 'done', sequence: r, result: result(r) } as const;
      return next;
    };
    /** Row r's next token picked from its scores (processed in place), as plain decoding picks it. */
    const emit = function* (r: number, scores: Float32Array, length: number) {
      processLogits(scores, tokens[r]!, length - promptLen, plan, scratch);
      return yield* emitToken(r, o.do_sample ? sampleCategorical(scores, rng, scratch) : argmax(scores), length);
    };

    if (speculating) {
      // One row, speculation: each pass scores the last token and the candidates after it; the
      // tokens are picked one by one exactly as plain decoding picks them (same processors, same
      // random draws), and a candidate counts only when it is the token picked. What follows the
      // first miss is dropped from the cache by shortening it.
      let cands: number[] = [];
      let passMs = Number.NaN; // the prefill's pass is not a decode pass: not timed
      for (let length = promptLen; ;) {
        signal?.throwIfAborted();
        let next = -1;
        let accepted = 0;
        for (let j = 0; j <= cands.length; j++) {
          const row = out.logits.subarray(j * config.vocab_size, j * config.vocab_size + vocab);
          const q = o.do_sample && j < cands.length ? speculating.spec.probabilities?.(j) : undefined;
          if (q) {
            // Speculative sampling: the draft's sample stays with probability p/q, else a draw
            // from what p has beyond q; either way the token is distributed as the target's.
            processLogits(row, tokens[0]!, length - promptLen, plan, scratch);
            const p = softmaxInto(row, speculating.p!);
            const keep = acceptDraft(p, q, cands[j]!, rng);
            next = yield* emitToken(0, keep ? cands[j]! : sampleResidual(p, q, rng), length);
            length++;
            if (finished[0] || !keep) break;
            accepted++;
            speculating.stats.accepted++;
            continue;
          }
          next = yield* emit(0, row, length);
          length++;
          if (finished[0] || j === cands.length || next !== cands[j]) break;
          accepted++;
          speculating.stats.accepted++; // counted as it happens: the result is read when the text ends, mid-pass
        }
        // The model work of the pass that produced these tokens, against plain passes' (not the time the consumer took between them).
        speculating.backoff.recordCost(passMs, accepted + 1, cands.length > 0);
        if (cands.length > 0) {
          speculating.backoff.record(accepted);
          speculating.spec.accepted(accepted);
          // The pass stored the last token and every candidate; keep those up to the last accepted one.
          fed = fed - cands.length + accepted;
          past = { ...past!, length: fed };
        }
        if (finished[0]) break;
        yield { type: 'step', length };
        signal?.throwIfAborted();
        const t0 = performance.now();
        cands =
          !speculating.backoff.needsPlainTiming && speculating.backoff.shouldTry()
            ? await speculating.spec.propose(tokens[0]!, Math.min(maxLength - length, speculating.spec.maxCandidates), length - promptLen)
            : [];
        const ids = [next, ...cands];
        out = await decoder.forward({
          inputIds: BigInt64Array.from(ids, BigInt),
          batch: 1,
          attentionMask: fillMask(maskBuffer, pads, length + cands.length),
          past,
          logitsToKeep: ids.length,
          logitsBuffer,
          reserve: reserveFor(length + cands.length),
        });
        past = out.present;
        fed = length + cands.length;
        speculating.stats.passes++;
        speculating.stats.proposed += cands.length;
        passMs = performance.now() - t0;
      }
      return;
    }

    for (let length = promptLen; ; length++) {
      signal?.throwIfAborted();
      for (let r = 0; r < b; r++) {
        if (finished[r]) {
          tokens[r]!.push(o.pad_token_id); // finished rows keep receiving padding, as in HF
          stepIds[r] = BigInt(o.pad_token_id);
          continue;
        }
        const scores = out.logits.subarray(r * config.vocab_size, r * config.vocab_size + vocab);
        stepIds[r] = BigInt(yield* emit(r, scores, length));
      }
      if (finished.every(Boolean)) break;
      yield { type: 'step', length: length + 1 };
      signal?.throwIfAborted();
      out = await decoder.forward({
        inputIds: stepIds,
        batch: b,
        attentionMask: fillMask(maskBuffer, pads, length + 1),
        past,
        logitsToKeep: 1,
        logitsBuffer,
        reserve: reserveFor(length + 1),
      });
      past = out.present;
      fed = length + 1;
    }
  } finally {
    speculating?.spec.dispose();
    // The cache holds the KV of the first `fed` tokens: keep it for the next prompt that shares them.
    if (store && past) store.put(tokens[0]!.slice(0, fed), { ...past, length: fed }, Math.min(fed, promptLen));
    else if (past) decoder.releaseCache(past);
  }

  function result(r: number): GeneratedSequence {
    const tail = finished[r] === 'stop' ? '' : streams[r]!.flush();
    const text = generatedText[r]! + tail;
    const p = rowPrompt[r]!;
    return {
      prompt: p,
      text: o.return_full_text ? texts[p]! + text : text,
      tokenIds: tokens[r]!.slice(promptLen),
      finishReason: finished[r]!,
      promptTokens: encoded[p]!.length,
      reusedTokens: reused,
      truncated,
      ...(speculating ? { speculation: { ...speculating.stats } } : {}),
    };
  }
}

/** Where candidates for the next tokens come from; generate.ts verifies them in one pass. */
interface Speculator {
  /** The most candidates one proposal holds (sizes the logits buffer). */
  readonly maxCandidates: number;
  /** Candidates after `ids`, at most `room`; `generated` counts the generated tokens among `ids`. */
  propose(ids: readonly number[], room: number, generated: number): number[] | Promise<number[]>;
  /** How many of the last proposal's candidates the target kept. */
  accepted(n: number): void;
  /** With sampling: the proposer's distribution for candidate `j` (speculative sampling); none for prompt lookup. */
  probabilities?(j: number): Float64Array | undefined;
  dispose(): void;
}

function lookupSpeculator(numTokens: number, maxNgram: number, maxLength: number, eos: ReadonlySet<number>): Speculator {
  return {
    maxCandidates: numTokens,
    propose: (ids, room) => promptLookupCandidates(ids, maxNgram, numTokens, maxLength, eos, room),
    accepted: () => undefined,
    dispose: () => undefined,
  };
}

/** The heuristic schedule grows after every round all accepted (transformers: without bound); it stops here. */
const MAX_ASSISTANT_TOKENS = 64;

function assistantSpeculator(
  draft: GenerationModel,
  o: ResolvedGenerationOptions,
  plan: LogitsPlan,
  maxPositions: number,
  rng: Rng,
  store: DraftStateStore | undefined,
): Speculator {
  const schedule = o.num_assistant_tokens_schedule ?? ASSISTANT_DEFAULTS.schedule;
  const numTokens = o.num_assistant_tokens ?? ASSISTANT_DEFAULTS.numAssistantTokens;
  const drafter = new AssistantDrafter(draft, {
    numAssistantTokens: numTokens,
    schedule,
    confidenceThreshold: o.assistant_confidence_threshold ?? ASSISTANT_DEFAULTS.confidenceThreshold,
    plan,
    maxPositions: Math.min(maxPositions, draft.config.max_position_embeddings),
    ...(o.do_sample ? { sample: { rng } } : {}),
    ...(store ? { store } : {}),
  });
  return {
    maxCandidates: schedule === 'heuristic' ? MAX_ASSISTANT_TOKENS : numTokens,
    propose: (ids, room, generated) => drafter.propose(ids, room, generated),
    accepted: (n) => drafter.accepted(n),
    probabilities: (j) => drafter.probabilities(j),
    dispose: () => drafter.dispose(),
  };
}

/** Runs generation to the end and returns one result per row, in row order. */
export async function generate(
  model: GenerationModel,
  prompts: string | readonly string[],
  params: GenerateParams = {},
): Promise<GeneratedSequence[]> {
  const results: GeneratedSequence[] = [];
  for await (const event of generateStream(model, prompts, params)) {
    if (event.type === 'done') results[event.sequence] = event.result;
  }
  return results;
}

/** transformers' `pipeline('text-generation')` shape: one list of `{ generated_text }` per prompt. */
export function textGenerationPipeline(model: GenerationModel) {
  return async (prompts: string | readonly string[], params: GenerateParams = {}): Promise<{ generated_text: string }[][]> => {
    const rows = await generate(model, prompts, params);
    const byPrompt: { generated_text: string }[][] = [];
    for (const row of rows) (byPrompt[row.prompt] ??= []).push({ generated_text: row.text });
    return byPrompt;
  };
}

/** How many leading tokens two sequences share. */
export function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/** The [rows, width] attention mask, written with fills: no per-element BigInt conversion on each step. */
function fillMask(buffer: BigInt64Array, pads: readonly number[], width: number): BigInt64Array {
  for (let r = 0; r < pads.length; r++) {
    buffer.fill(0n, r * width, r * width + pads[r]!);
    buffer.fill(1n, r * width + pads[r]!, (r + 1) * width);
  }
  return buffer.subarray(0, pads.length * width);
}

export type { ResolvedGenerationOptions };
