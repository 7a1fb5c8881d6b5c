// Reads a model folder's Hugging Face tokenizer files and turns them into one tokenizer.json for
// the Rust `tokenizers` binding: the folder's own tokenizer.json, or the pipeline transformers'
// GPT2Converter builds from vocab.json + merges.txt when AutoTokenizer loads an OPT checkpoint.
import { basename, join } from 'node:path';
import { CONFIG_FILE_CAP, TOKENIZER_FILE_CAP, parseJsonText, readModelText } from '../checkpoint/modelFiles.js';
import { CheckpointError, brief, quote } from '../errors.js';

/** An added token as tokenizer.json stores it. */
export interface AddedTokenJson {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

/** A token and the id the files give it. */
export interface NamedToken {
  content: string;
  id: number;
}

/** Everything the tokenizer needs from the folder, validated. */
export interface TokenizerFiles {
  /** tokenizer.json text for `Tokenizer.fromString`. */
  json: string;
  /** The file to blame if the binding still rejects `json`. */
  source: string;
  /** Token string by id, from the BPE vocabulary alone (sparse if ids have gaps). */
  vocabTokens: string[];
  /**
   * The added tokens with the ids the files give them. The binding numbers tokens that are not in
   * the vocabulary itself (after it, in list order, ignoring tokenizer.json's ids, as transformers
   * gets them), so ask it for the final ids.
   */
  addedTokens: AddedTokenJson[];
  bos: NamedToken;
  eos: NamedToken;
  pad: NamedToken;
  unk: NamedToken | undefined;
}

type Json = Record<string, unknown>;
type TokenOptions = Omit<AddedTokenJson, 'id' | 'content' | 'special'>;

const MISSING_FILES_HINT = 'the model folder needs vocab.json + merges.txt, or tokenizer.json';
// Used only where both config files are silent: this runtime loads OPT checkpoints, and OPT's
// published files name these, where GPT2Tokenizer's own defaults (<|endoftext|>) would not exist.
const OPT_SPECIALS = { bos_token: '</s>', eos_token: '</s>', unk_token: '</s>', pad_token: '<pad>' } as const;
// transformers' SPECIAL_TOKENS_ATTRIBUTES, in its order, which decides the ids of tokens it must add.
const SPECIAL_KEYS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'] as const;

export async function readTokenizerFiles(dir: string): Promise<TokenizerFiles> {
  const configFile = join(dir, 'tokenizer_config.json');
  const config = await readOptionalJson(dir, 'tokenizer_config.json');
  const specialsMap = await readOptionalJson(dir, 'special_tokens_map.json');
  const addedFile = join(dir, 'added_tokens.json');
  const addedJson = await readOptionalJson(dir, 'added_tokens.json');
  const model = await readModel(dir);

  const added = new AddedTokens(model.vocab, model.tokens.length, (model.pipeline.added_tokens ?? []) as AddedTokenJson[]);
  for (const [id, value] of Object.entries(objectField(config, 'added_tokens_decoder', configFile))) {
    const token = tokenSpec(value, configFile, `added_tokens_decoder[${quote(id)}]`);
    if (!/^\d+$/.test(id) || !isId(Number(id)) || !token)
      throw new CheckpointError(configFile, `added_tokens_decoder has a bad entry for id ${quote(id)}`);
    added.add(token, value.special === true, Number(id));
  }
  for (const [content, id] of Object.entries(addedJson ?? {})) {
    if (!isId(id))
      throw new CheckpointError(
        addedFile,
        `added_tokens.json gives ${quote(content)} the id ${brief(id)}, not an integer id from 0 to ${MAX_TOKEN_ID}`,
      );
    added.add({ content }, false, id as number);
  }
  // special_tokens_map.json wins over tokenizer_config.json, as in transformers' from_pretrained.
  const named = addSpecialTokens(added, { ...config, ...specialsMap }, configFile);
  const required = (key: 'bos_token' | 'eos_token' | 'pad_token') => {
    const token = named[key];
    if (!token) throw new CheckpointError(configFile, `${key} is null`, 'OPT needs a BOS, an EOS and a PAD token');
    return token;
  };
  const bos = required('bos_token');

  const { pipeline } = model;
  pipeline.added_tokens = added.list;
  if (model.text === undefined) {
    // GPT2Tokenizer's add_bos_token defaults to false; a folder without tokenizer_config.json is taken to be OPT's (true).
    const addBos = config === undefined || config.add_bos_token === true;
    pipeline.post_processor = addBos
      ? bosTemplate(bos.content, bos.id)
      : { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true };
  }
  // GPT2TokenizerFast forces its add_prefix_space argument (default false) onto tokenizer.json's ByteLevel pre-tokenizer.
  const preTokenizer = pipeline.pre_tokenizer as Json | null | undefined;
  const addPrefixSpace = config?.add_prefix_space === true;
  const prefixChanged = preTokenizer?.type === 'ByteLevel' && preTokenizer.add_prefix_space !== addPrefixSpace;
  if (prefixChanged) pipeline.pre_tokenizer = { ...preTokenizer, add_prefix_space: addPrefixSpace };

  return {
    // Re-serializing a 3 MB tokenizer.json costs ~20 ms: only done when the config files changed it.
    json: model.text === undefined || added.changed || prefixChanged ? serialize(pipeline, model.vocabText) : model.text,
    source: model.source,
    vocabTokens: model.tokens,
    addedTokens: added.list,
    bos,
    eos: required('eos_token'),
    pad: required('pad_token'),
    unk: named.unk_token,
  };
}

type SpecialKey = (typeof SPECIAL_KEYS)[number];

/** Registers the config's named and additional special tokens; returns the named ones. */
function addSpecialTokens(added: AddedTokens, specials: Json, configFile: string): Partial<Record<SpecialKey, NamedToken>> {
  const named: Partial<Record<SpecialKey, NamedToken>> = {};
  for (const key of SPECIAL_KEYS) {
    const token = tokenSpec(key in specials ? specials[key] : OPT_SPECIALS[key as keyof typeof OPT_SPECIALS], configFile, key);
    if (token) named[key] = { content: token.content, id: added.add(token, true) };
  }
  const extra = specials.additional_special_tokens ?? [];
  if (!Array.isArray(extra)) throw new CheckpointError(configFile, 'additional_special_tokens must be a list');
  extra.forEach((value, i) => {
    const token = tokenSpec(value, configFile, `additional_special_tokens[${i}]`);
    if (token) added.add(token, true);
  });
  return named;
}

interface Model {
  /** tokenizer.json's contents, or GPT2Converter's pipeline; added tokens and post-processor still to settle. */
  pipeline: Json;
  /** tokenizer.json's text, when the folder has one. */
  text?: string;
  /** vocab.json's text, when the pipeline was built from it. */
  vocabText?: string;
  source: string;
  vocab: Record<string, number>;
  /** Token by id, from the vocabulary alone. */
  tokens: string[];
}

async function readModel(dir: string): Promise<Model> {
  const tokenizerJsonFile = join(dir, 'tokenizer.json');
  const text = await readOptional(dir, 'tokenizer.json');
  if (text !== undefined) {
    const pipeline = parseJsonObject(text, tokenizerJsonFile);
    const vocab = checkTokenizerJson(pipeline, tokenizerJsonFile);
    return { pipeline, text, source: tokenizerJsonFile, vocab, tokens: indexVocab(vocab, tokenizerJsonFile) };
  }
  const vocabFile = join(dir, 'vocab.json');
  const vocabText = await readOptional(dir, 'vocab.json');
  if (vocabText === undefined) throw new CheckpointError(vocabFile, 'vocab.json is missing', MISSING_FILES_HINT);
  const vocab = parseJsonObject(vocabText, vocabFile) as Record<string, number>;
  const tokens = indexVocab(vocab, vocabFile);
  const mergesFile = join(dir, 'merges.txt');
  const mergesText = await readOptional(dir, 'merges.txt');
  if (mergesText === undefined) throw new CheckpointError(mergesFile, 'merges.txt is missing', MISSING_FILES_HINT);
  const merges = parseMerges(mergesText, vocab, mergesFile);
  return { pipeline: gpt2Pipeline(vocab, merges), vocabText, source: mergesFile, vocab, tokens };
}

/** JSON.stringify(pipeline), but with vocab.json's own (validated) text spliced in, which saves ~15 ms of 50k entries. */
function serialize(pipeline: Json, vocabText: string | undefined): string {
  if (vocabText === undefined) return JSON.stringify(pipeline);
  const text = JSON.stringify({ ...pipeline, model: { ...(pipeline.model as Json), vocab: 0 } });
  // No string value can hold an unescaped '"vocab":0', so the first match is model.vocab.
  return text.replace('"vocab":0', () => `"vocab":${vocabText}`);
}

/** The added vocabulary as transformers builds it: known tokens keep their id, new ones go at the end. */
class AddedTokens {
  readonly list: AddedTokenJson[];
  changed = false;
  private nextId: number;
  /** The first added token of each content, as list.find would return it, without a scan per token. */
  private readonly byContent = new Map<string, AddedTokenJson>();

