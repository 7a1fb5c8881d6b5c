// The extension's entry point, kept thin: build the context, register the commands and the
// inline-completion provider, start. Deactivation stops the runtime and waits for it to exit.

import * as vscode from 'vscode';
import { commandTable } from './commands.js';
import { Ctx } from './ctx.js';
import { DocumentWarmer } from './documentWarmer.js';
import { AnswerHighlight } from './heads/answerHighlight.js';
import { InlineCompletionProvider } from './inlineCompletionProvider.js';
import { RewritePreview } from './rewrite/rewritePreview.js';

let ctx: Ctx | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  ctx = new Ctx(context);
  const preview = new RewritePreview(ctx);
  ctx.pushExtCleanup(preview);
  const highlight = new AnswerHighlight();
  ctx.pushExtCleanup(highlight);
  ctx.debug.highlightedAnswer = () => highlight.shown;
  for (const [id, handler] of Object.entries(commandTable(ctx, preview, highlight))) {
    ctx.pushExtCleanup(vscode.commands.registerCommand(id, handler));
  }
  const live = ctx; // the module's `ctx` is cleared on deactivation; these closures keep this one
  const provider = new InlineCompletionProvider({
    config: live.config,
    cache: live.cache,
    counters: live.debug.inlineCounters,
    log: live.log,
    runtimeInfo: () => live.runtimeInfo,
    engine: () => live.engine(),
    noteEngineOutcome: (err) => live.noteEngineOutcome(err),
    record: (r) => live.recordInline(r),
  });
  ctx.pushExtCleanup(provider);
  const documents: vscode.DocumentSelector = [
    { scheme: 'file' },
    { scheme: 'untitled' },
    { scheme: 'vscode-notebook-cell' },
    { scheme: 'vscode-remote' },
  ];
  ctx.pushExtCleanup(vscode.languages.registerInlineCompletionItemProvider(documents, provider));
  live.pushExtCleanup(
    new DocumentWarmer({
      config: live.config,
      engine: () => live.engine(),
      runtimeInfo: () => live.runtimeInfo,
      onDidChangeRuntimeState: live.supervisor.onDidChangeState,
      log: live.log,
      record: (r) => (live.debug.warm = r),
    }),
  );
  await ctx.start();
  // Last: the e2e harness waits for this line before typing (text typed earlier gets no ghost text).
  ctx.log.info('activated');
}

export async function deactivate(): Promise<void> {
  const c = ctx;
  ctx = undefined;
  await c?.stopAndDispose();
}
