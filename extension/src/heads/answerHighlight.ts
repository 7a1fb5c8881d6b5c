// The answer span in the document: selected (easy to copy), revealed, and marked with a
// decoration that also shows in the overview ruler, with the question and score on hover. The mark
// goes away when the document is edited (it would no longer be the model's answer) or another
// answer replaces it, and comes back when the document is shown again in another editor.

import * as vscode from 'vscode';

export interface ShownAnswer {
  uri: string;
  range: vscode.Range;
  hover: vscode.MarkdownString;
}

export class AnswerHighlight implements vscode.Disposable {
  private readonly _type = vscode.window.createTextEditorDecorationType({
    backgroundColor: new vscode.ThemeColor('editor.findMatchHighlightBackground'),
    border: '1px solid',
    borderColor: new vscode.ThemeColor('focusBorder'),
    borderRadius: '2px',
    overviewRulerColor: new vscode.ThemeColor('editorOverviewRuler.findMatchForeground'),
    overviewRulerLane: vscode.OverviewRulerLane.Center,
    rangeBehavior: vscode.DecorationRangeBehavior.ClosedClosed,
  });
  private _shown: ShownAnswer | undefined;
  private readonly _subs: vscode.Disposable[];

  constructor() {
    this._subs = [
      vscode.workspace.onDidChangeTextDocument((e) => {
        if (e.contentChanges.length > 0 && e.document.uri.toString() === this._shown?.uri) this.clear();
      }),
      vscode.workspace.onDidCloseTextDocument((d) => {
        if (d.uri.toString() === this._shown?.uri) this.clear();
      }),
      vscode.window.onDidChangeVisibleTextEditors((editors) => this._apply(editors)),
    ];
  }

  /** Marks, selects and reveals `range` in `editor`. */
  show(editor: vscode.TextEditor, range: vscode.Range, hover: vscode.MarkdownString): void {
    this.clear();
    this._shown = { uri: editor.document.uri.toString(), range, hover };
    this._apply(vscode.window.visibleTextEditors.includes(editor) ? vscode.window.visibleTextEditors : [editor]);
    editor.selection = new vscode.Selection(range.start, range.end);
    editor.revealRange(range, vscode.TextEditorRevealType.InCenterIfOutsideViewport);
  }

  /** What is marked now (for the debug state). */
  get shown(): { uri: string; start: vscode.Position; end: vscode.Position } | undefined {
    const s = this._shown;
    return s ? { uri: s.uri, start: s.range.start, end: s.range.end } : undefined;
  }

  clear(): void {
    if (!this._shown) return;
    const uri = this._shown.uri;
    this._shown = undefined;
    for (const e of vscode.window.visibleTextEditors) if (e.document.uri.toString() === uri) e.setDecorations(this._type, []);
  }

  private _apply(editors: readonly vscode.TextEditor[]): void {
    const s = this._shown;
    if (!s) return;
    for (const e of editors)
      if (e.document.uri.toString() === s.uri) e.setDecorations(this._type, [{ range: s.range, hoverMessage: s.hover }]);
  }

  dispose(): void {
    this.clear();
    for (const d of this._subs) d.dispose();
    this._type.dispose();
  }
}
