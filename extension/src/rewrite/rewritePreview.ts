// A proposed rewrite waiting for the user: shown as a diff between two read-only virtual documents
// (the document as it is, and as it would be), with Accept / Reject in a notification and in the
// diff editor's title bar. Nothing in the user's document changes until Accept, and Accept refuses
// if the document changed since the rewrite was computed.

import { posix } from 'node:path';
import * as vscode from 'vscode';
import { ContextKeys } from '../commandIds.js';
import type { Ctx } from '../ctx.js';

export const REWRITE_SCHEME = 'opt-complete-rewrite';

export interface Proposal {
  document: vscode.TextDocument;
  range: vscode.Range;
  original: string;
  proposed: string;
  /** The document version the proposal was computed against (checked at Accept). */
  version: number;
  label: string;
}

interface Pending extends Proposal {
  id: number;
  left: vscode.Uri;
  right: vscode.Uri;
}

export class RewritePreview implements vscode.TextDocumentContentProvider, vscode.Disposable {
  private readonly _contents = new Map<string, string>();
  private _pending: Pending | undefined;
  private _seq = 0;
  private readonly _registration: vscode.Disposable;

  constructor(private readonly _ctx: Ctx) {
    this._registration = vscode.workspace.registerTextDocumentContentProvider(REWRITE_SCHEME, this);
    _ctx.debug.pendingRewrite = () => {
      const p = this._pending;
      return (
        p && { id: p.id, label: p.label, uri: p.document.uri.toString(), original: p.original, proposed: p.proposed, version: p.version }
      );
    };
  }

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this._contents.get(uri.toString()) ?? '';
  }

  /** Shows the proposal as a diff and asks (without waiting for the answer); a newer proposal replaces an older one. */
  async propose(p: Proposal): Promise<void> {
    if (this._pending) await this._end(this._pending, 'replaced');
    const id = ++this._seq;
    const base = posix.basename(p.document.uri.path) || 'untitled.txt';
    const left = vscode.Uri.from({ scheme: REWRITE_SCHEME, path: `/${id}/original/${base}` });
    const right = vscode.Uri.from({ scheme: REWRITE_SCHEME, path: `/${id}/rewritten/${base}` });
    const full = p.document.getText();
    const start = p.document.offsetAt(p.range.start);
    const end = p.document.offsetAt(p.range.end);
    this._contents.set(left.toString(), full);
    this._contents.set(right.toString(), full.slice(0, start) + p.proposed + full.slice(end));
    const pending: Pending = { ...p, id, left, right };
    this._pending = pending;
    void this._ctx.contextKeys.set(ContextKeys.rewritePending, true);
    this._ctx.debug.rewrite = { id, label: p.label, status: 'pending', original: p.original, proposed: p.proposed };
    this._ctx.refreshStatus();
    await vscode.commands.executeCommand('vscode.diff', left, right, `${p.label}: ${base} (original ↔ rewritten)`, { preview: true });
    // Not awaited: the command finishes once the diff shows; the choice may come much later.
    void vscode.window
      .showInformationMessage(`OPT Complete: apply "${p.label}" to ${base}? The diff shows the change.`, 'Accept', 'Reject')
      .then(async (choice) => {
        if (this._pending !== pending) return; // decided through the commands meanwhile
        if (choice === 'Accept') await this.accept();
        else if (choice === 'Reject') await this.reject();
        // Dismissed: the proposal stays, with Accept / Reject in the diff editor's title bar.
      });
  }

  /** Applies the pending rewrite if the document still holds the text it was computed from. */
  async accept(): Promise<boolean> {
    const p = this._pending;
    if (!p) {
      void vscode.window.showInformationMessage('OPT Complete: no rewrite is waiting.');
      return false;
    }
    const doc = p.document;
    if (doc.isClosed) {
      await this._end(p, 'stale');
      void vscode.window.showWarningMessage('OPT Complete: the document was closed; the rewrite was not applied.');
      return false;
    }
    if (doc.version !== p.version && doc.getText(p.range) !== p.original) {
      await this._end(p, 'stale');
      void vscode.window.showWarningMessage(
        'OPT Complete: the document changed since the rewrite was made, so it was not applied. Run "Rewrite Selection" again.',
      );
      return false;
    }
    const edit = new vscode.WorkspaceEdit();
    edit.replace(doc.uri, p.range, p.proposed);
    const ok = await vscode.workspace.applyEdit(edit);
    await this._end(p, ok ? 'accepted' : 'failed');
    if (!ok) {
      void vscode.window.showErrorMessage('OPT Complete: the rewrite could not be applied (is the document read-only?).');
      return false;
    }
    await vscode.window.showTextDocument(doc, { preview: false });
    return true;
  }

  async reject(): Promise<void> {
    const p = this._pending;
    if (p) await this._end(p, 'rejected');
  }

  private async _end(p: Pending, status: 'accepted' | 'rejected' | 'stale' | 'replaced' | 'failed'): Promise<void> {
    if (this._pending === p) this._pending = undefined;
    this._ctx.debug.rewrite = { id: p.id, label: p.label, status, original: p.original, proposed: p.proposed };
    this._ctx.log.info(`rewrite "${p.label}": ${status}`);
    void this._ctx.contextKeys.set(ContextKeys.rewritePending, this._pending !== undefined);
    const tabs = vscode.window.tabGroups.all
      .flatMap((g) => g.tabs)
      .filter((t) => t.input instanceof vscode.TabInputTextDiff && t.input.modified.toString() === p.right.toString());
    if (tabs.length > 0) await vscode.window.tabGroups.close(tabs).then(undefined, () => undefined);
    this._contents.delete(p.left.toString());
    this._contents.delete(p.right.toString());
    this._ctx.refreshStatus();
  }

  dispose(): void {
    this._registration.dispose();
    this._contents.clear();
  }
}
