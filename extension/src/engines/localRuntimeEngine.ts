// The engine served by the runtime process over the protocol: requests go through the supervisor
// (which starts the runtime on first need), text streams back as partial results, and an abort
// becomes JSON-RPC's $/cancelRequest, which stops the model within one decode step. Classification
// and question answering are single requests; a task the loaded head cannot do (EngineInfo.tasks)
// is refused with WrongModelTypeError before anything is sent. No vscode import.

import { type CancellationToken, CancellationTokenSource, ErrorCodes, type MessageConnection, ResponseError } from 'vscode-jsonrpc/node';
import {
  Answer,
  type AnswerParams,
  type AnswerResult,
  Classify,
  type ClassifyParams,
  type ClassifyResult,
  Complete,
  Generate,
  PartialResult,
  Rewrite,
  RuntimeErrorCodes,
  Status,
  Warm,
  type WarmParams,
  type WarmResult,
} from '../../../protocol/protocol.js';
import { fromRpcError } from '../../../protocol/errors.js';
import { TASK_ARCHITECTURE, tasksOf, wrongModelMessage } from '../heads/modelTasks.js';
import type { RuntimeSupervisor } from '../runtimeSupervisor.js';
import {
  CancelledError,
  type CompletionEngine,
  type CompletionResult,
  EngineUnavailableError,
  type EngineStatus,
  type ModelTask,
  type RunOptions,
  type TextRequest,
  WrongModelTypeError,
  runWithEarlyStop,
} from './completionEngine.js';

export class LocalRuntimeEngine implements CompletionEngine {
  readonly kind = 'local' as const;
  private _nextToken = 1;

  constructor(private readonly _supervisor: RuntimeSupervisor) {}

  run(request: TextRequest, options?: RunOptions): Promise<CompletionResult> {
    return runWithEarlyStop(options, (signal, onDelta) =>
      this._request('generate', signal, async (connection, token) => {
        const partialResultToken = `opt-${process.pid}-${this._nextToken++}`;
        const progress = connection.onProgress(PartialResult, partialResultToken, (p) => onDelta(p.delta));
        try {
          if (request.kind === 'complete') {
            return await connection.sendRequest(
              Complete,
              {
                documentId: request.documentId ?? 'untitled',
                prefix: request.prompt,
                suffix: request.suffix ?? '',
                maxContextTokens: request.maxContextTokens,
                options: request.options,
                partialResultToken,
              },
              token,
            );
          }
          const type = request.kind === 'rewrite' ? Rewrite : Generate;
          return await connection.sendRequest(type, { prompt: request.prompt, options: request.options, partialResultToken }, token);
        } finally {
          progress.dispose();
        }
      }),
    );
  }

  /** Prefills a document's prompt into the runtime's prefix cache at the lowest priority. */
  warm(params: WarmParams, signal?: AbortSignal): Promise<WarmResult> {
    return this._request('generate', signal, (c, token) => c.sendRequest(Warm, params, token));
  }

  /** Classifies `text` (an OPTForSequenceClassification model); rejects with WrongModelTypeError on another head. */
  classify(params: ClassifyParams, signal?: AbortSignal): Promise<ClassifyResult> {
    return this._request('classify', signal, (c, token) => c.sendRequest(Classify, params, token));
  }

  /** Extractive question answering over `context` (an OPTForQuestionAnswering model). */
  answer(params: AnswerParams, signal?: AbortSignal): Promise<AnswerResult> {
    return this._request('answer', signal, (c, token) => c.sendRequest(Answer, params, token));
  }

  /** A request that returns one result (no streaming), cancelled through JSON-RPC when `signal` aborts. */
  private async _request<T>(
    task: ModelTask,
    signal: AbortSignal | undefined,
    send: (c: MessageConnection, token: CancellationToken) => Promise<T>,
  ): Promise<T> {
    if (signal?.aborted) throw new CancelledError('cancelled');
    const connection = await this._connectionFor(task, signal);
    const source = new CancellationTokenSource();
    const onAbort = () => source.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await send(connection, source.token);
    } catch (err) {
      if (signal?.aborted) throw new CancelledError('cancelled');
      throw this._mapError(err, task);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      source.dispose();
    }
  }

  /**
   * The connection once the runtime is ready, refusing a task the loaded head cannot do before
   * anything is sent (the runtime would refuse it too, but the model's type is known here).
   */
  private async _connectionFor(task: ModelTask, signal: AbortSignal | undefined): Promise<MessageConnection> {
    const connection = await this._supervisor.ready(signal);
    const s = this._supervisor.state;
    const info = s.kind === 'ready' ? s.info : undefined;
    const tasks = tasksOf(info);
    if (info && tasks && !tasks.includes(task))
      throw new WrongModelTypeError(wrongModelMessage(task, info.modelId, info), task, info.architecture);
    return connection;
  }

  private _mapError(err: unknown, task: ModelTask): Error {
    if (err instanceof ResponseError && err.code === RuntimeErrorCodes.WrongModelType) {
      const s = this._supervisor.state;
      return new WrongModelTypeError(err.message, task, s.kind === 'ready' ? s.info.architecture : undefined);
    }
    // A runtime from before these requests existed.
    if (err instanceof ResponseError && err.code === ErrorCodes.MethodNotFound && task !== 'generate') {
      return new Error(`this runtime cannot serve ${TASK_ARCHITECTURE[task]} models (${err.message}); update the extension`);
    }
    return mapError(err);
  }

  async status(): Promise<EngineStatus | undefined> {
    if (this._supervisor.state.kind !== 'ready') return undefined;
    const connection = await this._supervisor.ready();
    return await Promise.race([
      connection.sendRequest(Status),
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 2000)),
    ]);
  }

  async dispose(): Promise<void> {
    // The supervisor (owned by the extension context) stops the process.
  }
}

function mapError(err: unknown): Error {
  if (err instanceof ResponseError) {
    // The process died mid-request: vscode-jsonrpc rejects pending requests when the connection closes.
    if (err.code === ErrorCodes.PendingResponseRejected || err.code === ErrorCodes.ConnectionInactive)
      return new EngineUnavailableError('the runtime stopped while answering (see the log)');
    return fromRpcError(err.code, err.message);
  }
  return err instanceof Error ? err : new Error(String(err));
}
