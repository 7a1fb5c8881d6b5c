// The one sampling spec. Each option the servers, the CLI and the editor expose is one entry here,
// spelled as Hugging Face's `generate` spells it: its type and accepted range, transformers'
// default, whether it only applies when sampling, and its name on every surface (the OpenAI body
// field, the CLI flag, the VS Code setting). SamplingOptions, the RPC check, `opt serve`'s body
// parsing, the remote client's body, the CLI's flags and usage, and the settings the editor reads
// are derived from it: a new option is an entry here, its processor, its setting and a test.
// Every entry must name every surface (null where it has none), so a missed one fails to compile.

/** An option's value type and accepted values. */
type Kind =
  | { type: 'int'; min: number; max: number }
  | { type: 'number'; min: number; max: number; minExclusive?: boolean }
  | { type: 'boolean' }
  | { type: 'strings'; maxItems: number }
  | { type: 'enum'; values: readonly string[] };

export interface SamplingOptionSpec {
  kind: Kind;
  /** The accepted values in words, for error messages ("a number in (0, 1]"). */
  expected: string;
  /** transformers' GenerationConfig default; undefined where it is unset (None). */
  hfDefault: number | boolean | undefined;
  /** The value that turns it off, which servers send when a request leaves it out; undefined where none does. */
  off: number | boolean | undefined;
  /** A sampling warper's parameter: greedy decoding ignores it, and transformers warns when it is set without do_sample. */
  samplingOnly: boolean;
  /** The field of an OpenAI-compatible /v1/completions body (OpenAI's, or vLLM's extension), or null. */
  openai: string | null;
  /** The `opt generate` / `opt serve` flag, or null. */
  cli: string | null;
  /** The VS Code setting (under optComplete.) that sets it for "Generate Text", or null. */
  setting: string | null;
  /** One line for the CLI's usage and the setting's description. */
  doc: string;
}

/** Far beyond any model's positions (OPT has 2048), yet finite. */
export const MAX_TOKENS = 2 ** 20;

