// The engine served by the runtime process over the protocol: requests go through the supervisor
// (which starts the runtime on first need), text streams back as partial results, and an abort
// becomes JSON-RPC's $/cancelRequest, which stops the model within one decode step. No vscode import.

import { CancellationTokenSource, ErrorCodes, ResponseError } from 'vscode-jsonrpc/node';
import { Complete, Generate, PartialResult, Rewrite, RuntimeErrorCodes, Status } from '../../../protocol/protocol.js';
import type { RuntimeSupervisor } from '../runtimeSupervisor.js';
import { CancelledError, type CompletionEngine, type CompletionResult, EngineUnavailableError, type EngineStatus, type RunOptions, type TextRequest, runWithEarlyStop } from './completionEngine.js';

export class LocalRuntimeEngine implements CompletionEngine {
  readonly kind = 'local' as const;
  private _nextToken = 1;

  constructor(private readonly _supervisor: RuntimeSupervisor) {}

  run(request: TextRequest, options?: RunOptions): Promise<CompletionResult> {
    return runWithEarlyStop(options, async (signal, onDelta) => {
      const connection = await this._supervisor.ready(signal);
      const partialResultToken = `opt-${process.pid}-${this._nextToken++}`;
      const source = new CancellationTokenSource();
      const onAbort = () => source.cancel();
      signal.addEventListener('abort', onAbort, { once: true });
      const progress = connection.onProgress(PartialResult, partialResultToken, (p) => onDelta(p.delta));
      try {
        if (request.kind === 'complete') {
          return await connection.sendRequest(Complete, {
            documentId: request.documentId ?? 'untitled',
            prefix: request.prompt,
            suffix: request.suffix ?? '',
            maxContextTokens: request.maxContextTokens,
            options: request.options,
            partialResultToken,
          }, source.token);
        }
        const type = request.kind === 'rewrite' ? Rewrite : Generate;
        return await connection.sendRequest(type, { prompt: request.prompt, options: request.options, partialResultToken }, source.token);
      } catch (err) {
        throw mapError(err);
      } finally {
        progress.dispose();
        signal.removeEventListener('abort', onAbort);
        source.dispose();
      }
    });
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
    if (err.code === ErrorCodes.PendingResponseRejected || err.code === ErrorCodes.ConnectionInactive) return new EngineUnavailableError('the runtime stopped while answering (see the log)');
    if (err.code === RuntimeErrorCodes.Cancelled) return new CancelledError(err.message);
    if (err.code === RuntimeErrorCodes.NotInitialized) return new EngineUnavailableError(err.message);
    return new Error(err.message);
  }
  return err instanceof Error ? err : new Error(String(err));
}