  constructor(
    private readonly vocab: Record<string, number>,
    vocabEnd: number,
    base: AddedTokenJson[],
  ) {
    this.list = base;
    // A loop, not Math.max(...ids): a spread of 200k added tokens overflows the stack.
    this.nextId = vocabEnd;
    for (const t of base) {
      this.nextId = Math.max(this.nextId, t.id + 1);
      if (!this.byContent.has(t.content)) this.byContent.set(t.content, t);
    }
  }

  /** Registers a token unless it is already an added token (transformers then leaves it as it is); returns its id. */
  add(token: TokenSpec, special: boolean, id?: number): number {
    const existing = this.byContent.get(token.content);
    if (existing) return existing.id;
    const tokenId = id ?? (Object.hasOwn(this.vocab, token.content) ? this.vocab[token.content]! : this.nextId);
    this.nextId = Math.max(this.nextId, tokenId + 1);
    // transformers' AddedToken defaults: specials are not normalized, other added tokens are.
    const flags = token.options ?? { single_word: false, lstrip: false, rstrip: false, normalized: !special };
    const added = { id: tokenId, content: token.content, ...flags, special };
    this.list.push(added);
    this.byContent.set(added.content, added);
    this.changed = true;
    return tokenId;
  }
}

interface TokenSpec {
  content: string;
  options?: TokenOptions;
}

/** A special token as the config files write it: a string, an AddedToken dict, or null. */
function tokenSpec(value: unknown, file: string, key: string): TokenSpec | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'string') return { content: value };
  if (typeof value === 'object' && typeof (value as Json).content === 'string') {
    const v = value as Json;
    return {
      content: v.content as string,
      options: {
        single_word: v.single_word === true,
        lstrip: v.lstrip === true,
        rstrip: v.rstrip === true,
        normalized: v.normalized !== false,
      },
    };
  }
  throw new CheckpointError(file, `${key} must be a string or an object with a "content" string, got ${brief(value)}`);
}

