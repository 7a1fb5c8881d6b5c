// The extension's settings by name, split the way rust-analyzer's Config splits them: those the
// runtime (or the remote engine) is started with, whose change restarts it, and those read at each
// use, which apply at once. Plus the pure derivations config.ts hands out. No vscode import;
// test/extensionManifest.test.ts checks these lists against package.json.

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
