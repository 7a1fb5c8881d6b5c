// Hugging Face `generate` options: their names, the precedence transformers applies (call options >
// the model's generation_config.json > transformers' GenerationConfig defaults, with special token ids
// falling back to config.json), the prompt-dependent length rules, and validation with clear UsageErrors.

import { UsageError } from '../../../protocol/errors.js';
import {
  SAMPLING_KEYS,
  SAMPLING_ONLY_KEYS,
  SAMPLING_SPEC,
  type SamplingKey,
  type SamplingOnlyKey,
  type SamplingOptionSpec,
  type SamplingOptions,
  validSamplingValue,
} from '../../../protocol/sampling.js';

/** The options a caller may pass, spelled as transformers spells them: the sampling spec's, and these. */
export interface GenerationOptions extends Required<SamplingOptions> {
  /** Total length, prompt included. `max_new_tokens` takes precedence when both are set. */
  max_length: number;
  /** Total length, prompt included. `min_new_tokens` takes precedence when both are set. */
  min_length: number;
  num_return_sequences: number;
  eos_token_id: number | number[];
  pad_token_id: number;
  bos_token_id: number;
  /** Text-generation pipeline option: prepend the prompt to the returned text. */
  return_full_text: boolean;
}

/** The config.json fields generation falls back to. */
export interface ModelGenerationConfig {
  bos_token_id: number;
  eos_token_id: number;
  pad_token_id: number;
  max_position_embeddings: number;
}

/**
 * The spec's options resolved below by rules of their own (lengths, temperature's dependence on
 * do_sample, …). Every other option of the spec is resolved generically: the call's value, else
 * generation_config.json's, else transformers' default, checked against the spec's range.
 */
const OWN_RULES = [
  'max_new_tokens',
  'min_new_tokens',
  'do_sample',
  'temperature',
  'top_k',
  'top_p',
  'typical_p',
  'repetition_penalty',
  'no_repeat_ngram_size',
  'seed',
  'stop_strings',
] as const;
type GenericKey = Exclude<SamplingKey, (typeof OWN_RULES)[number]>;
const GENERIC_KEYS = SAMPLING_KEYS.filter((k): k is GenericKey => !(OWN_RULES as readonly string[]).includes(k));

export interface ResolvedGenerationOptions extends Readonly<Pick<SamplingOptions, GenericKey>> {
  readonly max_new_tokens: number | undefined;
  readonly max_length: number;
  /**
   * The caller did not pass max_length and it still has transformers' model-agnostic value 20: transformers
   * then reads it as "20 new tokens" (capped at max_position_embeddings) rather than a total length.
   */
  readonly max_length_is_default: boolean;
  readonly min_new_tokens: number | undefined;
  readonly min_length: number;
  readonly do_sample: boolean;
  readonly temperature: number;
  readonly top_k: number;
  readonly top_p: number;
  readonly typical_p: number;
  readonly repetition_penalty: number;
  readonly no_repeat_ngram_size: number;
  readonly num_return_sequences: number;
  /** Normalised to a list; empty means "no end-of-sequence token". */
  readonly eos_token_id: readonly number[];
  readonly pad_token_id: number;
  readonly bos_token_id: number;
  readonly stop_strings: readonly string[];
  /** undefined: the sampler seeds itself from crypto randomness. */
  readonly seed: number | undefined;
  readonly return_full_text: boolean;
  readonly max_position_embeddings: number;
  /** What transformers would only warn about (ignored sampling flags, conflicting lengths). */
  readonly warnings: readonly string[];
}

