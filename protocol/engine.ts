// The engine contract: what the protocol server, the OpenAI-compatible HTTP server and the CLI ask
// of a loaded model, and what the editor's client of a remote server offers (errors: errors.ts). The local engine runs inference on a worker thread; the requests it serves
// are scheduled by priority so an inline completion never waits behind a long generation.

import type { AnswerParams, AnswerResult, ClassifyParams, ClassifyResult, EmbedParams, EmbedResult } from './protocol.js';
import type { SamplingOptions } from './sampling.js';

export type { SamplingOptions };

/**
 * inline: ghost-text completions, latency-critical; a newer one for the same document supersedes
 * the older. interactive: rewrite of a selection, waited on by the user. background: palette
 * generation and server requests, served when nothing more urgent is running. warm: prefills a
 * document's text into the prefix cache before the first keystroke and generates nothing; one at a
 * time, run only when nothing else is, and cancelled by any other request.
 */
export type Priority = 'inline' | 'interactive' | 'background' | 'warm';

export interface EngineRequest {
  prompt: string;
  options: SamplingOptions;
  priority: Priority;
  /** Inline requests from the same document supersede each other. */
  documentId?: string;
  /** Prompt tokens kept from the end of the prompt (default: what the model's positions allow). */
  maxPromptTokens?: number;
}

export type FinishReason = 'eos' | 'length' | 'stop';

export interface EngineResult {
  /** The generated text only (never the prompt). */
  text: string;
  finishReason: FinishReason;
  /** Tokens of the prompt as run (after any truncation). */
  promptTokens: number;
  /** Of those, tokens whose KV state came from the prefix cache (not prefilled again). */
  reusedTokens: number;
  completionTokens: number;
  /** The prompt was longer than the model's positions allow and lost tokens from its start. */
  truncated: boolean;
  /**
   * With prompt lookup (options.prompt_lookup_num_tokens): the model passes that produced the
   * completion (the prefill's included), and the candidates proposed and accepted.
   */
  speculation?: { passes: number; proposed: number; accepted: number };
  timings: { queuedMs: number; prefillMs: number; decodeMs: number };
}

/** What a loaded checkpoint can do: its head decides (every OPT body can embed). */
export type ModelTask = 'generate' | 'classify' | 'answer' | 'embed';

export interface EngineInfo {
  modelId: string;
  dir: string;
  /** config.json's architectures[0], e.g. OPTForCausalLM. */
  architecture: string;
  tasks: ModelTask[];
  /** The device the model runs on (after any fallback). */
  device: string;
  /** Why the requested device was not used, when the runtime fell back to another. */
  deviceFallback?: string;
  dtype: string;
  maxPositions: number;
  loadSeconds: number;
  /** Generation models: KV-cache bytes per token, and the prompt + completion tokens the memory check and the prefix cache were sized for. */
  kvBytesPerToken?: number;
  contextTokens?: number;
  /** The assistant model that drafts for generation requests, when one is loaded. */
  assistant?: { modelId: string; dir: string; dtype: string };
}

export interface EngineStatus {
  info: EngineInfo | undefined;
  rssBytes: number;
  /** Decode speed over recent requests. */
  recentTokensPerSecond: number | undefined;
  lastLatencyMs: number | undefined;
  queued: Record<Priority, number>;
  running: number;
  /** Model steps (any job's) run between the last cancellation reaching the engine and that job ending. */
  stepsAfterLastCancel?: number;
  /** KV states of recent prompts: `budgetBytes` bounds the older ones, the newest is kept whatever its size. */
  prefixCache: { entries: number; bytes: number; budgetBytes: number; hits: number; misses: number };
}

/** Nothing queued (an engine not loaded yet, or one that does not report its queue). */
export const emptyQueue = (): Record<Priority, number> => ({ inline: 0, interactive: 0, background: 0, warm: 0 });
/** No prefix cache, or none loaded yet. */
export const emptyPrefixCache = (): EngineStatus['prefixCache'] => ({ entries: 0, bytes: 0, budgetBytes: 0, hits: 0, misses: 0 });

/** A one-pass request to a head other than generation (one model step; interactive priority). */
export type TaskRequest =
  { task: 'classify'; params: ClassifyParams } | { task: 'answer'; params: AnswerParams } | { task: 'embed'; params: EmbedParams };

export interface TaskResults {
  classify: ClassifyResult;
  answer: AnswerResult;
  embed: EmbedResult;
}

export interface Engine {
  info(): EngineInfo;
  /**
   * Runs one request; `onText` receives the generated text as it grows (deltas). Rejects with an
   * AbortError when `signal` aborts (within one decode step), SupersededError when a newer inline
   * request for the same document replaced it, EngineBusyError when the queue is full.
   */
  generate(request: EngineRequest, onText?: (delta: string) => void, signal?: AbortSignal): Promise<EngineResult>;
  /**
   * The heads other than generation, on engines that run the model themselves (absent on a client of
   * an OpenAI-compatible server). Reject with WrongModelTypeError when info().tasks lacks the task.
   */
  classify?(params: ClassifyParams, signal?: AbortSignal): Promise<ClassifyResult>;
  answer?(params: AnswerParams, signal?: AbortSignal): Promise<AnswerResult>;
  embed?(params: EmbedParams, signal?: AbortSignal): Promise<EmbedResult>;
  status(): Promise<EngineStatus>;
  dispose(): Promise<void>;
}
