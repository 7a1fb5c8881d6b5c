// The command table: every contributed command's handler, by id (commandIds.ts). Handlers are
// small; the features live in their own modules.

import * as vscode from 'vscode';
import { BuiltinCommands, type CommandId, Commands, ContextKeys } from './commandIds.js';
import type { Ctx } from './ctx.js';
import { generateCommand } from './generateCommand.js';
import type { AnswerHighlight } from './heads/answerHighlight.js';
import { answerQuestionCommand } from './heads/answerCommand.js';
import { classifySelectionCommand } from './heads/classifyCommand.js';
import { selectDeviceCommand, selectDtypeCommand, selectModelCommand } from './modelPicker.js';
import { rewriteSelectionCommand } from './rewrite/rewriteCommand.js';
import type { RewritePreview } from './rewrite/rewritePreview.js';
import { type DeviceSetting, type DtypeSetting, languageEnabled } from './settings.js';

type Handler = (...args: never[]) => unknown;

export function commandTable(ctx: Ctx, preview: RewritePreview, highlight: AnswerHighlight): Record<CommandId, Handler> {
  let accepted = false;
  return {
    [Commands.toggleInline]: async () => {
      const enabled = !ctx.config.inlineEnabled;
      await ctx.config.set('inline.enable', enabled);
      void vscode.window.setStatusBarMessage(`OPT Complete: inline completions ${enabled ? 'on' : 'paused'}`, 3000);
    },
    [Commands.toggleLanguage]: async (languageId?: string) => {
      const id = typeof languageId === 'string' ? languageId : vscode.window.activeTextEditor?.document.languageId;
      if (!id) return;
      const languages = { ...ctx.config.inlineLanguages };
      const enabled = !languageEnabled(languages, id);
      languages[id] = enabled;
      await ctx.config.set('inline.languages', languages);
      void vscode.window.setStatusBarMessage(`OPT Complete: inline completions ${enabled ? 'on' : 'off'} for ${id}`, 3000);
    },
    [Commands.triggerInline]: () => vscode.commands.executeCommand(BuiltinCommands.inlineSuggestTrigger),
    [Commands.generate]: (args?: { prompt?: string }) => generateCommand(ctx, args),
    [Commands.rewriteSelection]: (args?: { template?: string }) => rewriteSelectionCommand(ctx, preview, args),
    [Commands.classifySelection]: () => classifySelectionCommand(ctx),
    [Commands.answerQuestion]: (args?: { question?: string }) => answerQuestionCommand(ctx, highlight, args),
    [Commands.rewriteAccept]: () => preview.accept(),
    [Commands.rewriteReject]: () => preview.reject(),
    [Commands.selectModel]: (args?: { model?: string }) => selectModelCommand(ctx, args),
    [Commands.selectDevice]: (args?: { device?: DeviceSetting }) => selectDeviceCommand(ctx, args),
    [Commands.selectDtype]: (args?: { dtype?: DtypeSetting }) => selectDtypeCommand(ctx, args),
    [Commands.startRuntime]: () => {
      if (ctx.config.engine !== 'local')
        return void vscode.window.showInformationMessage(
          'OPT Complete: the engine is a remote server (optComplete.engine); there is no local runtime to start.',
        );
      ctx.startWithProgress();
    },
    [Commands.restartRuntime]: async () => {
      if (ctx.config.engine !== 'local') return;
      await ctx.supervisor.restart('asked by the user');
      ctx.notifications.showLoadProgress();
    },
    [Commands.stopRuntime]: () => ctx.supervisor.stop(),
    [Commands.cancelLoad]: () => ctx.supervisor.cancelLoad(),
    [Commands.showLog]: () => ctx.log.show(),
    [Commands.statusMenu]: () => statusMenu(ctx),
    [Commands.setApiKey]: async () => {
      const key = await vscode.window.showInputBox({
        title: 'OPT: API Key',
        prompt: `The key sent as a bearer token to ${ctx.config.openaiBaseUrl}; kept in VS Code's secret storage.`,
        password: true,
        ignoreFocusOut: true,
      });
      if (key !== undefined) await ctx.engines.setApiKey(key.trim());
    },
    [Commands.clearApiKey]: () => ctx.engines.setApiKey(undefined),
    [Commands.openScratch]: async () => {
      const doc = await vscode.workspace.openTextDocument({
        language: 'markdown',
        content: '# Notes\n\nThe best thing about working from home is ',
      });
      const editor = await vscode.window.showTextDocument(doc);
      const end = doc.lineAt(doc.lineCount - 1).range.end;
      editor.selection = new vscode.Selection(end, end);
    },
    [Commands.debugState]: async () => {
      const state = await ctx.debugState();
      ctx.log.debug(`debug state: ${JSON.stringify(state)}`);
      return state;
    },
    [Commands.inlineAccepted]: () => {
      ctx.debug.inlineCounters.accepted++;
      if (!accepted) {
        accepted = true;
        void ctx.contextKeys.set(ContextKeys.firstCompletionAccepted, true);
      }
    },
  };
}

