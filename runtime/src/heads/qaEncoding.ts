// Encodes a question and its context as one input the way transformers' question-answering pipeline
// does for OPT (its tokenizer pads on the right, so the question comes first): OPT's fast tokenizer
// template for a pair is BOS + question + context, with no separator (GPT2Converter's
// `bos $A $B`; the slow tokenizer would insert a second BOS). Only the context's tokens may be
// answers, and a span maps back to characters of the context through the tokenizer's offsets.

import { Tokenizer } from 'tokenizers';
import { CheckpointError, UsageError } from '../errors.js';
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

  async encode(question: string, context: string): Promise<QaInput> {
    if (question.trim() === '') throw new UsageError('the question is empty: ask something about the context');
    if (context.trim() === '') throw new UsageError('the context is empty: give the text the answer is to be found in');
    const enc = await this._rust.encode(question, context, { addSpecialTokens: true });
    const ids = enc.getIds();
    const sequence = enc.getSequenceIds();
    const offsets = enc.getOffsets();
    const utf16 = codePointToUtf16(context);
    const toUtf16 = (cp: number) => utf16[Math.min(cp, utf16.length - 1)]!;
    const charsOf = (token: number, side: 0 | 1): number => {
      // The tokenizer's offsets count Unicode code points; JS strings count UTF-16 units.
      const word = enc.tokenToWord(token);
      const chars = word === null ? undefined : enc.wordToChars(word, 1);
      return toUtf16(chars ? chars[side] : offsets[token]![side]!);
    };
    return {
      ids,
      candidate: sequence.map((s) => s === 1),
      charSpan: (startToken, endToken) => ({ start: charsOf(startToken, 0), end: charsOf(endToken, 1) }),
    };
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
