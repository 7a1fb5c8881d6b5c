// The extension's context, after rust-analyzer's Ctx: it owns the configuration, the log, the
// runtime supervisor, the engine the features talk to (local runtime or remote server), the status
// bar, the completion cache and what the debug state reports. Extension-lifetime disposables go
// through pushExtCleanup; the runtime's lifecycle is the supervisor's.

import type { WarmRecord } from './documentWarmer.js';
import { rename, writeFile } from 'node:fs/promises';
import * as vscode from 'vscode';
import { Commands, ContextKeys } from './commandIds.js';
import { CompletionCache } from './completion/completionCache.js';
import { Config } from './config.js';
import { type CompletionEngine, type EngineInfo, type ModelTask, isCancellation } from './engines/completionEngine.js';
import { LocalRuntimeEngine } from './engines/localRuntimeEngine.js';
import { OpenAiEngine } from './engines/openaiEngine.js';
import { modelKind as modelKindOf, tasksOf } from './heads/modelTasks.js';
import { runtimeLaunch } from './runtimeLaunch.js';
import { type RuntimeState, RuntimeSupervisor } from './runtimeSupervisor.js';
import { INLINE_RESULT_SETTINGS } from './settings.js';
import { StatusBar } from './statusBar.js';

const API_KEY_SECRET = 'optComplete.openai.apiKey';
/** globalState: the tasks each model had when it last loaded, so menus fit the model before it loads again. */
const MODEL_TASKS_KEY = 'optComplete.modelTasks';
const MODEL_TASKS_KEPT = 32;

/** The button a failed runtime's error offers: what fixes that kind of failure. */
const FAILURE_ACTIONS = {
  restart: { title: 'Restart Runtime', command: Commands.restartRuntime },
  model: { title: 'Choose Model…', command: Commands.selectModel },
  device: { title: 'Choose Device…', command: Commands.selectDevice },
} as const;

/** What the last inline completion was, for the status bar and the debug state. */
export interface InlineRecord {
  at: string;
  uri: string;
  line: number;
  character: number;
  source: 'cache' | 'engine';
  /** The text shown at the cursor (it replaces `replaceSuffix` characters after it). */
  text: string | undefined;
  replaceSuffix: number;
  multiline: boolean;
  latencyMs: number;
  promptTokens?: number;
  reusedTokens?: number;
  completionTokens?: number;
  tokensPerSecond?: number;
  finishReason?: string;
}

export interface InlineCounters {
  requests: number;
  cacheHits: number;
  engineCalls: number;
  shown: number;
  empty: number;
  cancelled: number;
  errors: number;
  accepted: number;
}

export class Ctx implements vscode.Disposable {
  readonly config = new Config();
  readonly log: vscode.LogOutputChannel;
  readonly supervisor: RuntimeSupervisor;
  readonly cache = new CompletionCache();
  readonly statusBar: StatusBar;
  readonly inlineCounters: InlineCounters = { requests: 0, cacheHits: 0, engineCalls: 0, shown: 0, empty: 0, cancelled: 0, errors: 0, accepted: 0 };
  lastInline: InlineRecord | undefined;
  /** The last warm-up of a document's prefix (documentWarmer.ts). */
  lastWarm: WarmRecord | undefined;
  lastGenerate: Record<string, unknown> | undefined;
  lastRewrite: Record<string, unknown> | undefined;
  lastClassify: Record<string, unknown> | undefined;
  lastAnswer: Record<string, unknown> | undefined;
  /** Reports the pending rewrite for the debug state (set by the rewrite preview). */
  pendingRewrite: () => Record<string, unknown> | undefined = () => undefined;
  /** Reports the highlighted answer span for the debug state (set by main.ts). */
  highlightedAnswer: () => unknown = () => undefined;