/** transformers' GenerationConfig defaults (GenerationConfig.__init__ in 4.x, _get_default_generation_params in 5.x). */
export const HF_GENERATION_DEFAULTS = {
  max_length: 20,
  min_length: 0,
  do_sample: SAMPLING_SPEC.do_sample.hfDefault,
  temperature: SAMPLING_SPEC.temperature.hfDefault,
  top_k: SAMPLING_SPEC.top_k.hfDefault,
  top_p: SAMPLING_SPEC.top_p.hfDefault,
  typical_p: SAMPLING_SPEC.typical_p.hfDefault,
  repetition_penalty: SAMPLING_SPEC.repetition_penalty.hfDefault,
  no_repeat_ngram_size: SAMPLING_SPEC.no_repeat_ngram_size.hfDefault,
  num_return_sequences: 1,
  return_full_text: true, // TextGenerationPipeline's default
} as const;

type Key = keyof GenerationOptions;
type Source = 'options' | 'generation_config.json' | 'config.json' | 'default';

interface Picked {
  value: unknown;
  source: Source;
}

export function resolveGenerationOptions(
  user: Partial<GenerationOptions>,
  generationConfigJson: Record<string, unknown> | undefined,
  modelConfig: ModelGenerationConfig,
): ResolvedGenerationOptions {
  const json = generationConfigJson ?? {};
  // A JSON null means "unset", as in transformers 5 where every GenerationConfig field defaults to None
  // and the global defaults fill what neither the call nor the model set.
  const pick = (key: Key, fallback: unknown, fallbackSource: Source = 'default'): Picked => {
    const u = (user as Record<string, unknown>)[key];
    if (u !== undefined) return { value: u, source: 'options' };
    const j = json[key];
    if (j !== undefined && j !== null) return { value: j, source: 'generation_config.json' };
    return { value: fallback, source: fallbackSource };
  };
  const where = (p: Picked): string => (p.source === 'options' ? '' : ` (from ${p.source})`);
  const bad = (key: Key, p: Picked, expected: string): UsageError =>
    new UsageError(`${key} must be ${expected}, got ${show(p.value)}${where(p)}`);

  const int = (key: Key, p: Picked, min: number, range: string): number => {
    const v = p.value;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw bad(key, p, range);
    return v;
  };
  const num = (key: Key, p: Picked): number => {
    if (typeof p.value !== 'number' || !Number.isFinite(p.value)) throw bad(key, p, 'a finite number');
    return p.value;
  };
  const bool = (key: Key, p: Picked): boolean => {
    if (typeof p.value !== 'boolean') throw bad(key, p, 'true or false');
    return p.value;
  };
  const optionalInt = (key: Key, min: number, range: string): number | undefined => {
    const p = pick(key, undefined);
    return p.value === undefined ? undefined : int(key, p, min, range);
  };
  const tokenId = (key: 'pad_token_id' | 'bos_token_id', fallback: number): number =>
    int(key, pick(key, fallback, 'config.json'), 0, 'a non-negative integer token id');

  const warnings: string[] = [];

  // Lengths. transformers raises for max_new_tokens <= 0 (GenerationConfig.validate); the min-length
  // processors raise for negative values.
  const max_new_tokens = optionalInt('max_new_tokens', 1, 'a positive integer (at least 1)');
  const maxLengthPick = pick('max_length', HF_GENERATION_DEFAULTS.max_length);
  const max_length = int('max_length', maxLengthPick, 1, 'a positive integer (total tokens, prompt included)');
  const max_length_is_default = user.max_length === undefined && max_length === HF_GENERATION_DEFAULTS.max_length;
  const min_new_tokens = optionalInt('min_new_tokens', 0, 'a non-negative integer');
  const minLengthPick = pick('min_length', HF_GENERATION_DEFAULTS.min_length);
  const min_length = int('min_length', minLengthPick, 0, 'a non-negative integer (total tokens, prompt included)');
  if (max_new_tokens !== undefined && maxLengthPick.source !== 'default') {
    warnings.push(`both max_new_tokens (${max_new_tokens}) and max_length (${max_length}) are set; max_new_tokens takes precedence`);
  }
  if (min_new_tokens !== undefined && minLengthPick.source !== 'default') {
    warnings.push(`both min_new_tokens (${min_new_tokens}) and min_length (${min_length}) are set; min_new_tokens takes precedence`);
  }

  const do_sample = bool('do_sample', pick('do_sample', HF_GENERATION_DEFAULTS.do_sample));

  // TemperatureLogitsWarper raises for temperature <= 0, but it is only built when sampling; with greedy
  // decoding transformers merely warns that the flag is ignored.
  const temperaturePick = pick('temperature', HF_GENERATION_DEFAULTS.temperature);
  const temperature = num('temperature', temperaturePick);
  if (do_sample && !(temperature > 0)) {
    throw new UsageError(
      `temperature must be a strictly positive number when sampling (do_sample=true), got ${show(temperature)}${where(temperaturePick)}; ` +
        'for greedy decoding set do_sample=false',
    );
  }
  const top_k = int('top_k', pick('top_k', HF_GENERATION_DEFAULTS.top_k), 0, 'a non-negative integer (0 disables top-k)');
  const topPPick = pick('top_p', HF_GENERATION_DEFAULTS.top_p);
  const top_p = num('top_p', topPPick);
  if (!(top_p > 0 && top_p <= 1)) throw bad('top_p', topPPick, 'in (0, 1] (1 disables top-p)');
  const generic: Record<string, unknown> = {};
  for (const key of GENERIC_KEYS) {
    const spec: SamplingOptionSpec = SAMPLING_SPEC[key];
    const p = pick(key, spec.hfDefault);
    if (p.value !== undefined && !validSamplingValue(key, p.value)) throw bad(key, p, spec.expected);
    generic[key] = p.value;
  }
  const typicalPick = pick('typical_p', HF_GENERATION_DEFAULTS.typical_p);
  const typical_p = num('typical_p', typicalPick);
  if (!(typical_p > 0 && typical_p <= 1)) throw bad('typical_p', typicalPick, 'in (0, 1] (1 disables typical-p)');
  const penaltyPick = pick('repetition_penalty', HF_GENERATION_DEFAULTS.repetition_penalty);
  const repetition_penalty = num('repetition_penalty', penaltyPick);
  if (!(repetition_penalty > 0)) {
    throw bad('repetition_penalty', penaltyPick, 'a strictly positive number (1 disables it, > 1 penalises repeats, < 1 favours them)');
  }
  const no_repeat_ngram_size = int(
    'no_repeat_ngram_size',
    pick('no_repeat_ngram_size', HF_GENERATION_DEFAULTS.no_repeat_ngram_size),
    0,
    'a non-negative integer (0 disables it)',
  );
  const returnPick = pick('num_return_sequences', HF_GENERATION_DEFAULTS.num_return_sequences);
  const num_return_sequences = int('num_return_sequences', returnPick, 1, 'a positive integer');
  if (num_return_sequences > 1 && !do_sample) {
    // GenerationConfig.validate: greedy search without beams would return the same sequence n times.
    throw new UsageError(
      `num_return_sequences=${num_return_sequences}${where(returnPick)} needs sampling: greedy decoding returns a single sequence; ` +
        'set do_sample=true or num_return_sequences=1',
    );
  }

  if (!do_sample) {
    // GenerationConfig.validate's "only used in sample-based generation modes" warnings.
    const values = { ...generic, temperature, top_k, top_p, typical_p } as Record<SamplingOnlyKey, unknown>;
    for (const name of SAMPLING_ONLY_KEYS) {
      const value = values[name];
      if (value !== undefined && value !== SAMPLING_SPEC[name].hfDefault)
        warnings.push(`do_sample is false, so ${name}=${value} has no effect; set do_sample=true or unset ${name}`);
    }
  }

  const eosPick = pick('eos_token_id', modelConfig.eos_token_id, 'config.json');
  const eosRaw = eosPick.value;
  const eos_token_id = Array.isArray(eosRaw) ? eosRaw : [eosRaw];
  for (const id of eos_token_id) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw bad('eos_token_id', eosPick, 'a non-negative integer token id or a list of them');
    }
  }
  const pad_token_id = tokenId('pad_token_id', modelConfig.pad_token_id);
  const bos_token_id = tokenId('bos_token_id', modelConfig.bos_token_id);

  // transformers accepts a single string as well as a list.
  const stopPick = pick('stop_strings', []);
  const stopRaw = typeof stopPick.value === 'string' ? [stopPick.value] : stopPick.value;
  if (!Array.isArray(stopRaw) || !stopRaw.every((s) => typeof s === 'string' && s.length > 0)) {
    throw bad('stop_strings', stopPick, 'a list of non-empty strings');
  }

  const seedPick = pick('seed', undefined);
  if (seedPick.value !== undefined && !Number.isSafeInteger(seedPick.value)) {
    throw bad('seed', seedPick, `an integer between ${-Number.MAX_SAFE_INTEGER} and ${Number.MAX_SAFE_INTEGER}`);
  }
  const return_full_text = bool('return_full_text', pick('return_full_text', HF_GENERATION_DEFAULTS.return_full_text));

  const maxPositions = modelConfig.max_position_embeddings;
  if (!Number.isInteger(maxPositions) || maxPositions < 1) {
    throw new UsageError(`max_position_embeddings must be a positive integer, got ${show(maxPositions)} (from config.json)`);
  }

  return {
    ...(generic as Pick<SamplingOptions, GenericKey>),
    max_new_tokens,
    max_length,
    max_length_is_default,
    min_new_tokens,
    min_length,
    do_sample,
    temperature,
    top_k,
    top_p,
    typical_p,
    repetition_penalty,
    no_repeat_ngram_size,
    num_return_sequences,
    eos_token_id: eos_token_id as number[],
    pad_token_id,
    bos_token_id,
    stop_strings: stopRaw as string[],
    seed: seedPick.value as number | undefined,
    return_full_text,
    max_position_embeddings: maxPositions,
    warnings,
  };
}

