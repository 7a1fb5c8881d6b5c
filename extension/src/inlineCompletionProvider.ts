// Ghost text. Reads the cursor's surroundings, answers from the cache when it can (backspacing,
// retyping, typing what was predicted), otherwise waits for typing to pause and asks the engine,
// turning VS Code's cancellation token into a protocol cancel so a keystroke stops the model within
// one decode step. The logic lives in completion/*.ts; this file only adapts it to VS Code. It is
// given only what it uses (InlineDeps; main.ts wires them), not the extension's whole context.

import * as vscode from 'vscode';
import { Commands } from './commandIds.js';
import { type CompletionCache, suffixKeyOf } from './completion/completionCache.js';
import { type CursorContext, cursorContext } from './completion/contextWindow.js';
import type { Config } from './config.js';
import { Debouncer, debounceFor } from './completion/debounce.js';
import { type InlineSuggestion, completionEnded, finishCompletion, stopStringsFor, wantsMultiline } from './completion/postprocess.js';
import type { InlineCounters, InlineRecord } from './debugState.js';
import {
  type CompletionEngine,
  type EngineInfo,
  type SamplingOptions,
  EngineUnavailableError,
  WrongModelTypeError,
  isCancellation,
} from './engines/completionEngine.js';
import { tasksOf } from './heads/modelTasks.js';
import type { Logger } from './logger.js';

/** Lines below the cursor read for dropping repeated lines. */
const NEXT_LINES = 4;

/** The cursor's surroundings as a completion there sees them (the warm-up reads the same prompt). */
export function readCursor(
  document: vscode.TextDocument,
  position: vscode.Position,
  maxChars: number,
): { cursor: CursorContext; after: string } {
  const offset = document.offsetAt(position);
  const before = document.getText(new vscode.Range(document.positionAt(Math.max(0, offset - maxChars)), position));
  const lastLine = Math.min(document.lineCount - 1, position.line + NEXT_LINES);
  const after = document.getText(new vscode.Range(position, document.lineAt(lastLine).range.end));
  // The whole line's prefix (the clipped window may start inside a very long line).
  const linePrefix = document.lineAt(position.line).text.slice(0, position.character);
  return { cursor: { ...cursorContext(before, after, { maxPrefixChars: maxChars, nextLineCount: NEXT_LINES }), linePrefix }, after };
}

/** The options that decide how an inline prompt is cut to the model's positions (the warm-up sends the same). */
export function inlinePromptOptions(config: Pick<Config, 'inlineMaxNewTokens' | 'inlinePromptLookupTokens'>): SamplingOptions {
  const lookup = config.inlinePromptLookupTokens;
  return { max_new_tokens: config.inlineMaxNewTokens, do_sample: false, ...(lookup > 0 ? { prompt_lookup_num_tokens: lookup } : {}) };
}

/** The settings ghost text reads (at each request, so a change applies to the next keystroke). */
export type InlineSettings = Pick<
  Config,
  | 'inlineEnabledFor'
  | 'maxContextChars'
  | 'maxContextTokens'
  | 'inlineMaxNewTokens'
  | 'inlinePromptLookupTokens'
  | 'inlinePolicy'
  | 'debounce'
>;

/** What the provider uses, and nothing more. */
export interface InlineDeps {
  readonly config: InlineSettings;
  readonly cache: CompletionCache;
  readonly counters: InlineCounters;
  readonly log: Pick<Logger, 'trace' | 'info' | 'warn'>;
  /** The loaded model's info (local runtime, ready), else undefined. */
  runtimeInfo(): EngineInfo | undefined;
  engine(): CompletionEngine;
  /** A request's outcome (undefined: success), for the remote engine's health in the status bar. */
  noteEngineOutcome(err: unknown): void;
  /** The completion shown (or not), for the status bar and the debug state. */
  record(r: InlineRecord): void;
}

export class InlineCompletionProvider implements vscode.InlineCompletionItemProvider, vscode.Disposable {
  private readonly _debouncer: Debouncer;
  private _lastUnavailable: string | undefined;

  constructor(private readonly _deps: InlineDeps) {
    this._debouncer = new Debouncer();
  }

