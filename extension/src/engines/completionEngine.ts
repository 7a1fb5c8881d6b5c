// What the editor features ask of a model, whichever serves it: the local runtime process over
// JSON-RPC (localRuntimeEngine.ts) or a remote OpenAI-compatible server (openaiEngine.ts). Callers
// pass an AbortSignal; aborting stops the model within one decode step (local) or closes the
// stream (remote). No vscode import.

import type { ModelTask } from '../../../protocol/engine.js';
import { CancelledError, isCancellation } from '../../../protocol/errors.js';
import type { CompletionResult, EngineInfo, EngineStatus, SamplingOptions, WarmParams, WarmResult } from '../../../protocol/protocol.js';

export type { CompletionResult, EngineInfo, EngineStatus, ModelTask, SamplingOptions, WarmParams, WarmResult };
// The errors the editor's features catch, from the one registry.
export { CancelledError, EngineUnavailableError, WrongModelTypeError, isCancellation } from '../../../protocol/errors.js';

export type RequestKind = 'complete' | 'generate' | 'rewrite';

export interface TextRequest {
  /** complete: an inline completion (latency-critical, newer ones supersede older ones per document); generate: palette generation (background); rewrite: waited on by the user. */
  kind: RequestKind;
  prompt: string;
  options: SamplingOptions;
  /** complete only: the document the completion is for. */
  documentId?: string;
  /** complete only: the text after the cursor (not conditioned on; see protocol.ts). */
  suffix?: string;
  /** Prompt tokens kept from the end of the prompt. */
  maxContextTokens?: number;
}

export interface RunOptions {
  signal?: AbortSignal;
  /** Receives the text as it grows. Returning true ends the request early with the text so far. */
  onText?: (delta: string, soFar: string) => boolean | void;
}

export interface CompletionEngine {
  readonly kind: 'local' | 'openai';
  /** Resolves with the result; rejects with a CancelledError when aborted or superseded. */
  run(request: TextRequest, options?: RunOptions): Promise<CompletionResult>;
  /**
   * Prefills a document's prompt into the engine's prefix cache (the local runtime only; absent on a
   * remote server). Rejects with a CancelledError when aborted or when any other request ends it.
   */
  warm?(params: WarmParams, signal?: AbortSignal): Promise<WarmResult>;
  /** The engine's own figures (memory, queue, prefix cache), or undefined when it is not running. */
  status(): Promise<EngineStatus | undefined>;
  dispose(): Promise<void>;
}

/**
 * Runs `start` with an abort controller linked to `options.signal`; when `onText` asks to stop,
 * aborts and resolves with the text so far instead of rejecting (finishReason 'stop').
 */
export async function runWithEarlyStop(
  options: RunOptions | undefined,
  start: (signal: AbortSignal, onDelta: (delta: string) => void) => Promise<CompletionResult>,
): Promise<CompletionResult> {
  const controller = new AbortController();
  const outer = options?.signal;
  if (outer?.aborted) throw new CancelledError('cancelled');
  const onOuterAbort = () => controller.abort();
  outer?.addEventListener('abort', onOuterAbort, { once: true });
  let soFar = '';
  let deltas = 0;
  let stoppedEarly = false;
  const started = performance.now();
  const early = (): CompletionResult => ({
    text: soFar,
    finishReason: 'stop',
    promptTokens: 0,
    reusedTokens: 0,
    completionTokens: deltas,
    truncated: false,
    timings: { queuedMs: 0, prefillMs: 0, decodeMs: performance.now() - started },
  });
  try {
    const result = await start(controller.signal, (delta) => {
      if (stoppedEarly) return;
      soFar += delta;
      deltas++;
      if (options?.onText?.(delta, soFar) === true) {
        stoppedEarly = true;
        controller.abort();
      }
    });
    // The engine may finish before it sees the abort (the rest was already buffered): cut to what was accepted.
    return stoppedEarly
      ? { ...result, text: soFar, finishReason: 'stop', completionTokens: Math.min(deltas, result.completionTokens) }
      : result;
  } catch (err) {
    if (stoppedEarly && !outer?.aborted) return early();
    if (outer?.aborted || isCancellation(err)) throw new CancelledError((err as Error)?.message ?? 'cancelled');
    throw err;
  } finally {
    outer?.removeEventListener('abort', onOuterAbort);
  }
}