  private readonly _extCleanup: vscode.Disposable[] = [];
  private _engine: CompletionEngine | undefined;
  private _apiKey: string | undefined;
  private _busy: string | undefined;
  private _remoteError: string | undefined;
  private _loadNotification = false;
  private _lastFailureShown: string | undefined;
  /** Device fallback reasons already shown: each once, until a setting that restarts the runtime changes. */
  private readonly _fallbacksShown = new Set<string>();
  private _stateFileTimer: ReturnType<typeof setTimeout> | undefined;
  private _stopped = false;
  private _shownOnce = false;
  /** The `when` keys as last set, for debugState (VS Code cannot be asked for them). */
  private readonly _contextKeys: Record<string, unknown> = {};

  constructor(readonly extension: vscode.ExtensionContext) {
    this.log = vscode.window.createOutputChannel('OPT Complete', { log: true });
    this.pushExtCleanup(this.log);
    this.supervisor = new RuntimeSupervisor({
      launch: () => runtimeLaunch({ extensionPath: extension.extensionPath, nodePath: this.config.nodePath, execPath: process.execPath, versions: process.versions, env: process.env }),
      init: () => this.config.runtimeInit(),
      log: this.log,
    });
    this.statusBar = new StatusBar();
    this.pushExtCleanup(this.statusBar);
    this.pushExtCleanup(toDisposable(this.supervisor.onDidChangeState((s) => this._onRuntimeState(s))));
    this.pushExtCleanup(vscode.workspace.onDidChangeConfiguration((e) => void this._onConfigChange(e)));
    this.pushExtCleanup(vscode.window.onDidChangeActiveTextEditor(() => this.refreshStatus()));
    this.pushExtCleanup(vscode.workspace.onDidCloseTextDocument((d) => this.cache.clear(d.uri.toString())));
    this.pushExtCleanup(extension.secrets.onDidChange((e) => void (e.key === API_KEY_SECRET && this._reloadApiKey())));
  }

  pushExtCleanup(d: vscode.Disposable): void {
    this._extCleanup.push(d);
  }

  /** Reads the API key, applies the startup setting and shows the first status. */
  async start(): Promise<void> {
    await this._reloadApiKey();
    this.refreshStatus();
    this._updateTaskKeys();
    void this.setContext(ContextKeys.inlineEnabled, this.config.inlineEnabled);
    if (this.config.engine === 'local' && this.config.startup === 'onStartup') this.supervisor.start();
  }

  /** The engine for the current `optComplete.engine` setting (created on first use). */
  engine(): CompletionEngine {
    const kind = this.config.engine;
    if (this._engine?.kind !== kind) {
      void this._engine?.dispose();
      if (kind === 'openai') {
        this._engine = new OpenAiEngine({ baseUrl: this.config.openaiBaseUrl, apiKey: this._apiKey, model: this.config.openaiModel || undefined });
        this.log.info(`engine: OpenAI-compatible server at ${this.config.openaiBaseUrl}${this._apiKey ? ' (with API key)' : ''}`);
      } else {
        this._engine = new LocalRuntimeEngine(this.supervisor);
      }
    }
    return this._engine;
  }

  /** Marks a generation or rewrite as running (status bar) until the returned disposable is disposed. */
  beginBusy(label: string): vscode.Disposable {
    this._busy = label;
    this.refreshStatus();
    let ended = false;
    return new vscode.Disposable(() => {
      if (ended) return; // commands end it on success and again in `finally`
      ended = true;
      if (this._busy === label) this._busy = undefined;
      this.refreshStatus();
    });
  }

  /** Remote engine health, from the outcome of its requests. */
  noteEngineOutcome(err: unknown): void {
    if (this.config.engine !== 'openai') return;
    const next = err === undefined || isCancellation(err) ? undefined : (err as Error).message;
    if (next !== this._remoteError) {
      this._remoteError = next;
      this.refreshStatus();
    }
  }

  recordInline(record: InlineRecord): void {
    this.lastInline = record;
    if (record.text !== undefined && !this._shownOnce) {
      this._shownOnce = true;
      void this.setContext(ContextKeys.firstCompletionShown, true);
    }
    this.refreshStatus();
  }

