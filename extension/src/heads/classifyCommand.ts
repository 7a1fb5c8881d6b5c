// "Classify selection": the selection (the current line when nothing is selected) goes to an
// OPTForSequenceClassification model; every label comes back with its score and is listed best
// first in a quick pick whose title is the prediction, so the whole distribution is seen at once.

import * as vscode from 'vscode';
import type { Ctx } from '../ctx.js';
import { WrongModelTypeError, isCancellation } from '../engines/completionEngine.js';
import { LocalRuntimeEngine } from '../engines/localRuntimeEngine.js';
import { classificationView } from './headResults.js';
import { commandTarget } from './commandTarget.js';
import { canRun, showWrongModel } from './taskGuard.js';
import { toModelText } from './textSpans.js';
import { withCancellableProgress } from '../cancellableProgress.js';

const PROBLEM_TYPES: Record<string, string> = {
  single_label_classification: 'probabilities (softmax)',
  multi_label_classification: 'independent probabilities (sigmoid): every label at 50% or more applies',
  regression: 'the raw value (regression)',
};

export async function classifySelectionCommand(ctx: Ctx): Promise<void> {
  if (!vscode.window.activeTextEditor) return void commandTarget('the text to classify');
  if (!canRun(ctx, 'classify')) return;
  const target = commandTarget('the text to classify');
  if (!target) return;
  const { range, text: original, whole } = target;
  const engine = ctx.engineForCommand();
  if (!(engine instanceof LocalRuntimeEngine)) return;

  const text = toModelText(original).text;
  const busy = ctx.beginBusy('classifying');
  const started = performance.now();
  try {
    const result = await withCancellableProgress('OPT: Classifying…', (abort) => engine.classify({ text }, abort.signal));
    busy.dispose();
    const view = classificationView(result);
    const seconds = (performance.now() - started) / 1000;
    ctx.debug.classify = {
      status: 'classified',
      text: text.slice(0, 200),
      problemType: result.problemType,
      labels: result.labels,
      summary: view.summary,
      rows: view.rows,
      seconds,
    };
    ctx.log.info(`classify: ${view.summary} (${result.labels.length} labels, ${result.problemType}) in ${seconds.toFixed(2)} s`);
    const where = whole ? `line ${range.start.line + 1}` : 'the selection';
    // Not awaited: the command is done once the scores show; the picker only closes.
    void vscode.window.showQuickPick(
      view.rows.map((r) => ({ label: `${r.predicted ? '$(check)' : '$(blank)'} ${r.label}`, description: r.text })),
      {
        title: `OPT: ${view.summary}`,
        placeHolder: `Scores of ${where}: ${PROBLEM_TYPES[result.problemType] ?? result.problemType}, highest first`,
        matchOnDescription: true,
      },
    );
  } catch (err) {
    if (isCancellation(err)) {
      ctx.debug.classify = { status: 'cancelled' };
      return;
    }
    if (err instanceof WrongModelTypeError) {
      ctx.debug.classify = { status: 'wrong-model', message: err.message };
      void showWrongModel(ctx, err.message);
      return;
    }
    ctx.debug.classify = { status: 'failed', message: (err as Error).message };
    ctx.log.error(`classify failed: ${(err as Error).message}`);
    void ctx.notifications.showError(`classification failed: ${(err as Error).message}`);
  } finally {
    busy.dispose();
  }
}
