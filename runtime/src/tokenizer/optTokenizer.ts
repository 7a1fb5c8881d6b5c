// OPT's tokenizer with token ids equal to Hugging Face's AutoTokenizer (GPT2TokenizerFast): encoding
// runs in Hugging Face's own Rust `tokenizers`; decoding is done here, synchronously, from the
// vocabulary and GPT-2's byte table, with the same bytes-then-UTF-8 rule as the Rust ByteLevel decoder.
import { Tokenizer } from 'tokenizers';
import { CheckpointError } from '../errors.js';
import { tokenBytes } from './byteLevel.js';
import { readTokenizerFiles, type NamedToken, type TokenizerFiles } from './hfTokenizerFiles.js';
import { createStreamDecoder, type StreamDecoder } from './streamDecoder.js';

export type { StreamDecoder } from './streamDecoder.js';

export interface EncodeOptions {
  /** Add the post-processor's special tokens: OPT's BOS `</s>` in front. Default true, as in transformers. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (for OPT `</s>` and `<pad>`; `<s>` and `<unk>` are plain vocabulary there). Default false. */
  skipSpecialTokens?: boolean;
}

/**
 * Decoding follows GPT2TokenizerFast.decode: ids the tokenizer does not know (OPT's embedding has
 * 50272 rows for 50265 tokens) print nothing, and clean_up_tokenization_spaces is not applied
 * (transformers' default since 4.45; OPT's tokenizer_config.json does not set it).
 */
export class OptTokenizer {
  /** One past the largest token id the tokenizer knows: 50265 for OPT, below the model's 50272 embedding rows. */
  readonly vocabSize: number;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  /** OPT names `</s>` as its unk token, so this is 2, as transformers' unk_token_id. */
  readonly unkTokenId: number | undefined;
  readonly specialTokenIds: ReadonlySet<number>;

  private readonly tokens: readonly string[];
  private readonly bytesCache: (Uint8Array | undefined)[] = [];
  private readonly utf8 = new TextDecoder('utf-8', { ignoreBOM: true });

  private constructor(
    private readonly rust: Tokenizer,
    files: TokenizerFiles,
  ) {
    // Ids come from the binding, which encodes: it may renumber added tokens the vocabulary lacks.
    const idOf = (token: NamedToken) => rust.tokenToId(token.content) ?? token.id;
    const tokens = files.vocabTokens;
    const special = new Set<number>();
    for (const token of files.addedTokens) {
      const id = idOf(token);
      tokens[id] = token.content;
      if (token.special) special.add(id);
    }
    this.tokens = tokens;
    this.vocabSize = tokens.length;
    this.bosTokenId = idOf(files.bos);
    this.eosTokenId = idOf(files.eos);
    this.padTokenId = idOf(files.pad);
    this.unkTokenId = files.unk && idOf(files.unk);
    this.specialTokenIds = special;
  }

  /** Loads tokenizer.json if the folder has one, else vocab.json + merges.txt, with the config files beside them. */
  static async fromDir(dir: string): Promise<OptTokenizer> {
    const files = await readTokenizerFiles(dir);
    let rust: Tokenizer;
    try {
      rust = Tokenizer.fromString(files.json);
    } catch (err) {
      throw new CheckpointError(files.source, `Hugging Face tokenizers rejects it: ${(err as Error).message}`);
    }
    return new OptTokenizer(rust, files);
  }

  async encode(text: string, options: EncodeOptions = {}): Promise<number[]> {
    const encoding = await this.rust.encode(text, null, { addSpecialTokens: options.addSpecialTokens ?? true });
    return encoding.getIds();
  }

  /** Encodes on the binding's thread pool, in parallel. */
  async encodeBatch(texts: readonly string[], options: EncodeOptions = {}): Promise<number[][]> {
    if (texts.length === 0) return [];
    const encodings = await this.rust.encodeBatch([...texts], { addSpecialTokens: options.addSpecialTokens ?? true });
    return encodings.map((encoding) => encoding.getIds());
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const skip = options.skipSpecialTokens ?? false;
    const parts: Uint8Array[] = [];
    let length = 0;
    for (const id of ids) {
      const bytes = this.bytesOf(id, skip);
      if (bytes) {
        parts.push(bytes);
        length += bytes.length;
      }
    }
    const all = new Uint8Array(length);
    let offset = 0;
    for (const bytes of parts) {
      all.set(bytes, offset);
      offset += bytes.length;
    }
    return this.utf8.decode(all);
  }

  /** For streaming: the pushes and the final flush concatenate to decode(all ids, options). */
  createStreamDecoder(options: DecodeOptions = {}): StreamDecoder {
    const skip = options.skipSpecialTokens ?? false;
    return createStreamDecoder((id) => this.bytesOf(id, skip));
  }

  /** The token as the vocabulary spells it (GPT-2's byte alphabet: " cat" is "Ġcat"), or undefined. */
  idToToken(id: number): string | undefined {
    return this.tokens[id];
  }

  private bytesOf(id: number, skipSpecial: boolean): Uint8Array | undefined {
    const token = this.tokens[id];
    if (token === undefined || (skipSpecial && this.specialTokenIds.has(id))) return undefined;
    return (this.bytesCache[id] ??= tokenBytes(token));
  }
}
