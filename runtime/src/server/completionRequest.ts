// The body of POST /v1/completions, checked field by field into what the engine runs and how the
// answer is shaped. Every value a client can send either maps onto a request that runs, or is a 400
// that names the field and the accepted range: nothing in range may fail later in the sampler.

import type { SamplingOptions } from '../../../protocol/engine.js';
import { SAMPLING_KEYS, SAMPLING_SPEC, type SamplingOptionSpec, validSamplingValue } from '../../../protocol/sampling.js';
import { ApiError, clip, show } from './apiError.js';

/** What parseCompletionRequest makes of a body: the engine options plus how to shape the answer. */
export interface CompletionPlan {
  prompts: string[];
  n: number;
  stream: boolean;
  includeUsage: boolean;
  echo: boolean;
  stops: string[];
  seed: number | undefined;
  options: SamplingOptions;
  /** vLLM's truncate_prompt_tokens. Longer prompts lose tokens from their start in any case (the engine's rule). */
  maxPromptTokens: number | undefined;
}

/** The most choices (prompts × n) one request may ask for, whatever the engine's queue. */
export const MAX_CHOICES = 128;
const OPENAI_DEFAULT_MAX_TOKENS = 16;
/**
 * Temperatures in (0, this) run greedy, as vLLM does below its 1e-5: that is softmax(scores / t)'s
 * limit as t → 0, while the sampler's float32 division would overflow to Infinity for the tiniest
 * ones (1e-300 rounds to a float32 0) and fail to draw a token.
 */
export const GREEDY_BELOW_TEMPERATURE = 1e-5;
/**
 * repetition_penalty's accepted range. Beyond it the sampler's float32 arithmetic breaks (the
 * penalty rounds to 0 or Infinity, or divided scores overflow); inside it every value works, and
 * the ends already act as "always repeat" and "never repeat".
 */
export const REPETITION_PENALTY_RANGE = [1e-6, 1e6] as const;

/**
 * The sampling options this file reads by OpenAI's or vLLM's own rules (ranges, defaults, spellings).
 * Every other option of the spec with an OpenAI field is read by the spec: its range, and when absent
 * the value that leaves it off.
 */
const OWN_RULES = [
  'max_new_tokens',
  'min_new_tokens',
  'do_sample',
  'temperature',
  'top_k',
  'repetition_penalty',
  'seed',
  'stop_strings',
] as const;
const GENERIC = SAMPLING_KEYS.filter((k) => !(OWN_RULES as readonly string[]).includes(k) && SAMPLING_SPEC[k].openai !== null);

const FIELDS = new Set<string>([
  'model',
  'prompt',
  'n',
  'stream',
  'stream_options',
  'echo',
  'logprobs',
  'presence_penalty',
  'frequency_penalty',
  'logit_bias',
  'best_of',
  'suffix',
  'user',
  'truncate_prompt_tokens',
  ...SAMPLING_KEYS.flatMap((k): string[] => {
    const field: string | null = SAMPLING_SPEC[k].openai;
    return field === null ? [] : [field];
  }),
]);

/**
 * Validates an OpenAI completions body, plus vLLM/TGI's top_k, repetition_penalty, typical_p,
 * no_repeat_ngram_size, min_tokens and truncate_prompt_tokens. `maxRows` is the most generations
 * the engine takes at once (its queue limit): a request for more could never run, so it is a 400
 * here rather than a 429 that no retry would cure.
 */
