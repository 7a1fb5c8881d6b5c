// The extension's settings by name, split the way rust-analyzer's Config splits them: those the
// runtime (or the remote engine) is started with, whose change restarts it, and those read at each
// use, which apply at once; how each is read (SETTING_RULES; the defaults are package.json's alone);
// and the pure derivations config.ts hands out. No vscode import; test/extension/manifest.test.ts
// checks these lists and rules against package.json.

import { SAMPLING_SETTINGS, SAMPLING_SPEC, type SamplingOptionSpec, type SamplingSettingKey } from '../../protocol/sampling.js';
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
  'assistantModel',
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
  'inline.promptLookupTokens',
  'inline.maxContextChars',
  'inline.maxContextTokens',
  'inline.stopSequences',
  // generation.temperature, generation.topP, …: every sampling option's setting (protocol/sampling.ts)
  ...SAMPLING_SETTINGS.map((s) => s.setting),
  'rewrite.templates',
  'rewrite.maxNewTokens',
  'rewrite.promptLookupTokens',
  'debug.stateFile',
] as const;

export type SettingKey = (typeof RESTART_SETTINGS)[number] | (typeof HOT_SETTINGS)[number];

/** Hot settings that change what an inline suggestion would be: cached suggestions are dropped. */
export const INLINE_RESULT_SETTINGS: readonly SettingKey[] = [
  'inline.multiline',
  'inline.maxLines',
  'inline.maxNewTokens',
  'inline.maxContextChars',
  'inline.maxContextTokens',
  'inline.stopSequences',
];

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
const oneOf = <const T extends string>(values: readonly T[]): SettingRule<T> => ({
  json: 'string',
  enum: values,
  accepts: (v): v is T => (values as readonly unknown[]).includes(v),
});
/** Any finite number is accepted, then rounded and clamped. */
const int = (min: number, max: number): SettingRule<number> => ({ json: 'integer', accepts: finite, min, max });
const num = (min: number, max: number): SettingRule<number> => ({ json: 'number', accepts: finite, min, max });

/**
 * A sampling option's setting reads the option's own range (protocol/sampling.ts); the rules below
 * narrow it where the editor caps it tighter.
 */
function samplingRule(spec: SamplingOptionSpec): SettingRule<number> {
  const { kind } = spec;
  if (kind.type === 'int') return int(kind.min, kind.max);
  if (kind.type === 'number') return num(kind.min, kind.max);
  throw new Error(`a ${kind.type} sampling option has no setting rule yet`);
}
const SAMPLING_RULES = Object.fromEntries(
  SAMPLING_SETTINGS.map(({ key, setting }) => [setting, samplingRule(SAMPLING_SPEC[key])]),
) as Record<SamplingSettingKey, SettingRule<number>>;

/** Every setting's rule (the test checks each against package.json's declaration and default). */
export const SETTING_RULES = {
  ...SAMPLING_RULES,
  engine: oneOf<EngineKind>(['local', 'openai']),
  model: { json: 'string', accepts: (v): v is string => typeof v === 'string' && v.trim() !== '' },
  device: oneOf(DEVICE_SETTINGS),
  dtype: oneOf(DTYPE_SETTINGS),
  /** Also capped at this machine's logical CPUs (config.ts). */
  threads: int(0, 256),
  cacheDir: text,
  assistantModel: text,
  'runtime.nodePath': text,
  'runtime.prefixCacheMiB': { ...int(0, Number.POSITIVE_INFINITY), json: ['integer', 'null'], nullable: true },
  'runtime.startup': oneOf(['onDemand', 'onStartup']),
  'openai.baseUrl': text,
  'openai.model': text,
  'inline.enable': bool,
  'inline.languages': {
    json: 'object',
    accepts: (v): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v),
  },
  'inline.debounceMs': int(0, 5000),
  'inline.wordEndDebounceMs': int(0, 5000),
  'inline.multiline': oneOf(['auto', 'always', 'never']),
  'inline.maxLines': int(1, 200),
  'inline.maxNewTokens': int(1, 1024),
  'inline.promptLookupTokens': int(0, 64),
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
  'rewrite.promptLookupTokens': int(0, 64),
  'debug.stateFile': text,
} as const satisfies { [K in SettingKey]: SettingRule<unknown> };

/** What a setting reads as: its rule's type, or null for a nullable one. */
export type SettingValue<K extends SettingKey> =
  (typeof SETTING_RULES)[K] extends SettingRule<infer T>
    ? T | ((typeof SETTING_RULES)[K] extends { nullable: true } ? null : never)
    : never;

/** Per-language switch: the language's own entry, else "*", else on. */
export function languageEnabled(languages: Record<string, unknown> | undefined, languageId: string): boolean {
  const own = languages?.[languageId];
  if (typeof own === 'boolean') return own;
  const all = languages?.['*'];
  return typeof all === 'boolean' ? all : true;
}

/**
 * Hugging Face sampling options from the generation settings, each named by the sampling spec:
 * temperature 0 means greedy (no sampling option is sent then, nor a seed), an option at its "off"
 * value is left out, and null (a seed's default) means unset.
 */
export function samplingFromSettings(value: (setting: SamplingSettingKey) => unknown): SamplingOptions {
  const temperature = value(SAMPLING_SPEC.temperature.setting);
  const sample = typeof temperature === 'number' && temperature > 0;
  const options: Record<string, unknown> = {};
  for (const { key, setting } of SAMPLING_SETTINGS) {
    const spec: SamplingOptionSpec = SAMPLING_SPEC[key];
    const v = value(setting);
    if (v === null || v === undefined || (!sample && (spec.samplingOnly || key === 'seed'))) continue;
    if (v !== spec.off || key === 'temperature') options[key] = v;
  }
  options.do_sample = sample;
  return options as SamplingOptions;
}
