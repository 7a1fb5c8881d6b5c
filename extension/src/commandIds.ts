// Every command this extension contributes or calls, by id (package.json declares the same ids;
// test/extension/manifest.test.ts checks that they match).

export const Commands = {
  toggleInline: 'optComplete.toggle',
  toggleLanguage: 'optComplete.toggleLanguage',
  triggerInline: 'optComplete.trigger',
  generate: 'optComplete.generate',
  rewriteSelection: 'optComplete.rewriteSelection',
  classifySelection: 'optComplete.classifySelection',
  answerQuestion: 'optComplete.answerQuestion',
  rewriteAccept: 'optComplete.rewrite.accept',
  rewriteReject: 'optComplete.rewrite.reject',
  selectModel: 'optComplete.selectModel',
  selectDevice: 'optComplete.selectDevice',
  selectDtype: 'optComplete.selectDtype',
  startRuntime: 'optComplete.startRuntime',
  restartRuntime: 'optComplete.restartRuntime',
  stopRuntime: 'optComplete.stopRuntime',
  cancelLoad: 'optComplete.cancelLoad',
  showLog: 'optComplete.showLog',
  statusMenu: 'optComplete.statusMenu',
  setApiKey: 'optComplete.openai.setApiKey',
  clearApiKey: 'optComplete.openai.clearApiKey',
  openScratch: 'optComplete.walkthrough.openScratch',
  debugState: 'optComplete.debug.state',
  /** Internal: runs when an inline suggestion is accepted in full (counts acceptances). */
  inlineAccepted: 'optComplete.inline.accepted',
} as const;

export type CommandId = (typeof Commands)[keyof typeof Commands];

/** VS Code's own commands this extension calls. */
export const BuiltinCommands = {
  inlineSuggestTrigger: 'editor.action.inlineSuggest.trigger',
  diff: 'vscode.diff',
  setContext: 'setContext',
  openSettings: 'workbench.action.openSettings',
} as const;

/** Context keys set by this extension (used in package.json `when` clauses and walkthrough steps). */
export const ContextKeys = {
  runtimeReady: 'optComplete.runtimeReady',
  loading: 'optComplete.loading',
  inlineEnabled: 'optComplete.inlineEnabled',
  rewritePending: 'optComplete.rewritePending',
  firstCompletionShown: 'optComplete.firstCompletionShown',
  firstCompletionAccepted: 'optComplete.firstCompletionAccepted',
  /** The configured model has a sequence-classification head (from the runtime's info, remembered per model). */
  canClassify: 'optComplete.canClassify',
  /** The configured model has a question-answering head. */
  canAnswer: 'optComplete.canAnswer',
  /** False only when the configured model is known to have no language-model head. */
  canGenerate: 'optComplete.canGenerate',
} as const;