export function parseCompletionRequest(body: unknown, models: ReadonlySet<string>, modelId: string, maxRows = MAX_CHOICES): CompletionPlan {
  const rowLimit = Math.max(1, Math.min(MAX_CHOICES, Math.floor(maxRows)));
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new ApiError(400, 'the request body must be a JSON object', null, 'invalid_type');
  const b = body as Record<string, unknown>;
  for (const key of Object.keys(b)) {
    if (!FIELDS.has(key)) throw new ApiError(400, `Unrecognized request argument supplied: ${clip(key)}`, clip(key), 'unknown_parameter');
  }
  const given = (k: string) => b[k] !== undefined && b[k] !== null;
  const bad = (k: string, expected: string, code = 'invalid_type') =>
    new ApiError(400, `${k} must be ${expected}, got ${show(b[k])}`, k, code);
  const number = (k: string, ok: (v: number) => boolean, expected: string): number | undefined => {
    if (!given(k)) return undefined;
    const v = b[k];
    if (typeof v !== 'number' || !Number.isFinite(v)) throw bad(k, expected);
    if (!ok(v)) throw bad(k, expected, 'invalid_value');
    return v;
  };
  const integer = (k: string, min: number, max: number, expected: string) =>
    number(k, (v) => Number.isInteger(v) && v >= min && v <= max, expected);
  const flag = (k: string): boolean => {
    if (!given(k)) return false;
    if (typeof b[k] !== 'boolean') throw bad(k, 'a boolean');
    return b[k] as boolean;
  };
  const unsupported = (k: string, why: string) =>
    new ApiError(400, `${k} is not supported by this server: ${why}`, k, 'unsupported_parameter');

  if (given('model')) {
    if (typeof b.model !== 'string') throw bad('model', 'a string');
    if (!models.has(b.model))
      throw new ApiError(
        404,
        `The model \`${clip(b.model)}\` does not exist; this server serves \`${modelId}\``,
        'model',
        'model_not_found',
      );
  }

  let prompts: string[];
  if (typeof b.prompt === 'string') prompts = [b.prompt];
  else if (Array.isArray(b.prompt) && b.prompt.length > 0 && b.prompt.every((p) => typeof p === 'string')) prompts = b.prompt as string[];
  else if (Array.isArray(b.prompt) && b.prompt.length > 0 && b.prompt.every((p) => typeof p === 'number' || Array.isArray(p)))
    throw unsupported('prompt', 'token-id prompts are not accepted; send text');
  else
    throw given('prompt')
      ? bad('prompt', 'a string or a non-empty array of strings')
      : new ApiError(400, 'you must provide a prompt', 'prompt', 'missing_required_parameter');
  if (prompts.length > rowLimit) {
    throw new ApiError(
      400,
      `prompt holds ${prompts.length} prompts, but this server runs at most ${rowLimit} generations at once (its queue limit): split the request`,
      'prompt',
      'invalid_value',
    );
  }

  const maxTokens = integer('max_tokens', 1, Number.MAX_SAFE_INTEGER, 'a positive integer') ?? OPENAI_DEFAULT_MAX_TOKENS;
  const temperature = number('temperature', (v) => v >= 0 && v <= 2, 'a number between 0 and 2') ?? 1;
  const n = integer('n', 1, rowLimit, `an integer from 1 to ${rowLimit} (this server runs at most ${rowLimit} generations at once)`) ?? 1;
  if (prompts.length * n > rowLimit) {
    throw new ApiError(
      400,
      `prompts × n must be at most ${rowLimit} (this server runs at most ${rowLimit} generations at once), got ${prompts.length} × ${n}`,
      'n',
      'invalid_value',
    );
  }
  const bestOf = integer('best_of', 1, MAX_CHOICES, 'a positive integer');
  if (bestOf !== undefined && bestOf !== n) throw unsupported('best_of', 'only best_of equal to n (no ranking by log probability)');

  let stops: string[] = [];
  if (typeof b.stop === 'string') stops = [b.stop];
  else if (Array.isArray(b.stop) && b.stop.every((s) => typeof s === 'string')) stops = b.stop as string[];
  else if (given('stop')) throw bad('stop', 'a string or an array of strings');
  if (stops.length > 4) throw new ApiError(400, `stop takes at most 4 sequences, got ${stops.length}`, 'stop', 'invalid_value');
  if (stops.some((s) => s === '')) throw new ApiError(400, 'stop sequences must not be empty', 'stop', 'invalid_value');

  const stream = flag('stream');
  let includeUsage = false;
  if (given('stream_options')) {
    const so = b.stream_options;
    if (!stream) throw new ApiError(400, 'stream_options is only allowed when stream is true', 'stream_options', 'invalid_value');
    if (typeof so !== 'object' || Array.isArray(so) || Object.keys(so as object).some((k) => k !== 'include_usage'))
      throw bad('stream_options', 'an object with only include_usage');
    const iu = (so as { include_usage?: unknown }).include_usage;
    if (iu !== undefined && iu !== null && typeof iu !== 'boolean')
      throw bad('stream_options', 'an object whose include_usage is a boolean');
    includeUsage = iu === true;
  }
  const seed = integer('seed', Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER - MAX_CHOICES, 'an integer');
  const echo = flag('echo');
  if (given('logprobs')) {
    integer('logprobs', 0, 5, 'an integer from 0 to 5');
    throw unsupported('logprobs', 'log probabilities are not returned');
  }
  for (const k of ['presence_penalty', 'frequency_penalty']) {
    if (number(k, (v) => v >= -2 && v <= 2, 'a number between -2 and 2')) throw unsupported(k, 'only 0; use repetition_penalty');
  }
  if (given('logit_bias')) {
    if (typeof b.logit_bias !== 'object' || Array.isArray(b.logit_bias)) throw bad('logit_bias', 'an object');
    if (Object.keys(b.logit_bias as object).length > 0) throw unsupported('logit_bias', 'token biases are not applied');
  }
  if (given('suffix')) {
    if (typeof b.suffix !== 'string') throw bad('suffix', 'a string');
    if (b.suffix !== '') throw unsupported('suffix', 'OPT models only continue text (no insertion)');
  }
  if (given('user') && typeof b.user !== 'string') throw bad('user', 'a string');
  const topK = integer('top_k', -1, Number.MAX_SAFE_INTEGER, 'an integer ≥ -1 (-1 or 0 disables it)');
  const [minPenalty, maxPenalty] = REPETITION_PENALTY_RANGE;
  const repetitionPenalty = number(
    'repetition_penalty',
    (v) => v >= minPenalty && v <= maxPenalty,
    `a number from ${minPenalty} to ${maxPenalty} (1 is off; values further from 1 overflow the model's float32 scores)`,
  );
  const generic: SamplingOptions = {};
  const warpers: SamplingOptions = {};
  for (const key of GENERIC) {
    const spec: SamplingOptionSpec = SAMPLING_SPEC[key];
    const field = spec.openai!;
    if (given(field) && !validSamplingValue(key, b[field]))
      throw bad(field, spec.expected, typeof b[field] === typeof spec.off ? 'invalid_value' : 'invalid_type');
    const value = given(field) ? b[field] : spec.off;
    if (value !== undefined) Object.assign(spec.samplingOnly ? warpers : generic, { [key]: value });
  }
  const minTokens = integer('min_tokens', 0, maxTokens, `an integer from 0 to max_tokens (${maxTokens})`);
  const maxPromptTokens = integer('truncate_prompt_tokens', 1, Number.MAX_SAFE_INTEGER, 'a positive integer');

  // Every option is set explicitly so the answer follows OpenAI's defaults, not the model's
  // generation_config.json (e.g. transformers' implicit top_k = 50 when sampling).
  const options: SamplingOptions = {
    max_new_tokens: maxTokens,
    ...(minTokens ? { min_new_tokens: minTokens } : {}),
    repetition_penalty: repetitionPenalty ?? 1,
    ...generic,
    ...(stops.length > 0 ? { stop_strings: stops } : {}),
    ...(temperature < GREEDY_BELOW_TEMPERATURE
      ? { do_sample: false }
      : { do_sample: true, temperature, top_k: topK !== undefined && topK > 0 ? topK : 0, ...warpers }),
  };
  return { prompts, n, stream, includeUsage, echo, stops, seed, options, maxPromptTokens };
}
