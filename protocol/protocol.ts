// The one protocol between the extension and the runtime process: JSON-RPC 2.0 over the runtime's
// stdio (vscode-jsonrpc framing). Every request, notification and error code is declared here with
// its types; neither side sends a raw method string. Cancellation is JSON-RPC's own
// `$/cancelRequest` (a CancellationToken on either side); streamed text arrives as `$/progress`
// on the request's `partialResultToken`. Imports neither `vscode` nor onnxruntime.

import { NotificationType, ProgressType, RequestType, RequestType0 } from 'vscode-jsonrpc';
import type { EngineInfo, EngineResult, EngineStatus, SamplingOptions } from './engine.js';

export type { EngineInfo, EngineResult, EngineStatus, SamplingOptions };

/** Bumped on any incompatible change; the runtime refuses an initialize with another version. */
export const PROTOCOL_VERSION = 1;

export type ProgressToken = string | number;

export interface InitializeParams {
  protocolVersion: number;
  /** A model folder or a Hugging Face id (e.g. facebook/opt-125m). */
  model: string;
  dtype?: 'auto' | 'fp32' | 'fp16' | 'int8' | 'int4';
  /** auto (the default): CUDA, else WebGPU, else the CPU; a GPU that fails to initialize falls back to the CPU (EngineInfo.deviceFallback says why). */
  device?: 'auto' | 'cpu' | 'webgpu' | 'cuda';
  threads?: number;
  cacheDir?: string;
  queueLimit?: number;
  /**
   * Memory for KV states of recent prompts beyond the newest, which is kept whatever its size (the
   * document being typed in); 0 keeps none. Absent: room for two contexts, within half the memory
   * the model leaves (protocol/memory.ts autoPrefixCacheBytes).
   */
  prefixCacheMiB?: number;
  /**
   * The longest prompt + completion the client will ask for (the editor: its context tokens plus its
   * completion tokens). Sizes the memory check before loading and the automatic prefix cache. Absent:
   * the model's positions.
   */
  contextTokens?: number;
  /**
   * A smaller OPT with the same tokenizer that drafts tokens for the model (transformers'
   * assisted generation), e.g. facebook/opt-125m for opt-1.3b: a folder or a Hub id, loaded beside
   * the model on its device and precision. Requests that do not ask for prompt lookup use it.
   */
  assistantModel?: string;
}

export interface InitializeResult {
  protocolVersion: number;
  info: EngineInfo;
}

export interface CompleteParams {
  /** Inline completions from one document supersede each other. */
  documentId: string;
  /** Text before the cursor. */
  prefix: string;
  /** Text after the cursor (OPT has no fill-in-the-middle: used by the client to avoid duplicating it). */
  suffix: string;
  /** Prompt tokens kept from the end of `prefix` (default: what the model's positions allow). */
  maxContextTokens?: number;
  options?: SamplingOptions;
  partialResultToken?: ProgressToken;
}

/**
 * Prefill a document's text before the cursor into the prefix cache, so that the first completion
 * there prefills only what changed. Send the same `prefix`, `maxContextTokens` and `options` as the
 * Complete that will follow (they decide how a long prompt is cut). Runs only when nothing else
 * does; any other request cancels it (reply Cancelled), keeping what it had prefilled.
 */
export interface WarmParams {
  documentId: string;
  prefix: string;
  maxContextTokens?: number;
  options?: SamplingOptions;
}

export interface WarmResult {
  /** Tokens of the prompt as cut, and of those, how many were already cached (the rest were prefilled now). */
  promptTokens: number;
  reusedTokens: number;
  prefillMs: number;
}

export interface GenerateParams {
  prompt: string;
  options?: SamplingOptions;
  partialResultToken?: ProgressToken;
}

export type CompletionResult = EngineResult;

export interface PartialText {
  /** Text generated since the previous partial result. */
  delta: string;
}

/** Text classification with an OPTForSequenceClassification checkpoint. */
export interface ClassifyParams {
  text: string;
}