export const SAMPLING_SPEC = {
  max_new_tokens: {
    kind: { type: 'int', min: 1, max: MAX_TOKENS },
    expected: `an integer >= 1 and <= ${MAX_TOKENS}`,
    hfDefault: undefined,
    off: undefined,
    samplingOnly: false,
    openai: 'max_tokens',
    cli: 'max-new-tokens',
    setting: 'generation.maxNewTokens',
    doc: 'tokens to generate at most',
  },
  min_new_tokens: {
    kind: { type: 'int', min: 0, max: MAX_TOKENS },
    expected: `an integer >= 0 and <= ${MAX_TOKENS}`,
    hfDefault: undefined,
    off: 0,
    samplingOnly: false,
    openai: 'min_tokens', // vLLM's name
    cli: 'min-new-tokens',
    setting: null,
    doc: 'end-of-text is suppressed until this many tokens are generated',
  },
  do_sample: {
    kind: { type: 'boolean' },
    expected: 'true or false',
    hfDefault: false,
    off: false,
    samplingOnly: false,
    openai: null, // OpenAI samples unless temperature is 0
    cli: 'do-sample',
    setting: null, // the editor samples unless generation.temperature is 0
    doc: 'sample (default: greedy decoding)',
  },
  temperature: {
    kind: { type: 'number', min: 0, max: Number.MAX_VALUE },
    expected: 'a finite number >= 0',
    hfDefault: 1.0,
    off: 1,
    samplingOnly: true,
    openai: 'temperature',
    cli: 'temperature',
    setting: 'generation.temperature',
    doc: 'divides the scores before sampling (the editor: 0 means greedy)',
  },
  top_k: {
    kind: { type: 'int', min: 0, max: 2 ** 31 - 1 },
    expected: `an integer >= 0 and <= ${2 ** 31 - 1} (0 disables top-k)`,
    hfDefault: 50,
    off: 0,
    samplingOnly: true,
    openai: 'top_k', // vLLM's extension; it spells "off" -1
    cli: 'top-k',
    setting: 'generation.topK',
    doc: 'keep the k most likely tokens (0: off)',
  },
  top_p: {
    kind: { type: 'number', min: 0, max: 1, minExclusive: true },
    expected: 'a number in (0, 1] (1 disables top-p)',
    hfDefault: 1.0,
    off: 1,
    samplingOnly: true,
    openai: 'top_p',
    cli: 'top-p',
    setting: 'generation.topP',
    doc: 'keep the most likely tokens whose probabilities add up to p (1: off)',
  },
  min_p: {
    kind: { type: 'number', min: 0, max: 1 },
    expected: 'a number in [0, 1] (0 disables min-p)',
    hfDefault: undefined,
    off: 0,
    samplingOnly: true,
    openai: 'min_p', // vLLM's extension
    cli: 'min-p',
    setting: 'generation.minP',
    doc: 'drop tokens less likely than min_p times the most likely one (0: off)',
  },
  typical_p: {
    kind: { type: 'number', min: 0, max: 1, minExclusive: true },
    expected: 'a number in (0, 1] (1 disables typical-p)',
    hfDefault: 1.0,
    off: 1,
    samplingOnly: true,
    openai: 'typical_p', // TGI's extension
    cli: 'typical-p',
    setting: null,
    doc: 'locally typical sampling mass (1: off)',
  },
  repetition_penalty: {
    kind: { type: 'number', min: 0, max: Number.MAX_VALUE, minExclusive: true },
    expected: 'a strictly positive number (1 disables it, > 1 penalises repeats, < 1 favours them)',
    hfDefault: 1.0,
    off: 1,
    samplingOnly: false,
    openai: 'repetition_penalty', // vLLM's extension
    cli: 'repetition-penalty',
    setting: 'generation.repetitionPenalty',
    doc: 'divides the scores of tokens already present (1: off)',
  },
  no_repeat_ngram_size: {
    kind: { type: 'int', min: 0, max: Number.MAX_SAFE_INTEGER }, // beyond the sequence's length it bans nothing
    expected: 'a non-negative integer (0 disables it)',
    hfDefault: 0,
    off: 0,
    samplingOnly: false,
    openai: 'no_repeat_ngram_size',
    cli: 'no-repeat-ngram-size',
    setting: null,
    doc: 'never repeat an n-gram of this size (0: off)',
  },
  seed: {
    kind: { type: 'int', min: -Number.MAX_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER },
    expected: 'a safe integer',
    hfDefault: undefined,
    off: undefined,
    samplingOnly: false, // seeds the sampler; transformers has no such option, so never warns about it
    openai: 'seed',
    cli: 'seed',
    setting: 'generation.seed',
    doc: 'seeds the sampler (same seed, same text)',
  },
  prompt_lookup_num_tokens: {
    kind: { type: 'int', min: 1, max: 64 },
    expected: 'an integer >= 1 and <= 64',
    hfDefault: undefined,
    off: undefined,
    samplingOnly: false,
    openai: null, // opt serve takes it as a server flag, as vLLM configures n-gram speculation
    cli: 'prompt-lookup-num-tokens',
    setting: null, // the editor's own switches: inline.promptLookup, rewrite.promptLookup
    doc: 'prompt lookup: propose this many tokens copied from earlier in the text, verified in one pass (same text, fewer passes)',
  },
  max_matching_ngram_size: {
    kind: { type: 'int', min: 1, max: 64 },
    expected: 'an integer >= 1 and <= 64',
    hfDefault: undefined, // transformers then uses 2
    off: undefined,
    samplingOnly: false,
    openai: null,
    cli: 'max-matching-ngram-size',
    setting: null,
    doc: 'prompt lookup: the longest n-gram matched (default 2)',
  },
  num_assistant_tokens: {
    kind: { type: 'int', min: 1, max: 64 },
    expected: 'an integer >= 1 and <= 64',
    hfDefault: 20,
    off: undefined,
    samplingOnly: false,
    openai: null,
    cli: 'num-assistant-tokens',
    setting: null,
    doc: 'assisted generation: tokens the assistant model drafts per round (default 20)',
  },
  num_assistant_tokens_schedule: {
    kind: { type: 'enum', values: ['constant', 'heuristic'] },
    expected: '"constant" or "heuristic"',
    hfDefault: undefined, // transformers: "constant"
    off: undefined,
    samplingOnly: false,
    openai: null,
    cli: 'num-assistant-tokens-schedule',
    setting: null,
    doc: 'assisted generation: heuristic drafts 2 more after a round all accepted, 1 fewer otherwise',
  },
  assistant_confidence_threshold: {
    kind: { type: 'number', min: 0, max: 1 },
    expected: 'a number in [0, 1]',
    hfDefault: 0.4,
    off: undefined,
    samplingOnly: false,
    openai: null,
    cli: 'assistant-confidence-threshold',
    setting: null,
    doc: 'assisted generation: the assistant stops drafting when its top probability falls below this (default 0.4)',
  },
  stop_strings: {
    kind: { type: 'strings', maxItems: 64 },
    expected: 'an array of at most 64 non-empty strings',
    hfDefault: undefined,
    off: undefined,
    samplingOnly: false,
    openai: 'stop',
    cli: 'stop',
    setting: null, // inline completions have their own stop sequences (inline.stopSequences)
    doc: 'end the text where one of these strings appears (repeatable)',
  },
} as const satisfies Record<string, SamplingOptionSpec>;