  /**
   * Starts the local runtime when it is not running (also out of held or failed), with a
   * notification that follows the load and can cancel it.
   */
  startWithProgress(): void {
    if (this.config.engine !== 'local') return;
    this.supervisor.start();
    this.showLoadProgress();
  }

  /** A cancellable notification following the current load until it ends. */
  showLoadProgress(): void {
    if (this._loadNotification || this.supervisor.state.kind !== 'loading') return;
    this._loadNotification = true;
    void vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: 'OPT Complete', cancellable: true }, (progress, token) =>
      new Promise<void>((resolve) => {
        const update = (s: RuntimeState) => {
          if (s.kind === 'loading') {
            const p = s.progress;
            progress.report({ message: p ? `${p.message}${p.fraction !== undefined ? ` (${Math.round(p.fraction * 100)}%)` : ''}` : `starting the runtime for ${s.model}` });
            return;
          }
          sub.dispose();
          cancel.dispose();
          resolve();
        };
        const sub = this.supervisor.onDidChangeState(update);
        const cancel = token.onCancellationRequested(() => void this.supervisor.cancelLoad());
        update(this.supervisor.state);
      }),
    ).then(() => (this._loadNotification = false));
  }

  refreshStatus(): void {
    if (this._stopped) return;
    const editor = vscode.window.activeTextEditor;
    const languageId = editor?.document.languageId;
    const last = this.lastInline?.source === 'engine' ? { latencyMs: this.lastInline.latencyMs, tokensPerSecond: this.lastInline.tokensPerSecond } : undefined;
    this.statusBar.update({
      engine: this.config.engine,
      runtime: this.supervisor.state,
      model: this.config.model,
      modelKind: this.runtimeInfo && !tasksOf(this.runtimeInfo)?.includes('generate') ? modelKindOf(this.runtimeInfo) : undefined,
      inline: { enabled: this.config.inlineEnabled, languageEnabled: languageId === undefined || this.config.inlineEnabledFor(languageId), languageId },
      busy: this._busy,
      last,
      remoteError: this._remoteError,
    });
    this._scheduleStateFile();
  }

  setContext(key: string, value: unknown): Thenable<unknown> {
    // Runtime state changes (every download progress tick) set the same keys again: send only changes.
    if (key in this._contextKeys && this._contextKeys[key] === value) return Promise.resolve();
    this._contextKeys[key] = value;
    return vscode.commands.executeCommand('setContext', key, value);
  }

  /** Shows an error with a "Show log" button (and more actions). */
  async showError(message: string, ...actions: { title: string; run: () => unknown }[]): Promise<void> {
    const all = [...actions, { title: 'Show Log', run: () => this.log.show() }];
    const choice = await vscode.window.showErrorMessage(`OPT Complete: ${message}`, ...all.map((a) => a.title));
    await all.find((a) => a.title === choice)?.run();
  }

  /** The loaded model's info (local runtime, ready), else undefined. */
  get runtimeInfo(): EngineInfo | undefined {
    const s = this.supervisor.state;
    return this.config.engine === 'local' && s.kind === 'ready' ? s.info : undefined;
  }

  /**
   * What the configured model can do: the loaded model's tasks, else those it had when it last
   * loaded (remembered per model), else undefined (not known until it loads). A remote server
   * only generates.
   */
  knownTasks(): readonly ModelTask[] | undefined {
    if (this.config.engine === 'openai') return ['generate'];
    const info = this.runtimeInfo;
    if (info) return tasksOf(info);
    const memo = this.extension.globalState.get<Record<string, ModelTask[]>>(MODEL_TASKS_KEY) ?? {};
    const remembered = memo[this.config.runtimeInit().model];
    return Array.isArray(remembered) ? remembered : undefined;
  }

  /** The `when` keys of the head commands (and of Generate/Rewrite in menus) from knownTasks(). */
  private _updateTaskKeys(): void {
    const tasks = this.knownTasks();
    void this.setContext(ContextKeys.canClassify, tasks?.includes('classify') ?? false);
    void this.setContext(ContextKeys.canAnswer, tasks?.includes('answer') ?? false);
    void this.setContext(ContextKeys.canGenerate, tasks?.includes('generate') ?? true);
  }

  private _rememberTasks(info: EngineInfo): void {
    const memo = { ...(this.extension.globalState.get<Record<string, ModelTask[]>>(MODEL_TASKS_KEY) ?? {}) };
    const tasks = [...(tasksOf(info) ?? [])];
    if (JSON.stringify(memo[info.modelId]) === JSON.stringify(tasks)) return;
    delete memo[info.modelId]; // re-inserted last: the oldest entries are dropped first
    memo[info.modelId] = tasks;
    const keys = Object.keys(memo);
    for (const k of keys.slice(0, Math.max(0, keys.length - MODEL_TASKS_KEPT))) delete memo[k];
    void this.extension.globalState.update(MODEL_TASKS_KEY, memo);
  }

  /** The engine for a command the user ran, or undefined after saying why it is unavailable. */
  engineForCommand(): CompletionEngine | undefined {
    const s = this.supervisor.state;
    if (this.config.engine === 'local' && s.kind === 'failed') {
      void this.showError(s.reason, { title: 'Restart Runtime', run: () => vscode.commands.executeCommand(Commands.restartRuntime) });
      return undefined;
    }
    if (this.config.engine === 'local' && s.kind === 'held') this.supervisor.start();
    return this.engine();
  }

  /** Everything the e2e harness and bug reports need, as plain JSON. */
  async debugState(): Promise<Record<string, unknown>> {
    const s = this.supervisor.state;
    let engineStatus: unknown;
    try {
      engineStatus = this.config.engine === 'local' && s.kind !== 'ready' ? undefined : await this.engine().status();
    } catch (err) {
      engineStatus = { error: (err as Error).message };
    }
    const editor = vscode.window.activeTextEditor;
    return {
      extensionVersion: (this.extension.extension.packageJSON as { version?: string }).version,
      engine: this.config.engine,
      runtime: {
        state: s.kind,
        detail: s,
        pid: this.supervisor.pid,
        model: this.config.model,
        counters: this.supervisor.counters,
        lastExit: this.supervisor.lastExit,
      },
      engineStatus,
      statusBar: { kind: this.statusBar.kind, text: this.statusBar.text },
      contextKeys: { ...this._contextKeys },
      inline: {
        enabled: this.config.inlineEnabled,
        activeLanguage: editor?.document.languageId,
        activeLanguageEnabled: editor ? this.config.inlineEnabledFor(editor.document.languageId) : undefined,
        counters: this.inlineCounters,
        cache: this.cache.stats,
        last: this.lastInline,
        warm: this.lastWarm,
      },
      generate: { busy: this._busy, last: this.lastGenerate },
      rewrite: { pending: this.pendingRewrite(), last: this.lastRewrite },
      heads: { tasks: this.knownTasks(), classify: this.lastClassify, answer: this.lastAnswer, highlighted: this.highlightedAnswer() },
      settings: this.config.snapshot(),
    };
  }

  /** Deactivation: stops the runtime and awaits its exit, then disposes everything. */
  async stopAndDispose(): Promise<void> {
    this._stopped = true;
    if (this._stateFileTimer) clearTimeout(this._stateFileTimer);
    await this._engine?.dispose().catch(() => undefined);
    await this.supervisor.dispose();
    this.dispose();
  }

  dispose(): void {
    for (const d of this._extCleanup.splice(0).reverse()) d.dispose();
  }

  private _onRuntimeState(s: RuntimeState): void {
    void this.setContext(ContextKeys.runtimeReady, s.kind === 'ready');
    void this.setContext(ContextKeys.loading, s.kind === 'loading');
    if (s.kind === 'loading' && s.progress?.downloading) this.showLoadProgress();
    if (s.kind === 'ready') {
      this._lastFailureShown = undefined;
      this._rememberTasks(s.info);
      // A GPU that did not start: the model runs (on the CPU), but slower than the user chose; say why once per reason.
      const fallback = s.info.deviceFallback;
      if (fallback && !this._fallbacksShown.has(fallback)) {
        this._fallbacksShown.add(fallback);
        this.log.warn(`device fallback: ${fallback}`);
        void vscode.window.showWarningMessage(`OPT Complete: ${fallback}`, 'Choose Device…', 'Show Log').then((pick) => {
          if (pick === 'Choose Device…') void vscode.commands.executeCommand(Commands.selectDevice);
          else if (pick === 'Show Log') void vscode.commands.executeCommand(Commands.showLog);
        });
      }
    }
    this._updateTaskKeys();
    if (s.kind === 'failed' && this._lastFailureShown !== s.reason) {
      this._lastFailureShown = s.reason;
      const action = FAILURE_ACTIONS[s.fix];
      void this.showError(s.reason, { title: action.title, run: () => vscode.commands.executeCommand(action.command) });
    }
    if (s.kind !== 'ready') this.cache.clear();
    this.refreshStatus();
  }

  private async _onConfigChange(e: vscode.ConfigurationChangeEvent): Promise<void> {
    const change = this.config.changes(e);
    if (change.restart.length === 0 && change.hot.length === 0) return;
    this.log.info(`settings changed: ${[...change.restart, ...change.hot].join(', ')}${change.restart.length ? ' (restart)' : ''}`);
    if (change.restart.length > 0) {
      this.cache.clear();
      this._fallbacksShown.clear(); // the user chose again: a GPU that still fails is news
      const kind = this.config.engine;
      if (this._engine && (this._engine.kind !== kind || kind === 'openai')) {
        // A different engine, or the server's address or model: a fresh client on next use.
        void this._engine.dispose();
        this._engine = undefined;
        this._remoteError = undefined;
      }
      if (kind === 'openai') {
        if (this.supervisor.state.kind !== 'stopped') await this.supervisor.stop();
      } else {
        const restarted = await this.supervisor.applySettings(`settings changed: ${change.restart.join(', ')}`);
        if (restarted) this.showLoadProgress();
        else if (this.config.startup === 'onStartup') this.supervisor.start();
      }
    }
    if (change.hot.some((k) => INLINE_RESULT_SETTINGS.includes(k))) this.cache.clear();
    if (change.restart.length > 0) this._updateTaskKeys();
    if (change.hot.includes('inline.enable')) void this.setContext(ContextKeys.inlineEnabled, this.config.inlineEnabled);
    if (change.hot.includes('runtime.startup') && this.config.startup === 'onStartup' && this.config.engine === 'local') this.supervisor.start();
    if (change.hot.includes('rewrite.templates')) {
      for (const p of this.config.rewriteTemplates.problems) this.log.warn(p);
    }
    this.refreshStatus();
  }

  private async _reloadApiKey(): Promise<void> {
    const key = await this.extension.secrets.get(API_KEY_SECRET);
    if (key === this._apiKey) return;
    this._apiKey = key;
    if (this._engine?.kind === 'openai') {
      void this._engine.dispose();
      this._engine = undefined;
    }
  }

  async setApiKey(key: string | undefined): Promise<void> {
    if (key === undefined || key === '') await this.extension.secrets.delete(API_KEY_SECRET);
    else await this.extension.secrets.store(API_KEY_SECRET, key);
    await this._reloadApiKey();
  }

  /** With optComplete.debug.stateFile set, the debug state is written there after each change (for e2e harnesses). */
  private _scheduleStateFile(): void {
    const file = this.config.debugStateFile;
    if (file === '' || this._stateFileTimer) return;
    this._stateFileTimer = setTimeout(() => {
      this._stateFileTimer = undefined;
      void this.debugState()
        // Written aside and renamed, so a reader never sees half a file.
        .then(async (state) => {
          const tmp = `${file}.${process.pid}.tmp`;
          await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`);
          await rename(tmp, file);
        })
        .catch((err: unknown) => this.log.warn(`cannot write the debug state to ${file}: ${(err as Error).message}`));
    }, 100);
  }
}

export function toDisposable(d: { dispose(): void }): vscode.Disposable {
  return new vscode.Disposable(() => d.dispose());
}