export interface ClassifyResult {
  /** config.json's problem_type (single-label when unset and num_labels > 1, regression when 1). */
  problemType: 'single_label_classification' | 'multi_label_classification' | 'regression';
  /** Every label, highest score first: softmax (single-label), sigmoid (multi-label) or the raw value (regression). */
  labels: { label: string; score: number }[];
  /** The pooled token's raw logits, in id order. */
  logits: number[];
}

/** Extractive question answering with an OPTForQuestionAnswering checkpoint. */
export interface AnswerParams {
  question: string;
  context: string;
  /** Longest answer in tokens (default 15, as transformers' question-answering pipeline). */
  maxAnswerLength?: number;
  /** Answers to return, best first (default 1). */
  topK?: number;
  /** A long context is read in windows of this many tokens, question included (default min(384, the model's positions)). */
  maxSeqLen?: number;
  /** Tokens shared by consecutive windows (default min(maxSeqLen / 2, 128)). */
  docStride?: number;
}

export interface AnswerSpan {
  text: string;
  /** Character offsets into `context` (UTF-16 code units, end exclusive). */
  start: number;
  end: number;
  /** Probability of the span: softmax(start)[s] × softmax(end)[e] over the context's tokens. */
  score: number;
}

export interface AnswerResult {
  answers: AnswerSpan[];
}

/** Hidden states of the model's body (any OPT checkpoint). */
export interface EmbedParams {
  text: string;
  /** mean over the tokens (default) or the last token's state. */
  pooling?: 'mean' | 'last';
}

export interface EmbedResult {
  embedding: number[];
  tokens: number;
}

export interface LogParams {
  level: 'info' | 'warn' | 'error';
  message: string;
}

export interface LoadProgressParams {
  message: string;
}

export const Initialize = new RequestType<InitializeParams, InitializeResult, void>('initialize');
/** Inline completion at the cursor: latency-critical. */
export const Complete = new RequestType<CompleteParams, CompletionResult, void>('opt/complete');
/** Warm-up of a document's prefix at the lowest priority (see WarmParams). */
export const Warm = new RequestType<WarmParams, WarmResult, void>('opt/warm');
/** Palette generation: runs in the background, never delays inline completions. */
export const Generate = new RequestType<GenerateParams, CompletionResult, void>('opt/generate');
/** Rewrite of a selection (the client builds the few-shot prompt): interactive priority. */
export const Rewrite = new RequestType<GenerateParams, CompletionResult, void>('opt/rewrite');
/** Needs an OPTForSequenceClassification model (EngineInfo.tasks includes 'classify'). */
export const Classify = new RequestType<ClassifyParams, ClassifyResult, void>('opt/classify');
/** Needs an OPTForQuestionAnswering model (EngineInfo.tasks includes 'answer'). */
export const Answer = new RequestType<AnswerParams, AnswerResult, void>('opt/answer');
export const Embed = new RequestType<EmbedParams, EmbedResult, void>('opt/embed');
export const Status = new RequestType0<EngineStatus, void>('opt/status');
/** Releases the model; the process exits on the following `exit` notification or when stdin closes. */
export const Shutdown = new RequestType0<void, void>('shutdown');
export const Exit = new NotificationType<void>('exit');
export const Log = new NotificationType<LogParams>('opt/log');
export const LoadProgress = new NotificationType<LoadProgressParams>('opt/loadProgress');
export const PartialResult = new ProgressType<PartialText>();

/** Error codes in replies, beyond JSON-RPC's own (-32700…-32600, MethodNotFound, InvalidParams). */
export const RuntimeErrorCodes = {
  /** The request was cancelled by the client or superseded by a newer one for the same document. */
  Cancelled: -32800,
  /** The runtime's queue is full; retry shortly. */
  Busy: -32001,
  /** A request arrived before a successful initialize. */
  NotInitialized: -32002,
  /** The model could not be loaded (message says why and what to do). */
  ModelLoadFailed: -32010,
  /** The model or generation failed. */
  GenerationFailed: -32011,
  /** The loaded checkpoint has no head for this request (message names the architecture needed). */
  WrongModelType: -32012,
  /** The device asked for cannot run the model here (message says why); another device can. */
  DeviceUnavailable: -32013,
} as const;
