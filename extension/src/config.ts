// The only reader of VS Code's configuration: a typed getter per setting (defaults live in
// package.json; the fallbacks here only guard against a broken settings.json), and the
// classification of a change into restart vs hot settings (lists in settings.ts).

import { availableParallelism, homedir } from 'node:os';
import * as vscode from 'vscode';
import type { DebounceSettings } from './completion/debounce.js';
import type { InlinePolicy, MultilineMode } from './completion/postprocess.js';
import type { SamplingOptions } from './engines/completionEngine.js';
import { type RewriteTemplate, resolveTemplates } from './rewrite/rewriteTemplates.js';
import type { RuntimeInit } from './runtimeSupervisor.js';
import {
  DEVICE_SETTINGS,
  DTYPE_SETTINGS,
  type DeviceSetting,
  type DtypeSetting,
  type EngineKind,
  HOT_SETTINGS,
  RESTART_SETTINGS,
  SECTION,
  type SettingKey,
  languageEnabled,
  samplingFromSettings,
} from './settings.js';

export interface SettingsChange {
  restart: SettingKey[];
  hot: SettingKey[];
}

export class Config {
  private get _cfg(): vscode.WorkspaceConfiguration {
    return vscode.workspace.getConfiguration(SECTION);
  }

  private _get<T>(key: SettingKey, fallback: T, valid: (v: unknown) => boolean = (v) => typeof v === typeof fallback): T {
    const v = this._cfg.get<unknown>(key);
    return v !== undefined && v !== null && valid(v) ? (v as T) : fallback;
  }

  private _int(key: SettingKey, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const v = this._get<number>(key, fallback, (x) => typeof x === 'number' && Number.isFinite(x));
    return Math.min(max, Math.max(min, Math.round(v)));
  }

  private _num(key: SettingKey, fallback: number, min: number, max: number): number {
    const v = this._get<number>(key, fallback, (x) => typeof x === 'number' && Number.isFinite(x));
    return Math.min(max, Math.max(min, v));
  }

  // Engine and runtime (restart settings).
  get engine(): EngineKind {
    return this._get<EngineKind>('engine', 'local', (v) => v === 'local' || v === 'openai');
  }
  get model(): string {
    return this._get('model', 'facebook/opt-125m', (v) => typeof v === 'string' && v.trim() !== '').trim();
  }
  get device(): DeviceSetting {
    return this._get<DeviceSetting>('device', 'auto', (v) => (DEVICE_SETTINGS as readonly unknown[]).includes(v));
  }
  get dtype(): DtypeSetting {
    return this._get<DtypeSetting>('dtype', 'auto', (v) => (DTYPE_SETTINGS as readonly unknown[]).includes(v));
  }
  /**
   * 0 (one per core) up to this machine's logical CPUs, the runtime's own limit (runtime/src/session.ts
   * maxThreads: more intra-op threads than CPUs only share cores), and never above package.json's
   * `maximum` (256), which a settings.json edited by hand can still exceed.
   */
  get threads(): number {
    return this._int('threads', 0, 0, Math.min(256, availableParallelism()));
  }
  get cacheDir(): string {
    return expandHome(this._get('cacheDir', ''));
  }
  get nodePath(): string {
    return expandHome(this._get('runtime.nodePath', ''));
  }
  /** undefined (the default, null, or anything but a number): the runtime sizes the prefix cache for the model and the machine. */
  get prefixCacheMiB(): number | undefined {
    const v = this._cfg.get<unknown>('runtime.prefixCacheMiB');
    return typeof v === 'number' && Number.isFinite(v) ? Math.max(0, Math.round(v)) : undefined;
  }
  get startup(): 'onDemand' | 'onStartup' {
    return this._get('runtime.startup', 'onDemand', (v) => v === 'onDemand' || v === 'onStartup');
  }
  get openaiBaseUrl(): string {
    return this._get('openai.baseUrl', 'http://127.0.0.1:8000/v1');
  }
  get openaiModel(): string {
    return this._get('openai.model', '');
  }

  /** The runtime's memory check and automatic prefix cache are sized for an inline request's prompt and completion. */
  get runtimeContextTokens(): number {
    return this.maxContextTokens + this.inlineMaxNewTokens;
  }

