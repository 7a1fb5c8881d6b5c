// The text a head command works on: the selection, or the cursor's line when nothing is selected.
// Says why and returns undefined when there is no editor or only whitespace to work on.

import * as vscode from 'vscode';

export interface CommandTarget {
  editor: vscode.TextEditor;
  document: vscode.TextDocument;
  range: vscode.Range;
  text: string;
  /** Nothing was selected: the target is the cursor's line. */
  whole: boolean;
}

/** `what` completes "select …", e.g. "the text to classify". */
export function commandTarget(what: string): CommandTarget | undefined {
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    void vscode.window.showInformationMessage(`OPT Complete: select ${what} in an editor.`);
    return undefined;
  }
  const document = editor.document;
  const whole = editor.selection.isEmpty;
  const range = whole ? document.lineAt(editor.selection.active.line).range : editor.selection;
  const text = document.getText(range);
  if (text.trim() === '') {
    void vscode.window.showInformationMessage(`OPT Complete: select ${what} (the current line is empty).`);
    return undefined;
  }
  return { editor, document, range, text, whole };
}
