// Perplexity of a text under a causal LM, by transformers' documented sliding-window method
// ("Perplexity of fixed-length models"): the text is tokenized once, BOS first; windows of
// `maxLength` tokens move by `stride`; each window scores only the tokens no earlier window scored
// (the rest are its context), each token predicted from the tokens before it in its window; the
// perplexity is exp(total negative log-likelihood / tokens scored). A token can only be scored with
// at least one token before it, so the BOS is never scored, and with stride = maxLength the first
// token of each window is not scored either (exactly as the method's labels of -100 and the shift
// leave it).

import { readFile, stat } from 'node:fs/promises';
import type { OptDecoder } from './decoder.js';
import { fileAccessError } from './errors.js';
import { UsageError } from '../../protocol/errors.js';
import type { OptTokenizer } from './tokenizer/optTokenizer.js';

/** One model pass: tokens [begin, end) are fed, tokens [scoredFrom, end) are scored. */
export interface PerplexityWindow {
  begin: number;
  end: number;
  scoredFrom: number;
}

/** The windows over `length` tokens: transformers' loop, with the shifted labels' bookkeeping made explicit. */
export function slidingWindows(length: number, maxLength: number, stride: number): PerplexityWindow[] {
  if (!Number.isInteger(maxLength) || maxLength < 2) throw new UsageError(`max_length must be an integer >= 2, got ${maxLength}`);
  if (!Number.isInteger(stride) || stride < 1 || stride > maxLength)
    throw new UsageError(`stride must be an integer from 1 to max_length (${maxLength}), got ${stride}`);
  const windows: PerplexityWindow[] = [];
  let prevEnd = 0;
  for (let begin = 0; begin < length; begin += stride) {
    const end = Math.min(begin + maxLength, length);
    const scoredFrom = Math.max(prevEnd, begin + 1);
    if (scoredFrom < end) windows.push({ begin, end, scoredFrom });
    prevEnd = end;
    if (end === length) break;
  }
  return windows;
}

export interface PerplexityResult {
  perplexity: number;
  tokens_scored: number;
  /** Natural log. */
  nll_sum: number;
}

/** exp(nll / tokens); NaN when nothing was scored. */
export const perplexityOf = (nllSum: number, tokens: number): PerplexityResult => ({
  perplexity: tokens > 0 ? Math.exp(nllSum / tokens) : NaN,
  tokens_scored: tokens,
  nll_sum: nllSum,
});

/** -log softmax(row)[label], computed in float64. */
export function negativeLogLikelihood(row: Float32Array, label: number): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  return Math.log(sum) + max - row[label]!;
}

/**
 * Scores `ids` window by window with the decoder (one pass per window, no cache kept between them).
 * `onWindow` reports progress after each pass.
 */
export async function scoreTokens(
  decoder: OptDecoder,
  ids: readonly number[],
  options: { maxLength: number; stride: number; signal?: AbortSignal; onWindow?: (done: number, total: number) => void },
): Promise<PerplexityResult> {
  const vocab = decoder.shape.vocabSize;
  const windows = slidingWindows(ids.length, options.maxLength, options.stride);
  let nll = 0,
    scored = 0;
  for (const [n, w] of windows.entries()) {
    options.signal?.throwIfAborted();
    const s = w.end - w.begin;
    // Logits at position j predict token j + 1: positions scoredFrom - 1 … end - 2, i.e. the last
    // (end - scoredFrom + 1) positions less the very last.
    const keep = w.end - w.scoredFrom + 1;
    const out = await decoder.forward({
      inputIds: BigInt64Array.from(ids.slice(w.begin, w.end), BigInt),
      batch: 1,
      attentionMask: new BigInt64Array(s).fill(1n),
      logitsToKeep: keep,
    });
    decoder.releaseCache(out.present);
    for (let k = 0; k < keep - 1; k++) {
      nll += negativeLogLikelihood(out.logits.subarray(k * vocab, (k + 1) * vocab), ids[w.scoredFrom + k]!);
      scored++;
    }
    options.onWindow?.(n + 1, windows.length);
  }
  return perplexityOf(nll, scored);
}

/** Text files larger than this are refused before they are read. */
const MAX_TEXT_BYTES = 256 * 2 ** 20;

/** A file to score: a regular file (a FIFO would block, /dev/zero never end) of UTF-8 text, not empty; a clear error otherwise. */
export async function readTextFile(path: string): Promise<string> {
  let bytes: Buffer;
  try {
    const s = await stat(path);
    if (s.isDirectory()) throw new UsageError(`${path} is a folder: pass text files`);
    if (!s.isFile()) throw new UsageError(`${path} is not a regular file (a FIFO, socket or device): pass text files`);
    if (s.size > MAX_TEXT_BYTES)
      throw new UsageError(
        `${path} is ${(s.size / 2 ** 20).toFixed(0)} MiB, more than the ${MAX_TEXT_BYTES / 2 ** 20} MiB perplexity reads from one file: split it`,
      );
    bytes = await readFile(path);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new UsageError(`${path}: no such file`);
    throw fileAccessError(err) ?? err;
  }
  if (bytes.length === 0) throw new UsageError(`${path} is empty: there is nothing to score`);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new UsageError(`${path} is not UTF-8 text: perplexity is measured on text`);
  }
}

export interface FilePerplexity extends PerplexityResult {
  file: string;
}

/**
 * Each text scored on its own (tokenized once, BOS first), and the total over all of them:
 * exp(sum of NLL / sum of tokens scored).
 */
export async function perplexityOfTexts(
  model: { tokenizer: OptTokenizer; decoder: OptDecoder },
  texts: readonly { file: string; text: string }[],
  options: { maxLength: number; stride: number; onProgress?: (file: string, window: number, windows: number) => void },
): Promise<{ files: FilePerplexity[]; total: PerplexityResult }> {
  const files: FilePerplexity[] = [];
  for (const { file, text } of texts) {
    const ids = await model.tokenizer.encode(text);
    const r = await scoreTokens(model.decoder, ids, { ...options, onWindow: (done, total) => options.onProgress?.(file, done, total) });
    files.push({ file, ...r });
  }
  const total = perplexityOf(
    files.reduce((n, f) => n + f.nll_sum, 0),
    files.reduce((n, f) => n + f.tokens_scored, 0),
  );
  return { files, total };
}