  /** What initialize is sent. `auto` device and 0 threads are left to the runtime. */
  runtimeInit(): RuntimeInit {
    const model = expandHome(this.model);
    const init: RuntimeInit = { model, dtype: this.dtype, contextTokens: this.runtimeContextTokens };
    if (this.prefixCacheMiB !== undefined) init.prefixCacheMiB = this.prefixCacheMiB;
    if (this.device !== 'auto') init.device = this.device;
    if (this.threads > 0) init.threads = this.threads;
    if (this.cacheDir !== '') init.cacheDir = this.cacheDir;
    return init;
  }

  // Inline completions (hot).
  get inlineEnabled(): boolean {
    return this._get('inline.enable', true);
  }
  get inlineLanguages(): Record<string, unknown> {
    return this._get<Record<string, unknown>>('inline.languages', { '*': true }, (v) => typeof v === 'object' && !Array.isArray(v));
  }
  inlineEnabledFor(languageId: string): boolean {
    return this.inlineEnabled && languageEnabled(this.inlineLanguages, languageId);
  }
  get debounce(): DebounceSettings {
    return { debounceMs: this._int('inline.debounceMs', 75, 0, 5000), wordEndDebounceMs: this._int('inline.wordEndDebounceMs', 0, 0, 5000) };
  }
  get multiline(): MultilineMode {
    return this._get<MultilineMode>('inline.multiline', 'auto', (v) => v === 'auto' || v === 'always' || v === 'never');
  }
  get inlineMaxNewTokens(): number {
    return this._int('inline.maxNewTokens', 48, 1, 1024);
  }
  get maxContextChars(): number {
    return this._int('inline.maxContextChars', 4000, 16, 200_000);
  }
  get maxContextTokens(): number {
    return this._int('inline.maxContextTokens', 768, 8, 32768);
  }
  get inlinePolicy(): InlinePolicy {
    return {
      multiline: this.multiline,
      maxLines: this._int('inline.maxLines', 8, 1, 200),
      stopSequences: this._get<string[]>('inline.stopSequences', [], (v) => Array.isArray(v)).filter((s) => typeof s === 'string' && s !== ''),
    };
  }

  // Generation and rewriting (hot).
  get generationSampling(): SamplingOptions {
    return samplingFromSettings({
      temperature: this._num('generation.temperature', 0.8, 0, 10),
      topP: this._num('generation.topP', 0.95, 0.01, 1),
      topK: this._int('generation.topK', 50, 0, 50272),
      repetitionPenalty: this._num('generation.repetitionPenalty', 1.1, 0.01, 10),
      maxNewTokens: this._int('generation.maxNewTokens', 128, 1, 2048),
      seed: this._get<number | null>('generation.seed', null, (v) => typeof v === 'number' && Number.isInteger(v)),
    });
  }
  get rewriteTemplates(): { templates: RewriteTemplate[]; problems: string[] } {
    return resolveTemplates(this._cfg.get('rewrite.templates'));
  }
  get rewriteMaxNewTokens(): number {
    return this._int('rewrite.maxNewTokens', 512, 16, 2048);
  }
  get debugStateFile(): string {
    return expandHome(this._get('debug.stateFile', ''));
  }

  /** Writes a setting where it takes effect: the workspace if it is set there, else the user settings. */
  async set(key: SettingKey, value: unknown): Promise<void> {
    const inspect = this._cfg.inspect(key);
    const target = inspect?.workspaceFolderValue !== undefined
      ? vscode.ConfigurationTarget.WorkspaceFolder
      : inspect?.workspaceValue !== undefined ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
    await this._cfg.update(key, value, target);
  }

  /** Which of our settings a configuration change touches. */
  changes(e: vscode.ConfigurationChangeEvent): SettingsChange {
    const affected = (k: SettingKey) => e.affectsConfiguration(`${SECTION}.${k}`);
    return { restart: RESTART_SETTINGS.filter(affected), hot: HOT_SETTINGS.filter(affected) };
  }

  /** Every setting's effective value, for the debug state. */
  snapshot(): Record<string, unknown> {
    const cfg = this._cfg;
    return Object.fromEntries([...RESTART_SETTINGS, ...HOT_SETTINGS].filter((k) => k !== 'rewrite.templates').map((k) => [k, cfg.get(k)]));
  }
}

function expandHome(p: string): string {
  return p === '~' ? homedir() : p.startsWith('~/') ? homedir() + p.slice(1) : p;
}
