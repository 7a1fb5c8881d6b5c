// What the user is told about the runtime, in notifications: a failure once per reason with the
// button that fixes that kind of failure, a GPU that fell back to the CPU once per reason, a
// cancellable notification that follows a load (a download's progress), and the error every
// command shows with a "Show Log" button. The status bar says the rest (statusBar.ts).

import * as vscode from 'vscode';
import { Commands } from './commandIds.js';
import type { RuntimeState, RuntimeSupervisor } from './runtimeSupervisor.js';

/** The button a failed runtime's error offers: what fixes that kind of failure. */
const FAILURE_ACTIONS = {
  restart: { title: 'Restart Runtime', command: Commands.restartRuntime },
  model: { title: 'Choose Model…', command: Commands.selectModel },
  device: { title: 'Choose Device…', command: Commands.selectDevice },
} as const;

export interface NotificationAction {
  title: string;
  run: () => unknown;
}

export class RuntimeNotifications {
  private _loadNotification = false;
  private _lastFailureShown: string | undefined;
  /** Device fallback reasons already shown: each once, until forgetFallbacks(). */
  private readonly _fallbacksShown = new Set<string>();

  constructor(
    private readonly _supervisor: Pick<RuntimeSupervisor, 'state' | 'onDidChangeState' | 'cancelLoad'>,
    private readonly _log: vscode.LogOutputChannel,
  ) {}

  /** Shows an error with a "Show Log" button (and more actions). */
  async showError(message: string, ...actions: NotificationAction[]): Promise<void> {
    const all = [...actions, { title: 'Show Log', run: () => this._log.show() }];
    const choice = await vscode.window.showErrorMessage(`OPT Complete: ${message}`, ...all.map((a) => a.title));
    await all.find((a) => a.title === choice)?.run();
  }

  /** A cancellable notification following the current load until it ends. */
  showLoadProgress(): void {
    if (this._loadNotification || this._supervisor.state.kind !== 'loading') return;
    this._loadNotification = true;
    void vscode.window
      .withProgress(
        { location: vscode.ProgressLocation.Notification, title: 'OPT Complete', cancellable: true },
        (progress, token) =>
          new Promise<void>((resolve) => {
            const update = (s: RuntimeState) => {
              if (s.kind === 'loading') {
                const p = s.progress;
                progress.report({
                  message: p
                    ? `${p.message}${p.fraction !== undefined ? ` (${Math.round(p.fraction * 100)}%)` : ''}`
                    : `starting the runtime for ${s.model}`,
                });
                return;
              }
              sub.dispose();
              cancel.dispose();
              resolve();
            };
            const sub = this._supervisor.onDidChangeState(update);
            const cancel = token.onCancellationRequested(() => void this._supervisor.cancelLoad());
            update(this._supervisor.state);
          }),
      )
      .then(() => (this._loadNotification = false));
  }

  /** The notifications a runtime state calls for: a download's progress, a device fallback, a failure. */
  onRuntimeState(s: RuntimeState): void {
    if (s.kind === 'loading' && s.progress?.downloading) this.showLoadProgress();
    if (s.kind === 'ready') {
      this._lastFailureShown = undefined;
      // A GPU that did not start: the model runs (on the CPU), but slower than the user chose; say why once per reason.
      const fallback = s.info.deviceFallback;
      if (fallback && !this._fallbacksShown.has(fallback)) {
        this._fallbacksShown.add(fallback);
        this._log.warn(`device fallback: ${fallback}`);
        void vscode.window.showWarningMessage(`OPT Complete: ${fallback}`, 'Choose Device…', 'Show Log').then((pick) => {
          if (pick === 'Choose Device…') void vscode.commands.executeCommand(Commands.selectDevice);
          else if (pick === 'Show Log') void vscode.commands.executeCommand(Commands.showLog);
        });
      }
    }
    if (s.kind === 'failed' && this._lastFailureShown !== s.reason) {
      this._lastFailureShown = s.reason;
      const action = FAILURE_ACTIONS[s.fix];
      void this.showError(s.reason, { title: action.title, run: () => vscode.commands.executeCommand(action.command) });
    }
  }

  /** The user chose settings that restart the runtime: a GPU that still fails is news. */
  forgetFallbacks(): void {
    this._fallbacksShown.clear();
  }
}
