// The engine served by a remote OpenAI-compatible completions server (vLLM, TGI, `opt serve`),
// through openaiClient.ts. Same contract as the local runtime, so the editor features do not care
// which one answers. No vscode import.

import type { Engine } from '../../../protocol/engine.js';
import {
  type CompletionEngine,
  type CompletionResult,
  type EngineStatus,
  type RunOptions,
  type TextRequest,
  runWithEarlyStop,
} from './completionEngine.js';
import { type OpenAiEngineOptions, createOpenAiEngine } from './openaiClient.js';

export class OpenAiEngine implements CompletionEngine {
  readonly kind = 'openai' as const;
  private readonly _engine: Engine;

  constructor(readonly options: OpenAiEngineOptions) {
    this._engine = createOpenAiEngine(options);
  }

  run(request: TextRequest, options?: RunOptions): Promise<CompletionResult> {
    const priority = request.kind === 'complete' ? 'inline' : request.kind === 'rewrite' ? 'interactive' : 'background';
    return runWithEarlyStop(options, (signal, onDelta) =>
      this._engine.generate(
        {
          prompt: request.prompt,
          options: request.options,
          priority,
          documentId: request.documentId,
          maxPromptTokens: request.maxContextTokens,
        },
        onDelta,
        signal,
      ),
    );
  }

  status(): Promise<EngineStatus | undefined> {
    return this._engine.status();
  }

  dispose(): Promise<void> {
    return this._engine.dispose();
  }
}