export type SamplingKey = keyof typeof SAMPLING_SPEC;

type ValueOf<K extends Kind> = K extends { type: 'boolean' }
  ? boolean
  : K extends { type: 'strings' }
    ? string[]
    : K extends { type: 'enum'; values: readonly (infer V)[] }
      ? V
      : number;

/** Sampling options with Hugging Face's names: what every request to the engine may carry. */
export type SamplingOptions = { [K in SamplingKey]?: ValueOf<(typeof SAMPLING_SPEC)[K]['kind']> };

export const SAMPLING_KEYS = Object.keys(SAMPLING_SPEC) as SamplingKey[];

export const isSamplingKey = (key: string): key is SamplingKey => Object.hasOwn(SAMPLING_SPEC, key);

/** Whether `value` is an accepted value of the option (type and range); the engine checks how options combine. */
export function validSamplingValue(key: SamplingKey, value: unknown): boolean {
  const kind: Kind = SAMPLING_SPEC[key].kind;
  switch (kind.type) {
    case 'boolean':
      return typeof value === 'boolean';
    case 'strings':
      return Array.isArray(value) && value.length <= kind.maxItems && value.every((s) => typeof s === 'string' && s !== '');
    case 'enum':
      return typeof value === 'string' && kind.values.includes(value);
    case 'int':
      return typeof value === 'number' && Number.isInteger(value) && value >= kind.min && value <= kind.max;
    case 'number':
      return (
        typeof value === 'number' &&
        Number.isFinite(value) &&
        (kind.minExclusive ? value > kind.min : value >= kind.min) &&
        value <= kind.max
      );
  }
}

/** The sampling warpers' options (transformers warns when one is set for greedy decoding). */
export type SamplingOnlyKey = { [K in SamplingKey]: (typeof SAMPLING_SPEC)[K]['samplingOnly'] extends true ? K : never }[SamplingKey];
export const SAMPLING_ONLY_KEYS = SAMPLING_KEYS.filter((k): k is SamplingOnlyKey => SAMPLING_SPEC[k].samplingOnly);

/** The VS Code settings (under optComplete.) that set sampling options. */
export type SamplingSettingKey = NonNullable<(typeof SAMPLING_SPEC)[SamplingKey]['setting']>;

/** The options with a VS Code setting, in the spec's order. */
export const SAMPLING_SETTINGS = SAMPLING_KEYS.flatMap((key) => {
  const setting = SAMPLING_SPEC[key].setting as SamplingSettingKey | null;
  return setting === null ? [] : [{ key, setting }];
});
