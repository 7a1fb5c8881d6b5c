// The engine the features talk to, for the `optComplete.engine` setting: the local runtime (through
// the supervisor) or an OpenAI-compatible server with the API key from VS Code's secret storage.
// Created on first use, replaced when the setting, the server's address or model, or the key
// changes; and the remote server's health, from the outcome of its requests, for the status bar.

import type * as vscode from 'vscode';
import type { Config } from './config.js';
import { type CompletionEngine, isCancellation } from './engines/completionEngine.js';
import { LocalRuntimeEngine } from './engines/localRuntimeEngine.js';
import { OpenAiEngine } from './engines/openaiEngine.js';
import type { Logger } from './logger.js';
import type { RuntimeSupervisor } from './runtimeSupervisor.js';

/** The secret storage key of the remote server's API key. */
const API_KEY_SECRET = 'optComplete.openai.apiKey';

export interface EngineChoiceDeps {
  config: Pick<Config, 'engine' | 'openaiBaseUrl' | 'openaiModel'>;
  supervisor: RuntimeSupervisor;
  secrets: vscode.SecretStorage;
  log: Pick<Logger, 'info'>;
  /** The remote server's health changed (the status bar shows it). */
  onDidChangeHealth(): void;
}

export class EngineChoice {
  private _engine: CompletionEngine | undefined;
  private _apiKey: string | undefined;
  private _remoteError: string | undefined;
  private readonly _subscription: vscode.Disposable;

  constructor(private readonly _deps: EngineChoiceDeps) {
    this._subscription = _deps.secrets.onDidChange((e) => void (e.key === API_KEY_SECRET && this.loadApiKey()));
  }

  /** The engine for the current `optComplete.engine` setting (created on first use). */
  current(): CompletionEngine {
    const { config } = this._deps;
    const kind = config.engine;
    if (this._engine?.kind !== kind) {
      void this._engine?.dispose();
      if (kind === 'openai') {
        this._engine = new OpenAiEngine({ baseUrl: config.openaiBaseUrl, apiKey: this._apiKey, model: config.openaiModel || undefined });
        this._deps.log.info(`engine: OpenAI-compatible server at ${config.openaiBaseUrl}${this._apiKey ? ' (with API key)' : ''}`);
      } else {
        this._engine = new LocalRuntimeEngine(this._deps.supervisor);
      }
    }
    return this._engine;
  }

  /** The remote server's last error, undefined while its requests succeed. */
  get remoteError(): string | undefined {
    return this._remoteError;
  }

  /** Remote engine health, from the outcome of its requests (undefined: success). */
  noteOutcome(err: unknown): void {
    if (this._deps.config.engine !== 'openai') return;
    const next = err === undefined || isCancellation(err) ? undefined : (err as Error).message;
    if (next !== this._remoteError) {
      this._remoteError = next;
      this._deps.onDidChangeHealth();
    }
  }

  /** A setting that restarts the engine changed: a different engine, or the server's address or model, gets a fresh client on next use. */
  onRestartSettings(): void {
    const kind = this._deps.config.engine;
    if (this._engine && (this._engine.kind !== kind || kind === 'openai')) {
      void this._engine.dispose();
      this._engine = undefined;
      this._remoteError = undefined;
    }
  }

  /** Reads the API key; a changed key means a new remote client. */
  async loadApiKey(): Promise<void> {
    const key = await this._deps.secrets.get(API_KEY_SECRET);
    if (key === this._apiKey) return;
    this._apiKey = key;
    if (this._engine?.kind === 'openai') {
      void this._engine.dispose();
      this._engine = undefined;
    }
  }

  async setApiKey(key: string | undefined): Promise<void> {
    if (key === undefined || key === '') await this._deps.secrets.delete(API_KEY_SECRET);
    else await this._deps.secrets.store(API_KEY_SECRET, key);
    await this.loadApiKey();
  }

  async dispose(): Promise<void> {
    this._subscription.dispose();
    await this._engine?.dispose().catch(() => undefined);
  }
}