/** GPT2Converter's pipeline, less the post-processor (it depends on the BOS token) and the config's add_prefix_space. */
function gpt2Pipeline(vocab: Record<string, number>, merges: string[]): Json {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

/** GPT2Converter with add_bos_token: `bos $A` (and `bos $A $B` for pairs: one BOS, unlike the slow tokenizer). */
function bosTemplate(bos: string, bosId: number): Json {
  const bosPiece = { SpecialToken: { id: bos, type_id: 0 } };
  return {
    type: 'TemplateProcessing',
    single: [bosPiece, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [bosPiece, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { [bos]: { id: bos, ids: [bosId], tokens: [bos] } },
  };
}

/** Returns the merges as "a b" lines, tokenizer.json's older (and faster to load) form. */
function parseMerges(text: string, vocab: Record<string, number>, file: string): string[] {
  const lines = text.split('\n');
  const merges: string[] = [];
  const bad = (i: number, problem: string) =>
    new CheckpointError(file, `merges.txt line ${i + 1} ${problem}`, 'the file may be truncated or not a GPT-2 style merges.txt');
  for (let i = 0; i < lines.length; i++) {
    // Like transformers: the "#version: 0.2" header is dropped, and tokens are split on any whitespace (so CRLF files load).
    const line = lines[i]!.trim();
    if (line === '' || (i === 0 && line.startsWith('#version'))) continue;
    let pair = line.split(' ');
    if (pair.length !== 2) pair = line.split(/\s+/);
    if (pair.length !== 2) throw bad(i, `must hold two tokens separated by a space, got ${quote(lines[i]!)}`);
    const missing = missingMergeToken(vocab, pair[0]!, pair[1]!);
    if (missing !== undefined) throw bad(i, `uses ${quote(missing)}, which vocab.json lacks`);
    merges.push(`${pair[0]} ${pair[1]}`);
  }
  if (merges.length === 0) throw new CheckpointError(file, 'merges.txt holds no merges');
  return merges;
}

/** Validates the vocabulary and inverts it (id → token) in one pass. */
function indexVocab(vocab: Record<string, unknown>, file: string): string[] {
  const tokens: string[] = [];
  for (const token in vocab) {
    const id = vocab[token];
    if (!isId(id))
      throw new CheckpointError(
        file,
        `${basename(file)} maps ${quote(token)} to ${brief(id)}, not to an integer id from 0 to ${MAX_TOKEN_ID}`,
      );
    tokens[id] = token;
  }
  if (tokens.length === 0) throw new CheckpointError(file, `${basename(file)} has an empty vocabulary`);
  return tokens;
}

/** Ids index arrays (id → token) here and in the binding: a vocabulary of 2^24 is far beyond any real one. */
const MAX_TOKEN_ID = (1 << 24) - 1;

function isId(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0 && (value as number) <= MAX_TOKEN_ID;
}

/** Checks that tokenizer.json holds what decode() assumes: byte-level BPE. */
function checkTokenizerJson(pipeline: Json, file: string): Record<string, number> {
  const model = pipeline.model as Json | undefined;
  if (typeof model !== 'object' || model === null || (model.type ?? 'BPE') !== 'BPE') {
    throw new CheckpointError(
      file,
      `tokenizer.json holds a ${String((model as Json | undefined)?.type)} model, not BPE`,
      'OPT uses GPT-2 byte-level BPE',
    );
  }
  const decoder = pipeline.decoder as Json | null | undefined;
  if (decoder?.type !== 'ByteLevel') {
    throw new CheckpointError(
      file,
      `tokenizer.json's decoder is ${brief(decoder?.type ?? null)}, not ByteLevel`,
      'OPT uses GPT-2 byte-level BPE',
    );
  }
  if (typeof model.vocab !== 'object' || model.vocab === null || Array.isArray(model.vocab)) {
    throw new CheckpointError(file, 'tokenizer.json has no model.vocab object');
  }
  if ((model.continuing_subword_prefix ?? '') !== '' || (model.end_of_word_suffix ?? '') !== '') {
    throw new CheckpointError(file, "tokenizer.json's BPE has a subword prefix or suffix", 'OPT uses GPT-2 byte-level BPE');
  }
  const vocab = model.vocab as Record<string, number>;
  if (!Array.isArray(model.merges)) throw new CheckpointError(file, 'tokenizer.json has no model.merges list');
  const merges: unknown[] = model.merges;
  const bad = (i: number, problem: string) => new CheckpointError(file, `tokenizer.json model.merges[${i}] ${problem}`);
  for (let i = 0; i < merges.length; i++) {
    // The binding splits the older "a b" form on one space.
    const merge = merges[i];
    const pair = typeof merge === 'string' ? merge.split(' ') : merge;
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string' || !pair[0] || !pair[1]) {
      throw bad(i, `must be two tokens, got ${brief(merge)}`);
    }
    const missing = missingMergeToken(vocab, pair[0], pair[1]);
    if (missing !== undefined) throw bad(i, `uses ${quote(missing)}, which the vocabulary lacks`);
  }
  checkTemplates(pipeline.post_processor, file);
  const added = pipeline.added_tokens ?? [];
  if (!Array.isArray(added)) throw new CheckpointError(file, 'tokenizer.json added_tokens must be a list');
  added.forEach((token: Json, i) => {
    if (!isId(token?.id) || typeof token.content !== 'string' || token.content === '') {
      throw new CheckpointError(file, `tokenizer.json added_tokens[${i}] needs an integer id >= 0 and a non-empty content`);
    }
  });
  return vocab;
}

/** Checked here because Hugging Face tokenizers aborts the process (a Rust panic) on encode when a template names an undefined token. */
function checkTemplates(processor: unknown, file: string): void {
  if (typeof processor !== 'object' || processor === null) return;
  const p = processor as Json;
  if (p.type === 'Sequence' && Array.isArray(p.processors)) p.processors.forEach((inner) => checkTemplates(inner, file));
  if (p.type !== 'TemplateProcessing') return;
  const defined = (p.special_tokens ?? {}) as Json;
  for (const piece of [p.single, p.pair].flatMap((template) => (Array.isArray(template) ? template : []))) {
    const name = (piece as { SpecialToken?: { id?: unknown } } | null)?.SpecialToken?.id;
    if (name !== undefined && (typeof name !== 'string' || !Object.hasOwn(defined, name))) {
      throw new CheckpointError(
        file,
        `tokenizer.json's post-processor template uses ${brief(name)}, which its special_tokens do not define`,
      );
    }
  }
}

/** Checked here because Hugging Face tokenizers aborts the whole process (a Rust panic) on a merge outside the vocabulary. */
function missingMergeToken(vocab: Record<string, number>, a: string, b: string): string | undefined {
  if (!Object.hasOwn(vocab, a)) return a;
  if (!Object.hasOwn(vocab, b)) return b;
  return Object.hasOwn(vocab, a + b) ? undefined : a + b;
}

function objectField(obj: Json | undefined, key: string, file: string): Record<string, Json> {
  const value = obj?.[key];
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new CheckpointError(file, `${key} must be an object`);
  return value as Record<string, Json>;
}

/** The tokenizer's own files may be tens of MB; the config files beside them are small. */
const CAPS: Readonly<Record<string, number>> = {
  'vocab.json': TOKENIZER_FILE_CAP,
  'merges.txt': TOKENIZER_FILE_CAP,
  'tokenizer.json': TOKENIZER_FILE_CAP,
};

async function readOptional(dir: string, name: string): Promise<string | undefined> {
  return (await readModelText(dir, name, CAPS[name] ?? CONFIG_FILE_CAP))?.text;
}

async function readOptionalJson(dir: string, name: string): Promise<Json | undefined> {
  const text = await readOptional(dir, name);
  return text === undefined ? undefined : parseJsonObject(text, join(dir, name));
}

function parseJsonObject(text: string, file: string): Json {
  const value = parseJsonText(text, file);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CheckpointError(file, `${basename(file)} must hold a JSON object, not ${brief(value)}`);
  }
  return value as Json;
}