interface MenuItem extends vscode.QuickPickItem {
  run?: () => unknown;
}

async function statusMenu(ctx: Ctx): Promise<void> {
  const c = ctx.config;
  const languageId = vscode.window.activeTextEditor?.document.languageId;
  const run =
    (id: CommandId, ...args: unknown[]) =>
    () =>
      vscode.commands.executeCommand(id, ...args);
  const state = ctx.supervisor.state.kind;
  const items: MenuItem[] = [
    {
      label: c.inlineEnabled ? '$(debug-pause) Pause Inline Completions' : '$(play) Resume Inline Completions',
      run: run(Commands.toggleInline),
    },
  ];
  if (languageId) {
    const on = languageEnabled(c.inlineLanguages, languageId);
    items.push({
      label: `$(symbol-key) ${on ? 'Disable' : 'Enable'} Inline Completions for ${languageId}`,
      run: run(Commands.toggleLanguage, languageId),
    });
  }
  // The features the model's head serves (all of them while that is not known yet, as the palette does).
  const tasks = ctx.knownTasks();
  if (tasks?.includes('generate') ?? true) {
    items.push(
      { label: '$(sparkle) Generate Text…', run: run(Commands.generate) },
      { label: '$(edit) Rewrite Selection…', run: run(Commands.rewriteSelection) },
    );
  }
  if (tasks?.includes('classify')) items.push({ label: '$(tag) Classify Selection', run: run(Commands.classifySelection) });
  if (tasks?.includes('answer'))
    items.push({ label: '$(question) Answer a Question About the Selection…', run: run(Commands.answerQuestion) });
  items.push(
    { label: '', kind: vscode.QuickPickItemKind.Separator },
    { label: '$(package) Choose Model…', description: c.model, run: run(Commands.selectModel) },
    { label: '$(circuit-board) Device…', description: c.device, run: run(Commands.selectDevice) },
    { label: '$(symbol-numeric) Precision…', description: c.dtype, run: run(Commands.selectDtype) },
  );
  if (c.engine === 'local') {
    if (state === 'loading') items.push({ label: '$(close) Cancel Loading', run: run(Commands.cancelLoad) });
    if (state === 'stopped' || state === 'held') items.push({ label: '$(play) Start Runtime', run: run(Commands.startRuntime) });
    else
      items.push(
        { label: '$(refresh) Restart Runtime', run: run(Commands.restartRuntime) },
        { label: '$(stop) Stop Runtime', run: run(Commands.stopRuntime) },
      );
  }
  items.push(
    { label: '$(output) Show Log', run: run(Commands.showLog) },
    {
      label: '$(settings-gear) Settings',
      run: () => vscode.commands.executeCommand(BuiltinCommands.openSettings, '@ext:opt-complete.opt-complete'),
    },
  );
  const pick = await vscode.window.showQuickPick(items, { title: 'OPT Complete' });
  await pick?.run?.();
}
