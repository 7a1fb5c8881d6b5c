// "Generate text": a prompt from an input box (prefilled with the selection or the current line),
// the continuation streamed into the editor at the cursor in batched edits that undo in one step,
// cancellable from its progress notification. Sampling comes from the generation settings.

import * as vscode from 'vscode';
import type { Ctx } from './ctx.js';
import { CancelledError, WrongModelTypeError, isCancellation } from './engines/completionEngine.js';
import { canRun, showWrongModel } from './heads/taskGuard.js';
import { withCancellableProgress } from './cancellableProgress.js';

/** Streamed text is written at most this often (ms): fewer, larger edits. */
const FLUSH_MS = 60;

export interface GenerateArgs {
  /** Skips the input box (e2e tests, keybindings with args). */
  prompt?: string;
}

export async function generateCommand(ctx: Ctx, args?: GenerateArgs): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    void vscode.window.showInformationMessage('OPT Complete: open an editor to generate text into.');
    return;
  }
  // A classifier or QA model cannot continue text: say so before asking for a prompt.
  if (!canRun(ctx, 'generate')) return;
  const document = editor.document;
  const selection = editor.selection;
  const prefill = selection.isEmpty ? document.lineAt(selection.active.line).text.trim() : document.getText(selection);
  const prompt =
    typeof args?.prompt === 'string'
      ? args.prompt
      : await vscode.window.showInputBox({
          title: 'OPT: Generate Text',
          prompt: 'The model continues this text; the continuation is inserted at the cursor.',
          value: prefill,
          ignoreFocusOut: true,
        });
  if (prompt === undefined || prompt.trim() === '') return;
  const engine = ctx.engineForCommand();
  if (!engine) return;

  const options = ctx.config.generationSampling;
  const writer = new StreamWriter(editor, document.offsetAt(selection.end));
  const busy = ctx.beginBusy('generating');
  const started = performance.now();
  let tokens = 0;
  try {
    await withCancellableProgress('OPT: Generating', async (abort, progress) => {
      writer.onStop = (reason) => {
        writer.stopReason ??= reason;
        abort.abort();
      };
      try {
        const result = await engine.run(
          { kind: 'generate', prompt, options },
          {
            signal: abort.signal,
            onText: (delta) => {
              tokens++;
              writer.push(delta);
              if (tokens % 8 === 0) progress.report({ message: `${tokens} tokens` });
            },
          },
        );
        await writer.finish();
        ctx.noteEngineOutcome(undefined);
        const seconds = (performance.now() - started) / 1000;
        ctx.debug.generate = {
          prompt: prompt.slice(0, 200),
          inserted: writer.written,
          tokens: result.completionTokens,
          seconds,
          finishReason: result.finishReason,
          cancelled: false,
        };
        ctx.log.info(
          `generate: ${result.completionTokens} tokens in ${seconds.toFixed(1)} s (${(result.completionTokens / Math.max(seconds, 1e-3)).toFixed(1)} tokens/s), ${result.finishReason}`,
        );
      } catch (err) {
        await writer.finish();
        if (!isCancellation(err) && !(err instanceof CancelledError)) throw err;
        const seconds = (performance.now() - started) / 1000;
        ctx.debug.generate = {
          prompt: prompt.slice(0, 200),
          inserted: writer.written,
          tokens,
          seconds,
          cancelled: true,
          stopReason: writer.stopReason,
        };
        ctx.log.info(`generate: stopped after ${tokens} tokens${writer.stopReason ? ` (${writer.stopReason})` : ' (cancelled)'}`);
        if (writer.stopReason)
          void vscode.window.showWarningMessage(
            `OPT Complete: generation stopped: ${writer.stopReason}. The text written so far is kept (undo removes it in one step).`,
          );
      } finally {
        writer.dispose();
      }
    });
  } catch (err) {
    if (err instanceof WrongModelTypeError) {
      ctx.debug.generate = { prompt: prompt.slice(0, 200), inserted: '', tokens: 0, cancelled: false, wrongModel: err.message };
      void showWrongModel(ctx, err.message);
      return;
    }
    ctx.noteEngineOutcome(err);
    ctx.log.error(`generate failed: ${(err as Error).message}`);
    void ctx.notifications.showError(`generation failed: ${(err as Error).message}`);
  } finally {
    busy.dispose();
  }
}

/**
 * Writes streamed text at a document offset that follows the user's edits elsewhere. All edits
 * but the first are made without undo stops, so the whole insertion undoes in one step. Stops
 * (through onStop) if the editor closes or the user edits at the insertion point.
 */
export class StreamWriter implements vscode.Disposable {
  private _pending = '';
  private _first = true;
  private _timer: ReturnType<typeof setTimeout> | undefined;
  private _chain: Promise<void> = Promise.resolve();
  private _expect: { offset: number; text: string } | undefined;
  private readonly _listener: vscode.Disposable;
  private _stopped = false;
  private _finished = false;
  written = '';
  stopReason: string | undefined;
  onStop: (reason: string) => void = () => undefined;

  constructor(
    private readonly _editor: vscode.TextEditor,
    private _offset: number,
  ) {
    this._listener = vscode.workspace.onDidChangeTextDocument((e) => {
      if (e.document !== _editor.document) return;
      for (const change of e.contentChanges) {
        const x = this._expect;
        if (x && change.rangeOffset === x.offset && change.rangeLength === 0 && change.text === x.text) {
          this._offset = x.offset + x.text.length;
          this._expect = undefined;
        } else if (
          change.rangeOffset + change.rangeLength < this._offset ||
          (change.rangeLength > 0 && change.rangeOffset + change.rangeLength === this._offset)
        ) {
          this._offset += change.text.length - change.rangeLength;
        } else if (change.rangeOffset <= this._offset && !this._stopped) {
          this._stop('the text at the insertion point was edited');
        }
      }
    });
  }

  push(text: string): void {
    if (this._stopped || this._finished) return;
    this._pending += text;
    this._timer ??= setTimeout(() => {
      this._timer = undefined;
      this._flush(false);
    }, FLUSH_MS);
  }

  /** Writes what is left, closing the undo group. */
  async finish(): Promise<void> {
    this._finished = true;
    if (this._timer) clearTimeout(this._timer);
    this._timer = undefined;
    this._flush(true);
    await this._chain;
  }

  private _flush(last: boolean): void {
    const text = this._pending;
    this._pending = '';
    if (text === '' || this._stopped) return;
    this._chain = this._chain.then(async () => {
      if (this._stopped) return;
      const document = this._editor.document;
      if (document.isClosed) return this._stop('the document was closed');
      const at = document.positionAt(this._offset);
      this._expect = { offset: this._offset, text };
      const first = this._first;
      this._first = false;
      let ok: boolean;
      try {
        ok = await this._editor.edit((b) => b.insert(at, text), { undoStopBefore: first, undoStopAfter: last });
      } catch {
        ok = false;
      }
      if (!ok) return this._stop('the editor was closed or could not be edited');
      if (this._expect) {
        // No change event matched (e.g. line endings were normalised): trust the edit.
        this._offset += text.length;
        this._expect = undefined;
      }
      this.written += text;
    });
  }

  private _stop(reason: string): void {
    if (this._stopped) return;
    this._stopped = true;
    this._pending = '';
    this.onStop(reason);
  }

  dispose(): void {
    if (this._timer) clearTimeout(this._timer);
    this._listener.dispose();
  }
}