export interface GenerationLengths {
  /** Total length (prompt included) at which generation stops: MaxLengthCriteria's max_length. */
  readonly maxLength: number;
  /** maxLength - promptLength. */
  readonly maxNewTokens: number;
  /** Total length below which EOS is suppressed (MinLengthLogitsProcessor's min_length); 0 = none. */
  readonly minLength: number;
  readonly warnings: readonly string[];
}

/**
 * The lengths for one prompt, as transformers' `_prepare_generated_length` and `_validate_generated_length`
 * compute them: max_new_tokens (if set) wins; otherwise a default max_length of 20 means 20 new tokens,
 * capped at max_position_embeddings; any other max_length is a total. Throws, as transformers does, when
 * the prompt alone already reaches max_length.
 */
export function resolveLengths(o: ResolvedGenerationOptions, promptLength: number): GenerationLengths {
  if (!Number.isInteger(promptLength) || promptLength < 0)
    throw new UsageError(`prompt length must be a non-negative integer, got ${promptLength}`);
  const warnings: string[] = [];
  let maxLength: number;
  if (o.max_new_tokens !== undefined) maxLength = promptLength + o.max_new_tokens;
  else if (o.max_length_is_default) maxLength = Math.min(promptLength + o.max_length, o.max_position_embeddings);
  else maxLength = o.max_length;
  if (promptLength >= maxLength) {
    throw new UsageError(
      `the prompt has ${promptLength} tokens but max_length is ${maxLength}, so nothing can be generated; ` +
        'increase max_length or, better, set max_new_tokens',
    );
  }
  if (maxLength > o.max_position_embeddings) {
    warnings.push(`max_length ${maxLength} exceeds the model's ${o.max_position_embeddings} positions; generation will fail past them`);
  }
  const minLength = o.min_new_tokens !== undefined ? promptLength + o.min_new_tokens : o.min_length;
  if (minLength > maxLength) {
    warnings.push(`min length ${minLength} exceeds max_length ${maxLength}: generation stops at max_length`);
  }
  return { maxLength, maxNewTokens: maxLength - promptLength, minLength, warnings };
}

function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : Array.isArray(v) ? JSON.stringify(v) : String(v);
}