  async provideInlineCompletionItems(
    document: vscode.TextDocument,
    position: vscode.Position,
    context: vscode.InlineCompletionContext,
    token: vscode.CancellationToken,
  ): Promise<vscode.InlineCompletionItem[] | undefined> {
    const ctx = this._deps;
    const config = ctx.config;
    const manual = context.triggerKind === vscode.InlineCompletionTriggerKind.Invoke;
    // Paused globally or for this language: only an explicit trigger asks.
    if (!manual && !config.inlineEnabledFor(document.languageId)) return undefined;
    // The suggest widget is open: its item would have to be extended; leave that to the widget.
    if (context.selectedCompletionInfo) return undefined;
    // A classifier or QA model writes no text: no request, no error (the status bar says what the model is).
    const info = ctx.runtimeInfo();
    if (info && !tasksOf(info)?.includes('generate')) return undefined;

    const { cursor, after } = readCursor(document, position, config.maxContextChars);
    const linePrefix = cursor.linePrefix;
    if (cursor.prefix.trim() === '') return undefined;

    const policy = config.inlinePolicy;
    const multiline = wantsMultiline(policy.multiline, cursor);
    const documentId = document.uri.toString();
    const key = {
      documentId,
      prefix: cursor.prefix,
      suffixKey: `${multiline ? 'm' : 's'}${suffixKeyOf(cursor.lineSuffix, cursor.nextLines)}`,
    };
    ctx.counters.requests++;

    const started = performance.now();
    const hit = ctx.cache.get(key, { includeEmpty: !manual });
    if (hit) {
      ctx.counters.cacheHits++;
      this._record(document, position, hit.suggestion, 'cache', performance.now() - started);
      return hit.suggestion ? [this._item(position, linePrefix, hit.suggestion)] : undefined;
    }

    const abort = new AbortController();
    const subscription = token.onCancellationRequested(() => abort.abort());
    try {
      if (token.isCancellationRequested) return undefined;
      if (!manual && !(await this._debouncer.wait(debounceFor(linePrefix, config.debounce), abort.signal))) {
        ctx.counters.cancelled++;
        return undefined;
      }
      const requested = performance.now();
      ctx.counters.engineCalls++;
      const result = await ctx.engine().run(
        {
          kind: 'complete',
          documentId,
          prompt: cursor.prefix,
          suffix: after,
          maxContextTokens: config.maxContextTokens,
          options: { ...inlinePromptOptions(config), stop_strings: stopStringsFor(multiline, policy.stopSequences) },
        },
        { signal: abort.signal, onText: (_delta, soFar) => completionEnded(soFar, cursor, policy, multiline) },
      );
      ctx.noteEngineOutcome(undefined);
      this._lastUnavailable = undefined;
      const suggestion = finishCompletion(result.text, cursor, policy, multiline);
      ctx.cache.set(key, suggestion);
      const latencyMs = performance.now() - requested;
      const decodeSeconds = result.timings.decodeMs / 1000;
      this._record(document, position, suggestion, 'engine', latencyMs, {
        promptTokens: result.promptTokens,
        reusedTokens: result.reusedTokens,
        completionTokens: result.completionTokens,
        tokensPerSecond: decodeSeconds > 0 && result.completionTokens > 1 ? (result.completionTokens - 1) / decodeSeconds : undefined,
        // Prompt lookup: the tokens each model pass produced (1 without it).
        tokensPerPass: result.speculation ? result.completionTokens / Math.max(1, result.speculation.passes) : undefined,
        finishReason: result.finishReason,
      });
      ctx.log.trace(
        `inline: ${result.completionTokens} tokens in ${latencyMs.toFixed(0)} ms (${result.promptTokens} prompt, ${result.reusedTokens} reused) → ${JSON.stringify(suggestion?.text ?? null)}`,
      );
      if (token.isCancellationRequested || !suggestion) return undefined;
      return [this._item(position, linePrefix, suggestion)];
    } catch (err) {
      if (isCancellation(err)) {
        ctx.counters.cancelled++;
        return undefined;
      }
      if (err instanceof WrongModelTypeError) {
        // The model turned out (once loaded) to have no language-model head: quiet, logged once.
        if (err.message !== this._lastUnavailable) ctx.log.info(`inline completions are off for this model: ${err.message}`);
        this._lastUnavailable = err.message;
        return undefined;
      }
      ctx.counters.errors++;
      ctx.noteEngineOutcome(err);
      const message = (err as Error).message;
      // Unavailable engines are reported by the status bar; log each distinct reason once.
      if (!(err instanceof EngineUnavailableError) || message !== this._lastUnavailable)
        ctx.log.warn(`inline completion failed: ${message}`);
      if (err instanceof EngineUnavailableError) this._lastUnavailable = message;
      return undefined;
    } finally {
      subscription.dispose();
    }
  }

  /**
   * The item replaces the line from its start to the end of the echoed suffix (VS Code prefers
   * replacements, and renders only what is inserted), so its text starts with the line's prefix.
   */
  private _item(position: vscode.Position, linePrefix: string, s: InlineSuggestion): vscode.InlineCompletionItem {
    const range = new vscode.Range(position.line, 0, position.line, position.character + s.replaceSuffix);
    return new vscode.InlineCompletionItem(linePrefix + s.text, range, {
      title: 'Accepted',
      command: Commands.inlineAccepted,
      arguments: [s.text.length],
    });
  }

  private _record(
    document: vscode.TextDocument,
    position: vscode.Position,
    s: InlineSuggestion | undefined,
    source: 'cache' | 'engine',
    latencyMs: number,
    extra: {
      promptTokens?: number;
      reusedTokens?: number;
      completionTokens?: number;
      tokensPerSecond?: number;
      tokensPerPass?: number;
      finishReason?: string;
    } = {},
  ): void {
    const c = this._deps.counters;
    if (s) c.shown++;
    else c.empty++;
    this._deps.record({
      at: new Date().toISOString(),
      uri: document.uri.toString(),
      line: position.line,
      character: position.character,
      source,
      text: s?.text,
      replaceSuffix: s?.replaceSuffix ?? 0,
      multiline: s?.multiline ?? false,
      latencyMs: Math.round(latencyMs * 10) / 10,
      ...extra,
    });
  }

  dispose(): void {
    this._debouncer.dispose();
  }
}
