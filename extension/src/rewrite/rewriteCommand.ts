// "Rewrite selection": pick a template, run its few-shot prompt on the selection (the current line
// when nothing is selected), and hand the result to the diff preview. A result computed while the
// document changed under it is refused, with the reason.

import * as vscode from 'vscode';
import type { Ctx } from '../ctx.js';
import { WrongModelTypeError, isCancellation } from '../engines/completionEngine.js';
import { canRun, showWrongModel } from '../heads/taskGuard.js';
import type { RewritePreview } from './rewritePreview.js';
import { type RewriteTemplate, buildRewritePrompt, extractRewrite, rewriteTokenBudget } from './rewriteTemplates.js';
import { withCancellableProgress } from '../cancellableProgress.js';

export interface RewriteArgs {
  /** A template id; skips the picker (e2e tests, keybindings with args). */
  template?: string;
}

export async function rewriteSelectionCommand(ctx: Ctx, preview: RewritePreview, args?: RewriteArgs): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    void vscode.window.showInformationMessage('OPT Complete: select the text to rewrite in an editor.');
    return;
  }
  // Rewriting generates text: a classifier or QA model cannot; say so before the template picker.
  if (!canRun(ctx, 'generate')) return;
  const document = editor.document;
  let range: vscode.Range = editor.selection;
  if (range.isEmpty) range = document.lineAt(editor.selection.active.line).range;
  const original = document.getText(range);
  if (original.trim() === '') {
    void vscode.window.showInformationMessage('OPT Complete: select the text to rewrite.');
    return;
  }

  const { templates, problems } = ctx.config.rewriteTemplates;
  for (const p of problems) ctx.log.warn(p);
  let template: RewriteTemplate | undefined;
  if (typeof args?.template === 'string') {
    template = templates.find((t) => t.id === args.template);
    if (!template) {
      void vscode.window.showErrorMessage(
        `OPT Complete: no rewrite template "${args.template}" (have: ${templates.map((t) => t.id).join(', ')}).`,
      );
      return;
    }
  } else {
    const pick = await vscode.window.showQuickPick(
      templates.map((t) => ({ label: t.label, description: t.description, template: t })),
      { title: 'OPT: Rewrite Selection', placeHolder: 'How should the selection be rewritten?' },
    );
    template = pick?.template;
  }
  if (!template) return;
  const engine = ctx.engineForCommand();
  if (!engine) return;

  const version = document.version;
  const prompt = buildRewritePrompt(template, original);
  const busy = ctx.beginBusy(template.label.toLowerCase());
  const started = performance.now();
  const stop = template.stop;
  try {
    const result = await withCancellableProgress(`OPT: ${template.label}…`, (abort) =>
      engine.run(
        {
          kind: 'rewrite',
          prompt,
          options: {
            max_new_tokens: rewriteTokenBudget(original, ctx.config.rewriteMaxNewTokens),
            do_sample: false,
            stop_strings: [stop],
            // A rewrite copies most of its input: prompt lookup proposes it, the model verifies (same text, fewer passes).
            ...(ctx.config.rewritePromptLookupTokens > 0 ? { prompt_lookup_num_tokens: ctx.config.rewritePromptLookupTokens } : {}),
          },
        },
        { signal: abort.signal, onText: (_d, soFar) => soFar.includes(stop) },
      ),
    );
    busy.dispose();
    ctx.noteEngineOutcome(undefined);
    const seconds = (performance.now() - started) / 1000;
    ctx.log.info(`rewrite "${template.label}": ${result.completionTokens} tokens in ${seconds.toFixed(1)} s, ${result.finishReason}`);
    const outcome = extractRewrite(template, original, result.text, result.finishReason !== 'length');
    if (!outcome.ok) {
      ctx.debug.rewrite = { label: template.label, status: 'no-result', reason: outcome.reason, raw: result.text };
      void vscode.window.showWarningMessage(`OPT Complete: ${outcome.reason}.`);
      return;
    }
    if (document.isClosed || (document.version !== version && document.getText(range) !== original)) {
      ctx.debug.rewrite = { label: template.label, status: 'stale', proposed: outcome.text };
      void vscode.window.showWarningMessage(
        'OPT Complete: the document changed while the rewrite was being generated, so the result was discarded. Run "Rewrite Selection" again.',
      );
      return;
    }
    await preview.propose({ document, range, original, proposed: outcome.text, version: document.version, label: template.label });
  } catch (err) {
    if (isCancellation(err)) {
      ctx.debug.rewrite = { label: template.label, status: 'cancelled' };
      return;
    }
    if (err instanceof WrongModelTypeError) {
      ctx.debug.rewrite = { label: template.label, status: 'wrong-model', reason: err.message };
      void showWrongModel(ctx, err.message);
      return;
    }
    ctx.noteEngineOutcome(err);
    ctx.log.error(`rewrite failed: ${(err as Error).message}`);
    void ctx.notifications.showError(`rewrite failed: ${(err as Error).message}`);
  } finally {
    busy.dispose();
  }
}
