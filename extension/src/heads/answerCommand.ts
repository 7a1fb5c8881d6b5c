// "Answer a question about the selection": the question from an input box, the selection (the
// current line when nothing is selected) as the context of an OPTForQuestionAnswering model, and
// the best answer span found in it selected and highlighted in the document, with its score. The
// span's offsets are into the text the model saw (\n line breaks); textSpans.ts maps them back.

import * as vscode from 'vscode';
import type { Ctx } from '../ctx.js';
import { WrongModelTypeError, isCancellation } from '../engines/completionEngine.js';
import { LocalRuntimeEngine } from '../engines/localRuntimeEngine.js';
import type { AnswerHighlight } from './answerHighlight.js';
import { answerSummary, formatScore } from './headResults.js';
import { commandTarget } from './commandTarget.js';
import { canRun, showWrongModel } from './taskGuard.js';
import { spanInDocument, toModelText } from './textSpans.js';
import { withCancellableProgress } from '../cancellableProgress.js';

export interface AnswerArgs {
  /** Skips the input box (keybindings with args). */
  question?: string;
}

export async function answerQuestionCommand(ctx: Ctx, highlight: AnswerHighlight, args?: AnswerArgs): Promise<void> {
  if (!vscode.window.activeTextEditor) return void commandTarget('the text that holds the answer');
  // Before the question is asked: a model known to have no QA head would waste the typing.
  if (!canRun(ctx, 'answer')) return;
  const target = commandTarget('the text that holds the answer');
  if (!target) return;
  const { document, range, text: original, whole } = target;
  const where = whole ? `line ${range.start.line + 1}` : `the selection (${original.length} characters)`;
  const asked =
    typeof args?.question === 'string'
      ? args.question
      : await vscode.window.showInputBox({
          title: 'OPT: Answer a Question About the Selection',
          prompt: `The answer is looked for in ${where} and highlighted there.`,
          placeHolder: 'Your question',
          ignoreFocusOut: true,
        });
  const question = asked?.trim();
  if (!question) return;
  const engine = ctx.engineForCommand();
  if (!(engine instanceof LocalRuntimeEngine)) return;

  const version = document.version;
  const selectionStart = document.offsetAt(range.start);
  const context = toModelText(original);
  const busy = ctx.beginBusy('answering');
  const started = performance.now();
  try {
    const result = await withCancellableProgress('OPT: Answering…', (abort) =>
      engine.answer({ question, context: context.text }, abort.signal),
    );
    busy.dispose();
    const seconds = (performance.now() - started) / 1000;
    const best = result.answers[0];
    const span = best && spanInDocument(context, selectionStart, best.start, best.end);
    if (!best || !span) {
      ctx.debug.answer = { status: 'no-answer', question, answers: result.answers, seconds };
      ctx.log.info(
        `answer: none for ${JSON.stringify(question)}${best ? ` (the runtime's span [${best.start}, ${best.end}) is empty or outside the ${context.text.length} characters)` : ''}`,
      );
      void vscode.window.showInformationMessage(`OPT Complete: no answer to "${question}" was found in ${where}.`);
      return;
    }
    if (document.isClosed || (document.version !== version && document.getText(range) !== original)) {
      ctx.debug.answer = { status: 'stale', question, answer: best };
      void vscode.window.showWarningMessage(
        'OPT Complete: the document changed while the answer was being looked for, so it is not highlighted. Run the command again.',
      );
      return;
    }
    const answerRange = new vscode.Range(document.positionAt(span.start), document.positionAt(span.end));
    const shownIn =
      vscode.window.visibleTextEditors.find((e) => e.document === document) ?? (await vscode.window.showTextDocument(document));
    const hover = new vscode.MarkdownString();
    hover.appendText(`OPT answer (score ${formatScore(best.score)}) to: ${question}`);
    highlight.show(shownIn, answerRange, hover);
    const pos = (p: vscode.Position) => ({ line: p.line, character: p.character });
    ctx.debug.answer = {
      status: 'answered',
      question,
      answer: best,
      answers: result.answers,
      highlighted: { start: pos(answerRange.start), end: pos(answerRange.end), text: document.getText(answerRange) },
      summary: answerSummary(best, answerRange.start.line),
      seconds,
    };
    ctx.log.info(`answer: ${answerSummary(best, answerRange.start.line)} in ${seconds.toFixed(2)} s`);
    void vscode.window.showInformationMessage(`OPT answer: ${answerSummary(best, answerRange.start.line)}`);
  } catch (err) {
    if (isCancellation(err)) {
      ctx.debug.answer = { status: 'cancelled', question };
      return;
    }
    if (err instanceof WrongModelTypeError) {
      ctx.debug.answer = { status: 'wrong-model', message: err.message };
      void showWrongModel(ctx, err.message);
      return;
    }
    ctx.debug.answer = { status: 'failed', question, message: (err as Error).message };
    ctx.log.error(`answer failed: ${(err as Error).message}`);
    void ctx.notifications.showError(`answering failed: ${(err as Error).message}`);
  } finally {
    busy.dispose();
  }
}
