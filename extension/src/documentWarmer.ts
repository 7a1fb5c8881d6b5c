// Warms the runtime's prefix cache before the first keystroke: when a document becomes the active
// editor, or the model finishes loading with one open, and the editor then stays idle for a moment,
// the document's text before the cursor (the prompt a completion there would send) is prefilled at
// the runtime's lowest priority. Typing, or any other request, cancels it; what it had prefilled
// stays in the cache. One document at a time. The local runtime only: a remote server has no warm-up.

import * as vscode from 'vscode';
import type { Config } from './config.js';
import type { WarmRecord } from './debugState.js';
import { type CompletionEngine, type EngineInfo, isCancellation } from './engines/completionEngine.js';
import { tasksOf } from './heads/modelTasks.js';
import { inlinePromptOptions, readCursor } from './inlineCompletionProvider.js';
import type { Logger } from './logger.js';
import type { RuntimeState } from './runtimeSupervisor.js';

/** How long the editor must stay idle (no edit, no cursor move) before the warm-up starts. */
export const WARM_IDLE_MS = 400;

/** A cursor move this soon after an edit is typing's own, not a move to somewhere else. */
const TYPING_MS = 1000;

/** The documents ghost text is offered in (main.ts registers the provider for the same schemes). */
const SCHEMES = new Set(['file', 'untitled', 'vscode-notebook-cell', 'vscode-remote']);

/** What the warmer uses, and nothing more (main.ts wires it). */
export interface WarmerDeps {
  config: Pick<
    Config,
    'engine' | 'inlineEnabledFor' | 'maxContextChars' | 'maxContextTokens' | 'inlineMaxNewTokens' | 'inlinePromptLookupTokens'
  >;
  engine(): CompletionEngine;
  runtimeInfo(): EngineInfo | undefined;
  onDidChangeRuntimeState: (listener: (s: RuntimeState) => void) => { dispose(): void };
  log: Pick<Logger, 'trace' | 'debug'>;
  /** The warm-up's outcome, for the debug state. */
  record(r: WarmRecord): void;
}

export class DocumentWarmer implements vscode.Disposable {
  private readonly _subscriptions: vscode.Disposable[] = [];
  private _timer: ReturnType<typeof setTimeout> | undefined;
  private _inFlight: AbortController | undefined;
  /** The last prompt warmed (document, version, cursor), so a refocus without changes sends nothing. */
  private _lastKey: string | undefined;
  private _lastEdit = -Infinity;

  constructor(private readonly _deps: WarmerDeps) {
    this._subscriptions.push(
      vscode.window.onDidChangeActiveTextEditor(() => this._schedule()),
      _deps.onDidChangeRuntimeState((s) => {
        if (s.kind !== 'ready') return;
        this._lastKey = undefined; // a new runtime's prefix cache is empty
        this._schedule();
      }),
      // Typing hands over to the inline provider (whose request would end the warm-up anyway).
      vscode.workspace.onDidChangeTextDocument((e) => {
        if (e.document !== vscode.window.activeTextEditor?.document || e.contentChanges.length === 0) return;
        this._lastEdit = performance.now();
        this._stop();
      }),
      // The cursor moved (a click, a jump) rather than with typing: warm up at the new place once the
      // editor settles. Cheap when the new prompt is within what is cached.
      vscode.window.onDidChangeTextEditorSelection((e) => {
        if (e.textEditor === vscode.window.activeTextEditor && performance.now() - this._lastEdit > TYPING_MS) this._schedule();
      }),
    );
    this._schedule();
  }

  private _schedule(): void {
    this._stop();
    this._timer = setTimeout(() => {
      this._timer = undefined;
      void this._warm();
    }, WARM_IDLE_MS);
  }

  private _stop(): void {
    if (this._timer !== undefined) clearTimeout(this._timer);
    this._timer = undefined;
    this._inFlight?.abort();
    this._inFlight = undefined;
  }

  private async _warm(): Promise<void> {
    const { config } = this._deps;
    const editor = vscode.window.activeTextEditor;
    if (!editor || !SCHEMES.has(editor.document.uri.scheme) || config.engine !== 'local') return;
    const info = this._deps.runtimeInfo();
    if (!info || !tasksOf(info)?.includes('generate') || !config.inlineEnabledFor(editor.document.languageId)) return;
    const engine = this._deps.engine();
    if (!engine.warm) return;
    const document = editor.document;
    const position = editor.selection.active;
    const key = `${document.uri.toString()}@${document.version}:${document.offsetAt(position)}`;
    if (key === this._lastKey) return;
    const { cursor } = readCursor(document, position, config.maxContextChars);
    if (cursor.prefix.trim() === '') return;

    const controller = new AbortController();
    this._inFlight = controller;
    const where = { at: new Date().toISOString(), uri: document.uri.toString(), line: position.line, character: position.character };
    try {
      const r = await engine.warm(
        {
          documentId: document.uri.toString(),
          prefix: cursor.prefix,
          maxContextTokens: config.maxContextTokens,
          options: inlinePromptOptions(config),
        },
        controller.signal,
      );
      this._lastKey = key;
      this._deps.record({ ...where, ...r, prefillMs: Math.round(r.prefillMs) });
      this._deps.log.trace(
        `warm-up: ${r.promptTokens - r.reusedTokens} of ${r.promptTokens} prompt tokens prefilled in ${r.prefillMs.toFixed(0)} ms (${document.uri.toString()})`,
      );
    } catch (err) {
      if (isCancellation(err)) {
        this._deps.record({ ...where, cancelled: true });
        return;
      }
      // Not worth a notification: the completion that follows reports any real failure.
      this._deps.record({ ...where, error: (err as Error).message });
      this._deps.log.debug(`warm-up failed: ${(err as Error).message}`);
    } finally {
      if (this._inFlight === controller) this._inFlight = undefined;
    }
  }

  dispose(): void {
    this._stop();
    for (const s of this._subscriptions) s.dispose();
  }
}
