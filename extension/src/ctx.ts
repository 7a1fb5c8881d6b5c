// The extension's context, after rust-analyzer's Ctx: the composition root. It builds the parts
// (configuration, log, runtime supervisor, engine choice, status bar, completion cache, context
// keys, notifications, debug records) and wires them to each other and to VS Code's events: a
// runtime state or settings change reaches the parts that react to it, and the status bar and the
// debug state file follow. Extension-lifetime disposables go through pushExtCleanup; the runtime's
// lifecycle is the supervisor's.

import * as vscode from 'vscode';
import { Commands, ContextKeys } from './commandIds.js';
import { CompletionCache } from './completion/completionCache.js';
import { Config } from './config.js';
import { ContextKeyStore } from './contextKeys.js';
import { DebugRecords, type DebugState, type InlineRecord, StateFileWriter, collectDebugState } from './debugState.js';
import { EngineChoice } from './engineChoice.js';
import type { CompletionEngine, EngineInfo, ModelTask } from './engines/completionEngine.js';
import { modelKind as modelKindOf, tasksOf } from './heads/modelTasks.js';
import { ModelTaskMemo } from './modelTaskMemo.js';
import { runtimeLaunch } from './runtimeLaunch.js';
import { RuntimeNotifications } from './runtimeNotifications.js';
import { type RuntimeState, RuntimeSupervisor } from './runtimeSupervisor.js';
import { INLINE_RESULT_SETTINGS } from './settings.js';
import { StatusBar } from './statusBar.js';

export class Ctx implements vscode.Disposable {
  readonly config = new Config();
  readonly log: vscode.LogOutputChannel;
  readonly supervisor: RuntimeSupervisor;
  readonly engines: EngineChoice;
  readonly cache = new CompletionCache();
  readonly statusBar: StatusBar;
  readonly contextKeys = new ContextKeyStore();
  readonly notifications: RuntimeNotifications;
  readonly debug = new DebugRecords();

  private readonly _extCleanup: vscode.Disposable[] = [];
  private readonly _taskMemo: ModelTaskMemo;
  private readonly _stateFile: StateFileWriter;
  private _busy: string | undefined;
  private _stopped = false;
  private _shownOnce = false;

  constructor(readonly extension: vscode.ExtensionContext) {
    this.log = vscode.window.createOutputChannel('OPT Complete', { log: true });
    this.pushExtCleanup(this.log);
    this.supervisor = new RuntimeSupervisor({
      launch: () =>
        runtimeLaunch({
          extensionPath: extension.extensionPath,
          nodePath: this.config.nodePath,
          execPath: process.execPath,
          versions: process.versions,
          env: process.env,
        }),
      init: () => this.config.runtimeInit(),
      log: this.log,
    });
    this.engines = new EngineChoice({
      config: this.config,
      supervisor: this.supervisor,
      secrets: extension.secrets,
      log: this.log,
      onDidChangeHealth: () => this.refreshStatus(),
    });
    this.notifications = new RuntimeNotifications(this.supervisor, this.log);
    this._taskMemo = new ModelTaskMemo(extension.globalState);
    this._stateFile = new StateFileWriter(() => this.debugState(), this.log);
    this.statusBar = new StatusBar();
    this.pushExtCleanup(this.statusBar);
    this.pushExtCleanup(toDisposable(this.supervisor.onDidChangeState((s) => this._onRuntimeState(s))));
    this.pushExtCleanup(vscode.workspace.onDidChangeConfiguration((e) => void this._onConfigChange(e)));
    this.pushExtCleanup(vscode.window.onDidChangeActiveTextEditor(() => this.refreshStatus()));
    this.pushExtCleanup(vscode.workspace.onDidCloseTextDocument((d) => this.cache.clear(d.uri.toString())));
  }

  pushExtCleanup(d: vscode.Disposable): void {
    this._extCleanup.push(d);
  }

  /** Reads the API key, applies the startup setting and shows the first status. */
  async start(): Promise<void> {
    await this.engines.loadApiKey();
    this.refreshStatus();
    this._updateTaskKeys();
    void this.contextKeys.set(ContextKeys.inlineEnabled, this.config.inlineEnabled);
    if (this.config.engine === 'local' && this.config.startup === 'onStartup') this.supervisor.start();
  }

  /** The engine for the current `optComplete.engine` setting (created on first use). */
  engine(): CompletionEngine {
    return this.engines.current();
  }

