// Encodes a question and its context as one input the way transformers' question-answering pipeline
// does for OPT (its tokenizer pads on the right, so the question comes first): OPT's fast tokenizer
// template for a pair is BOS + question + context, with no separator (GPT2Converter's
// `bos $A $B`; the slow tokenizer would insert a second BOS). Only the context's tokens may be
// answers, and a span maps back to characters of the context through the tokenizer's offsets.

import { Tokenizer } from 'tokenizers';
import { CheckpointError } from '../errors.js';
import { UsageError } from '../../../protocol/errors.js';
import { readTokenizerFiles } from '../tokenizer/hfTokenizerFiles.js';

export interface QaInput {
  ids: number[];
  /** True for the context's tokens: the only ones an answer may start or end on. */
  candidate: boolean[];
  /**
   * The characters of the context a token span covers, [start, end) in UTF-16 code units. As the
   * pipeline (align_to_words), a span is widened to whole words: the word of its first token to the
   * word of its last. For OPT's byte-level tokenizer a word includes its leading space, and offsets
   * are not trimmed, so an answer after a space starts with that space, as transformers returns it.
   */
  charSpan(startToken: number, endToken: number): { start: number; end: number };
}

export interface QaWindowOptions {
  /** Tokens per model input, BOS and question included (the pipeline's max_seq_len: min(model_max_length, 384)). */
  maxSeqLen?: number;
  /** Context tokens shared by consecutive windows (the pipeline's doc_stride: min(maxSeqLen / 2, 128)). */
  docStride?: number;
}

export const DEFAULT_MAX_SEQ_LEN = 384;

/**
 * Where each window of a long context starts and ends, in context tokens, as Hugging Face
 * tokenizers' truncation with a stride lays them out (transformers' pipeline uses it with
 * return_overflowing_tokens): windows of `room` tokens every `room - stride`, the last one ending
 * at the context's end. Pure; `room` is what a window leaves for the context after BOS and the question.
 */
export function contextWindows(contextTokens: number, room: number, stride: number): [number, number][] {
  if (room < 1) throw new RangeError(`no room for the context in a window (${room} tokens)`);
  if (stride < 0 || stride >= room)
    throw new RangeError(`the stride (${stride}) must be smaller than the context's room in a window (${room} tokens)`);
  const windows: [number, number][] = [];
  for (let start = 0; ; start += room - stride) {
    const stop = Math.min(start + room, contextTokens);
    windows.push([start, stop]);
    if (stop === contextTokens) return windows;
  }
}

/** Pair encoding over Hugging Face's Rust tokenizer, built from the same files as OptTokenizer. */
export class QaEncoder {
  private constructor(private readonly _rust: Tokenizer) {}

  static async fromDir(dir: string): Promise<QaEncoder> {
    const files = await readTokenizerFiles(dir);
    try {
      return new QaEncoder(Tokenizer.fromString(files.json));
    } catch (err) {
      throw new CheckpointError(files.source, `Hugging Face tokenizers rejects it: ${(err as Error).message}`);
    }
  }

  /** The whole pair as one input (no window limit). */
  async encode(question: string, context: string): Promise<QaInput> {
    return (await this.encodeWindows(question, context, { maxSeqLen: Infinity }))[0]!;
  }

  /**
   * The pair as the pipeline feeds a long context to the model: BOS + the whole question + a
   * window of the context, the windows overlapping by `docStride` tokens. One window when it all fits.
   */
  async encodeWindows(question: string, context: string, options: QaWindowOptions = {}): Promise<QaInput[]> {
    const maxSeqLen = options.maxSeqLen ?? DEFAULT_MAX_SEQ_LEN;
    const docStride = options.docStride ?? Math.min(Math.floor(maxSeqLen / 2), 128);
    const { enc, charsOf } = await this._pair(question, context);
    const ids = enc.getIds();
    const sequence = enc.getSequenceIds();
    const first = sequence.indexOf(1); // BOS and the question come before
    if (first < 0) throw new UsageError('the context has no tokens: give the text the answer is to be found in');
    const room = maxSeqLen - first;
    if (room <= docStride) {
      throw new UsageError(
        `the question is ${first - 1} tokens, which leaves ${Math.max(0, room)} of the ${maxSeqLen}-token window for the context (at least ${docStride + 1} needed): ask a shorter question`,
      );
    }
    return contextWindows(ids.length - first, room, docStride).map(([a, b]) => ({
      ids: [...ids.slice(0, first), ...ids.slice(first + a, first + b)],
      candidate: [...Array<boolean>(first).fill(false), ...Array<boolean>(b - a).fill(true)],
      // A window's context token i is the whole pair's token i + a, whose word and offsets are the context's.
      charSpan: (startToken, endToken) => ({ start: charsOf(startToken + a, 0), end: charsOf(endToken + a, 1) }),
    }));
  }

  private async _pair(question: string, context: string) {
    if (question.trim() === '') throw new UsageError('the question is empty: ask something about the context');
    if (context.trim() === '') throw new UsageError('the context is empty: give the text the answer is to be found in');
    const enc = await this._rust.encode(question, context, { addSpecialTokens: true });
    const offsets = enc.getOffsets();
    const utf16 = codePointToUtf16(context);
    const toUtf16 = (cp: number) => utf16[Math.min(cp, utf16.length - 1)]!;
    const charsOf = (token: number, side: 0 | 1): number => {
      // The tokenizer's offsets count Unicode code points; JS strings count UTF-16 units.
      const word = enc.tokenToWord(token);
      const chars = word === null ? undefined : enc.wordToChars(word, 1);
      return toUtf16(chars ? chars[side] : offsets[token]![side]!);
    };
    return { enc, charsOf };
  }
}

/** Maps each code-point index of `text` (and its end) to the UTF-16 index. */
function codePointToUtf16(text: string): number[] {
  const map: number[] = [];
  let i = 0;
  for (const ch of text) {
    map.push(i);
    i += ch.length;
  }
  map.push(i);
  return map;
}
