// The extension's settings by name, split the way rust-analyzer's Config splits them: those the
// runtime (or the remote engine) is started with, whose change restarts it, and those read at each
// use, which apply at once; how each is read (SETTING_RULES; the defaults are package.json's alone);
// and the pure derivations config.ts hands out. No vscode import; test/extensionManifest.test.ts
// checks these lists and rules against package.json.

import type { SamplingOptions } from './engines/completionEngine.js';

export const SECTION = 'optComplete';

/** Changing one of these restarts the runtime (or recreates the remote engine). */
export const RESTART_SETTINGS = [
  'engine',
  'model',
  'device',
  'dtype',
  'threads',
  'cacheDir',
  'runtime.nodePath',
  'runtime.prefixCacheMiB',
  'openai.baseUrl',
  'openai.model',
] as const;

/** Read at each use: a change applies to the next keystroke or command. */
export const HOT_SETTINGS = [
  'runtime.startup',
  'inline.enable',
  'inline.languages',
  'inline.debounceMs',
  'inline.wordEndDebounceMs',
  'inline.multiline',
  'inline.maxLines',
  'inline.maxNewTokens',
  'inline.maxContextChars',
  'inline.maxContextTokens',
  'inline.stopSequences',
  'generation.temperature',
  'generation.topP',
  'generation.topK',
  'generation.repetitionPenalty',
  'generation.maxNewTokens',
  'generation.seed',
  'rewrite.templates',
  'rewrite.maxNewTokens',
  'debug.stateFile',
] as const;

export type SettingKey = (typeof RESTART_SETTINGS)[number] | (typeof HOT_SETTINGS)[number];

/** Hot settings that change what an inline suggestion would be: cached suggestions are dropped. */
export const INLINE_RESULT_SETTINGS: readonly SettingKey[] = ['inline.multiline', 'inline.maxLines', 'inline.maxNewTokens', 'inline.maxContextChars', 'inline.maxContextTokens', 'inline.stopSequences'];

export type EngineKind = 'local' | 'openai';
export type DeviceSetting = 'auto' | 'cpu' | 'webgpu' | 'cuda';
export type DtypeSetting = 'auto' | 'int8' | 'int4' | 'fp16' | 'fp32';
export const DEVICE_SETTINGS: readonly DeviceSetting[] = ['auto', 'cpu', 'webgpu', 'cuda'];
export const DTYPE_SETTINGS: readonly DtypeSetting[] = ['auto', 'int8', 'int4', 'fp16', 'fp32'];

/**
 * How config.ts reads a setting. A value from settings.json is used when `accepts` says so;
 * anything else (unset, null, the wrong type) gets package.json's default, the one place defaults
 * are written. `json` is package.json's `type` for it; numbers are clamped to [min, max]; a
 * nullable setting's null default means "automatic" or "none".
 */
export interface SettingRule<T> {
  json: 'boolean' | 'string' | 'integer' | 'number' | 'array' | 'object' | readonly ['integer', 'null'];
  accepts(value: unknown): value is T;
  enum?: readonly string[];
  min?: number;
  max?: number;
  nullable?: true;
}

const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const bool: SettingRule<boolean> = { json: 'boolean', accepts: (v): v is boolean => typeof v === 'boolean' };
const text: SettingRule<string> = { json: 'string', accepts: (v): v is string => typeof v === 'string' };
const oneOf = <const T extends string>(values: readonly T[]): SettingRule<T> => ({ json: 'string', enum: values, accepts: (v): v is T => (values as readonly unknown[]).includes(v) });
/** Any finite number is accepted, then rounded and clamped. */
const int = (min: number, max: number): SettingRule<number> => ({ json: 'integer', accepts: finite, min, max });
const num = (min: number, max: number): SettingRule<number> => ({ json: 'number', accepts: finite, min, max });

/** Every setting's rule (the test checks each against package.json's declaration and default). */
export const SETTING_RULES = {
  engine: oneOf<EngineKind>(['local', 'openai']),
  model: { json: 'string', accepts: (v): v is string => typeof v === 'string' && v.trim() !== '' },
  device: oneOf(DEVICE_SETTINGS),
  dtype: oneOf(DTYPE_SETTINGS),
  /** Also capped at this machine's logical CPUs (config.ts). */
  threads: int(0, 256),
  cacheDir: text,
  'runtime.nodePath': text,
  'runtime.prefixCacheMiB': { ...int(0, Number.POSITIVE_INFINITY), json: ['integer', 'null'], nullable: true },
  'runtime.startup': oneOf(['onDemand', 'onStartup']),
  'openai.baseUrl': text,
  'openai.model': text,
  'inline.enable': bool,
  'inline.languages': { json: 'object', accepts: (v): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v) },
  'inline.debounceMs': int(0, 5000),
  'inline.wordEndDebounceMs': int(0, 5000),
  'inline.multiline': oneOf(['auto', 'always', 'never']),
  'inline.maxLines': int(1, 200),
  'inline.maxNewTokens': int(1, 1024),
  'inline.maxContextChars': int(16, 200_000),
  'inline.maxContextTokens': int(8, 32768),
  'inline.stopSequences': { json: 'array', accepts: (v): v is unknown[] => Array.isArray(v) },
  'generation.temperature': num(0, 10),
  'generation.topP': num(0.01, 1),
  'generation.topK': int(0, 50272),
  'generation.repetitionPenalty': num(0.01, 10),
  'generation.maxNewTokens': int(1, 2048),
  /** Only a whole number is a seed (not rounded). */
  'generation.seed': { json: ['integer', 'null'], accepts: (v): v is number => Number.isInteger(v), nullable: true },
  /** Checked entry by entry by resolveTemplates (rewriteTemplates.ts). */
  'rewrite.templates': { json: 'array', accepts: (v): v is unknown[] => Array.isArray(v) },
  'rewrite.maxNewTokens': int(16, 2048),
  'debug.stateFile': text,
} as const satisfies { [K in SettingKey]: SettingRule<unknown> };

/** What a setting reads as: its rule's type, or null for a nullable one. */
export type SettingValue<K extends SettingKey> = (typeof SETTING_RULES)[K] extends SettingRule<infer T> ? T | ((typeof SETTING_RULES)[K] extends { nullable: true } ? null : never) : never;

/** Per-language switch: the language's own entry, else "*", else on. */
export function languageEnabled(languages: Record<string, unknown> | undefined, languageId: string): boolean {
  const own = languages?.[languageId];
  if (typeof own === 'boolean') return own;
  const all = languages?.['*'];
  return typeof all === 'boolean' ? all : true;
}

export interface GenerationSettings {
  temperature: number;
  topP: number;
  topK: number;
  repetitionPenalty: number;
  maxNewTokens: number;
  seed: number | null;
}

/** Hugging Face sampling options from the generation settings; temperature 0 means greedy. */
export function samplingFromSettings(g: GenerationSettings): SamplingOptions {
  const options: SamplingOptions = { max_new_tokens: g.maxNewTokens };
  if (g.repetitionPenalty !== 1) options.repetition_penalty = g.repetitionPenalty;
  if (g.temperature <= 0) return { ...options, do_sample: false };
  options.do_sample = true;
  options.temperature = g.temperature;
  if (g.topP < 1) options.top_p = g.topP;
  if (g.topK > 0) options.top_k = g.topK;
  if (g.seed !== null && Number.isInteger(g.seed)) options.seed = g.seed;
  return options;
}
