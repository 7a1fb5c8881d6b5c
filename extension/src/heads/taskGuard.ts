// Before a feature runs: does the configured model have the head it needs? When the loaded model
// is known not to, the user is told which checkpoint type is needed and offered the model picker,
// instead of a request that can only fail (or, for ghost text, a stream of errors).

import * as vscode from 'vscode';
import { Commands } from '../commandIds.js';
import type { Ctx } from '../ctx.js';
import type { ModelTask } from '../engines/completionEngine.js';
import { TASK_ARCHITECTURE, tasksOf, wrongModelMessage } from './modelTasks.js';

const CHOOSE_MODEL = 'Choose Model…';

/**
 * True when `task` may run: the engine can serve it and the loaded model (if loaded) has its head.
 * Otherwise says why (with a "Choose Model…" button) and returns false. A model not loaded yet is
 * given the benefit of the doubt: the request itself then fails with WrongModelTypeError.
 */
export function canRun(ctx: Ctx, task: ModelTask): boolean {
  if (task !== 'generate' && ctx.config.engine !== 'local') {
    void vscode.window.showInformationMessage(
      `OPT Complete: this needs the local runtime with an ${TASK_ARCHITECTURE[task]} checkpoint; the engine is an OpenAI-compatible server (optComplete.engine), which only completes text.`,
    );
    return false;
  }
  const info = ctx.runtimeInfo;
  if (info && !tasksOf(info)?.includes(task)) {
    void showWrongModel(ctx, wrongModelMessage(task, info.modelId, info));
    return false;
  }
  return true;
}

/** The warning for a feature the model's head cannot serve, offering the model picker. */
export async function showWrongModel(ctx: Ctx, message: string): Promise<void> {
  ctx.log.info(message);
  const choice = await vscode.window.showWarningMessage(`OPT Complete: ${message}`, CHOOSE_MODEL);
  if (choice === CHOOSE_MODEL) await vscode.commands.executeCommand(Commands.selectModel);
}