  /** Remote engine health, from the outcome of its requests. */
  noteEngineOutcome(err: unknown): void {
    this.engines.noteOutcome(err);
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

  recordInline(record: InlineRecord): void {
    this.debug.inline = record;
    if (record.text !== undefined && !this._shownOnce) {
      this._shownOnce = true;
      void this.contextKeys.set(ContextKeys.firstCompletionShown, true);
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
    this.notifications.showLoadProgress();
  }

  refreshStatus(): void {
    if (this._stopped) return;
    const languageId = vscode.window.activeTextEditor?.document.languageId;
    const inline = this.debug.inline;
    this.statusBar.update({
      engine: this.config.engine,
      runtime: this.supervisor.state,
      model: this.config.model,
      modelKind: this.runtimeInfo && !tasksOf(this.runtimeInfo)?.includes('generate') ? modelKindOf(this.runtimeInfo) : undefined,
      inline: {
        enabled: this.config.inlineEnabled,
        languageEnabled: languageId === undefined || this.config.inlineEnabledFor(languageId),
        languageId,
      },
      busy: this._busy,
      last:
        inline?.source === 'engine'
          ? { latencyMs: inline.latencyMs, tokensPerSecond: inline.tokensPerSecond, tokensPerPass: inline.tokensPerPass }
          : undefined,
      remoteError: this.engines.remoteError,
    });
    this._stateFile.schedule(this.config.debugStateFile);
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
    return info ? tasksOf(info) : this._taskMemo.recall(this.config.runtimeInit().model);
  }

  /** The `when` keys of the head commands (and of Generate/Rewrite in menus) from knownTasks(). */
  private _updateTaskKeys(): void {
    const tasks = this.knownTasks();
    void this.contextKeys.set(ContextKeys.canClassify, tasks?.includes('classify') ?? false);
    void this.contextKeys.set(ContextKeys.canAnswer, tasks?.includes('answer') ?? false);
    void this.contextKeys.set(ContextKeys.canGenerate, tasks?.includes('generate') ?? true);
  }

  /** The engine for a command the user ran, or undefined after saying why it is unavailable. */
  engineForCommand(): CompletionEngine | undefined {
    const s = this.supervisor.state;
    if (this.config.engine === 'local' && s.kind === 'failed') {
      void this.notifications.showError(s.reason, {
        title: 'Restart Runtime',
        run: () => vscode.commands.executeCommand(Commands.restartRuntime),
      });
      return undefined;
    }
    if (this.config.engine === 'local' && s.kind === 'held') this.supervisor.start();
    return this.engine();
  }

  /** Everything the e2e harness and bug reports need, as plain JSON. */
  debugState(): Promise<DebugState> {
    return collectDebugState({
      extensionVersion: (this.extension.extension.packageJSON as { version?: string }).version,
      config: this.config,
      supervisor: this.supervisor,
      engine: () => this.engine(),
      statusBar: this.statusBar,
      contextKeys: () => this.contextKeys.snapshot(),
      cacheStats: () => this.cache.stats,
      activeLanguage: () => vscode.window.activeTextEditor?.document.languageId,
      busy: () => this._busy,
      tasks: () => this.knownTasks(),
      records: this.debug,
    });
  }

  /** Deactivation: stops the runtime and awaits its exit, then disposes everything. */
  async stopAndDispose(): Promise<void> {
    this._stopped = true;
    this._stateFile.dispose();
    await this.engines.dispose();
    await this.supervisor.dispose();
    this.dispose();
  }

  dispose(): void {
    for (const d of this._extCleanup.splice(0).reverse()) d.dispose();
  }

  private _onRuntimeState(s: RuntimeState): void {
    void this.contextKeys.set(ContextKeys.runtimeReady, s.kind === 'ready');
    void this.contextKeys.set(ContextKeys.loading, s.kind === 'loading');
    if (s.kind === 'ready') this._taskMemo.remember(s.info);
    this.notifications.onRuntimeState(s);
    this._updateTaskKeys();
    if (s.kind !== 'ready') this.cache.clear();
    this.refreshStatus();
  }

  private async _onConfigChange(e: vscode.ConfigurationChangeEvent): Promise<void> {
    const change = this.config.changes(e);
    if (change.restart.length === 0 && change.hot.length === 0) return;
    this.log.info(`settings changed: ${[...change.restart, ...change.hot].join(', ')}${change.restart.length ? ' (restart)' : ''}`);
    if (change.restart.length > 0) {
      this.cache.clear();
      this.notifications.forgetFallbacks();
      this.engines.onRestartSettings();
      if (this.config.engine === 'openai') {
        if (this.supervisor.state.kind !== 'stopped') await this.supervisor.stop();
      } else {
        const restarted = await this.supervisor.applySettings(`settings changed: ${change.restart.join(', ')}`);
        if (restarted) this.notifications.showLoadProgress();
        else if (this.config.startup === 'onStartup') this.supervisor.start();
      }
    }
    if (change.hot.some((k) => INLINE_RESULT_SETTINGS.includes(k))) this.cache.clear();
    if (change.restart.length > 0) this._updateTaskKeys();
    if (change.hot.includes('inline.enable')) void this.contextKeys.set(ContextKeys.inlineEnabled, this.config.inlineEnabled);
    if (change.hot.includes('runtime.startup') && this.config.startup === 'onStartup' && this.config.engine === 'local')
      this.supervisor.start();
    if (change.hot.includes('rewrite.templates')) {
      for (const p of this.config.rewriteTemplates.problems) this.log.warn(p);
    }
    this.refreshStatus();
  }
}

function toDisposable(d: { dispose(): void }): vscode.Disposable {
  return new vscode.Disposable(() => d.dispose());
}
