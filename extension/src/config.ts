// The only reader of VS Code's configuration: a typed getter per setting, read by its rule in
// settings.ts; a value the rule refuses (a broken settings.json) gets package.json's default, the
// only place defaults are written. And the classification of a change into restart vs hot settings.

import { availableParallelism, homedir } from 'node:os';
import * as vscode from 'vscode';
import type { DebounceSettings } from './completion/debounce.js';
import type { InlinePolicy, MultilineMode } from './completion/postprocess.js';
import type { SamplingOptions } from './engines/completionEngine.js';
import { type RewriteTemplate, resolveTemplates } from './rewrite/rewriteTemplates.js';
import type { RuntimeInit } from './runtimeSupervisor.js';
import {
  type DeviceSetting,
  type DtypeSetting,
  type EngineKind,
  HOT_SETTINGS,
  RESTART_SETTINGS,
  SECTION,
  SETTING_RULES,
  type SettingKey,
  type SettingRule,
  type SettingValue,
  languageEnabled,
  samplingFromSettings,
} from './settings.js';

/** The settings read as plain numbers (clamped to their rule's range). */
type NumberKey = { [K in SettingKey]: [SettingValue<K>] extends [number] ? K : never }[SettingKey];

export interface SettingsChange {
  restart: SettingKey[];
  hot: SettingKey[];
}

export class Config {
  private get _cfg(): vscode.WorkspaceConfiguration {
    return vscode.workspace.getConfiguration(SECTION);
  }

  /** The setting's value when its rule accepts it, else package.json's default (which the manifest test checks the rule accepts). */
  private _value<K extends SettingKey>(key: K): SettingValue<K> {
    const rule: SettingRule<unknown> = SETTING_RULES[key];
    const cfg = this._cfg;
    const v = cfg.get<unknown>(key);
    if (v !== undefined && v !== null && rule.accepts(v)) return v as SettingValue<K>;
    const d = cfg.inspect<unknown>(key)?.defaultValue;
    if ((d === null && rule.nullable) || (d !== undefined && d !== null && rule.accepts(d))) return d as SettingValue<K>;
    throw new Error(`package.json declares no valid default for ${SECTION}.${key}`);
  }

  /** A number setting, clamped to its rule's range (and `max`). */
  private _number(key: NumberKey, max = Number.POSITIVE_INFINITY): number {
    return clamp(SETTING_RULES[key], this._value(key), max);
  }

  // Engine and runtime (restart settings).
  get engine(): EngineKind {
    return this._value('engine');
  }
  get model(): string {
    return this._value('model').trim();
  }
  get device(): DeviceSetting {
    return this._value('device');
  }
  get dtype(): DtypeSetting {
    return this._value('dtype');
  }
  /**
   * 0 (one per core) up to this machine's logical CPUs, the runtime's own limit (runtime/src/session.ts
   * maxThreads: more intra-op threads than CPUs only share cores), and never above package.json's
   * `maximum` (256), which a settings.json edited by hand can still exceed.
   */
  get threads(): number {
    return this._number('threads', availableParallelism());
  }
  /** A smaller OPT that drafts for the model (empty: none); ghost text and rewrites then skip prompt lookup. */
  get assistantModel(): string {
    const v = this._value('assistantModel').trim();
    return v === '' ? '' : expandHome(v);
  }
  get cacheDir(): string {
    return expandHome(this._value('cacheDir'));
  }
  get nodePath(): string {
    return expandHome(this._value('runtime.nodePath'));
  }
  /** undefined (the default, null, or anything but a number): the runtime sizes the prefix cache for the model and the machine. */
  get prefixCacheMiB(): number | undefined {
    const v = this._value('runtime.prefixCacheMiB');
    return v === null ? undefined : clamp(SETTING_RULES['runtime.prefixCacheMiB'], v);
  }
  get startup(): 'onDemand' | 'onStartup' {
    return this._value('runtime.startup');
  }
  get openaiBaseUrl(): string {
    return this._value('openai.baseUrl');
  }
  get openaiModel(): string {
    return this._value('openai.model');
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
    if (this.assistantModel !== '') init.assistantModel = this.assistantModel;
    return init;
  }

  // Inline completions (hot).
  get inlineEnabled(): boolean {
    return this._value('inline.enable');
  }
  get inlineLanguages(): Record<string, unknown> {
    return this._value('inline.languages');
  }
  inlineEnabledFor(languageId: string): boolean {
    return this.inlineEnabled && languageEnabled(this.inlineLanguages, languageId);
  }
  get debounce(): DebounceSettings {
    return { debounceMs: this._number('inline.debounceMs'), wordEndDebounceMs: this._number('inline.wordEndDebounceMs') };
  }
  get multiline(): MultilineMode {
    return this._value('inline.multiline');
  }
  get inlineMaxNewTokens(): number {
    return this._number('inline.maxNewTokens');
  }
  get maxContextChars(): number {
    return this._number('inline.maxContextChars');
  }
  get maxContextTokens(): number {
    return this._number('inline.maxContextTokens');
  }
  get inlinePolicy(): InlinePolicy {
    return {
      multiline: this.multiline,
      maxLines: this._number('inline.maxLines'),
      stopSequences: this._value('inline.stopSequences').filter((s): s is string => typeof s === 'string' && s !== ''),
    };
  }

  // Generation and rewriting (hot).
  get generationSampling(): SamplingOptions {
    return samplingFromSettings((key) => (key === 'generation.seed' ? this._value(key) : this._number(key)));
  }
  get rewriteTemplates(): { templates: RewriteTemplate[]; problems: string[] } {
    return resolveTemplates(this._cfg.get('rewrite.templates'));
  }
  get rewriteMaxNewTokens(): number {
    return this._number('rewrite.maxNewTokens');
  }
  /**
   * Prompt lookup's candidates per pass for ghost text and for rewrites (0: off); the text is the
   * same either way. With an assistant model it drafts instead (the runtime uses it for requests
   * that do not ask for lookup).
   */
  get inlinePromptLookupTokens(): number {
    return this.assistantModel === '' ? this._number('inline.promptLookupTokens') : 0;
  }
  get rewritePromptLookupTokens(): number {
    return this.assistantModel === '' ? this._number('rewrite.promptLookupTokens') : 0;
  }
  get debugStateFile(): string {
    return expandHome(this._value('debug.stateFile'));
  }

  /** Writes a setting where it takes effect: the workspace if it is set there, else the user settings. */
  async set(key: SettingKey, value: unknown): Promise<void> {
    const inspect = this._cfg.inspect(key);
    const target =
      inspect?.workspaceFolderValue !== undefined
        ? vscode.ConfigurationTarget.WorkspaceFolder
        : inspect?.workspaceValue !== undefined
          ? vscode.ConfigurationTarget.Workspace
          : vscode.ConfigurationTarget.Global;
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

/** Rounded when the setting is an integer, then clamped to [rule.min, min(rule.max, max)]. */
function clamp(rule: SettingRule<number>, v: number, max = Number.POSITIVE_INFINITY): number {
  const integer = (typeof rule.json === 'string' ? rule.json : rule.json[0]) === 'integer';
  return Math.min(max, rule.max ?? Number.POSITIVE_INFINITY, Math.max(rule.min ?? Number.NEGATIVE_INFINITY, integer ? Math.round(v) : v));
}

function expandHome(p: string): string {
  return p === '~' ? homedir() : p.startsWith('~/') ? homedir() + p.slice(1) : p;
}
