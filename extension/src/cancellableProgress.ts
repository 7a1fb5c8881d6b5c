// A command's run under a notification with a Cancel button: Cancel aborts the signal the work
// is given, so the runtime stops within a step.

import * as vscode from 'vscode';

export type ProgressReporter = vscode.Progress<{ message?: string; increment?: number }>;

/** `work` gets an AbortController the Cancel button aborts (the work may abort it too, e.g. to stop itself). */
export function withCancellableProgress<T>(
  title: string,
  work: (abort: AbortController, progress: ProgressReporter) => Promise<T>,
): Thenable<T> {
  return vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title, cancellable: true },
    async (progress, token) => {
      const abort = new AbortController();
      const sub = token.onCancellationRequested(() => abort.abort());
      try {
        return await work(abort, progress);
      } finally {
        sub.dispose();
      }
    },
  );
}
