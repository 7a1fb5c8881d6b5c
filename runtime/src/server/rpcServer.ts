// The runtime process's side of the protocol: serves `protocol/protocol.ts` over a pair of
// streams (the process's stdio), with the model in a local engine on a worker thread. Malformed
// input gets an error reply and the server keeps serving; the process exits when its parent goes
// away (stdin closes).

import type { Readable, Writable } from 'node:stream';
import {
  type CancellationToken,
  type MessageConnection,
  ResponseError,
  ErrorCodes,
  StreamMessageReader,
  StreamMessageWriter,
  createMessageConnection,
} from 'vscode-jsonrpc/node';
import {
  Answer,
  type AnswerParams,
  Classify,
  type ClassifyParams,
  Complete,
  type CompletionResult,
  Embed,
  type EmbedParams,
  Exit,
  Generate,
  type GenerateParams,
  Initialize,
  type InitializeParams,
  LoadProgress,
  Log,
  PartialResult,
  PROTOCOL_VERSION,
  type ProgressToken,
  Rewrite,
  RuntimeErrorCodes,
  Shutdown,
  Status,
  Warm,
  type WarmParams,
  type WarmResult,
} from '../../../protocol/protocol.js';
import { type Engine, type EngineRequest, emptyPrefixCache, emptyQueue, type Priority, type SamplingOptions, type TaskRequest, type TaskResults, WrongModelTypeError } from '../engine/engine.js';
import { createLocalEngine } from '../engine/localEngine.js';
import { DeviceUnavailableError } from '../errors.js';

export interface RpcServerOptions {
  /** Called once the connection closes (stdin ended, or `exit`). */
  onClose?: (code: number) => void;
}

/**
 * vscode-jsonrpc's reader stops at the first malformed frame of a chunk and leaves any valid
 * messages after it in its buffer until more bytes arrive. This one resumes at once, so a request
 * sent right behind garbage is still answered.
 */
class ResilientReader extends StreamMessageReader {
  private _failed = false;

  protected override fireError(error: unknown): void {
    this._failed = true;
    super.fireError(error);
  }

  static attach(input: Readable): ResilientReader {
    const reader = new ResilientReader(input);
    const self = reader as unknown as { onData(data: Buffer): void };
    const onData = self.onData.bind(reader);
    self.onData = (data: Buffer) => {
      onData(data);
      for (let rounds = 0; reader._failed && rounds < 1000; rounds++) {
        reader._failed = false;
        onData(Buffer.alloc(0)); // process what is still buffered
      }
    };
    return reader;
  }
}

export function startRpcServer(input: Readable, output: Writable, options: RpcServerOptions = {}): MessageConnection {
  const connection = createMessageConnection(ResilientReader.attach(input), new StreamMessageWriter(output));
  let engine: Engine | undefined;
  let loading: Promise<Engine> | undefined;
  let closing = false;
  const log = (level: 'info' | 'warn' | 'error', message: string) => {
    process.stderr.write(`[opt-runtime] ${level}: ${message}\n`);
    void connection.sendNotification(Log, { level, message }).catch(() => undefined);
  };

  connection.onRequest(Initialize, async (params: InitializeParams) => {
    if (params?.protocolVersion !== PROTOCOL_VERSION) {
      throw new ResponseError(ErrorCodes.InvalidRequest, `protocol version ${String(params?.protocolVersion)} is not supported: this runtime speaks version ${PROTOCOL_VERSION}; update the extension and the runtime together`);
    }
    if (typeof params.model !== 'string' || params.model === '') throw new ResponseError(ErrorCodes.InvalidParams, 'initialize needs `model`: a model folder or a Hugging Face id such as facebook/opt-125m');
    optionalPositiveInt(params.contextTokens, 'contextTokens');
    if (params.prefixCacheMiB !== undefined && (typeof params.prefixCacheMiB !== 'number' || !(params.prefixCacheMiB >= 0) || !Number.isFinite(params.prefixCacheMiB))) {
      throw new ResponseError(ErrorCodes.InvalidParams, '`prefixCacheMiB` must be a number >= 0 (0 keeps no prefix states; leave it out for the automatic size)');
    }
    const previous = engine;
    engine = undefined;
    await previous?.dispose();
    loading = createLocalEngine({
      model: params.model,
      dtype: params.dtype,
      device: params.device,
      threads: params.threads,
      cacheDir: params.cacheDir,
      queueLimit: params.queueLimit,
      prefixCacheBytes: params.prefixCacheMiB !== undefined ? params.prefixCacheMiB * 2 ** 20 : undefined,
      contextTokens: params.contextTokens,
      onProgress: (message) => void connection.sendNotification(LoadProgress, { message }).catch(() => undefined),
    });
    try {
      engine = await loading;
    } catch (err) {
      log('error', (err as Error).message);
      throw new ResponseError(err instanceof DeviceUnavailableError ? RuntimeErrorCodes.DeviceUnavailable : RuntimeErrorCodes.ModelLoadFailed, (err as Error).message);
    } finally {
      loading = undefined;
    }
    log('info', `loaded ${engine.info().modelId} (${engine.info().dtype} on ${engine.info().device}) in ${engine.info().loadSeconds.toFixed(2)} s`);
    // A GPU that failed to initialize: the model runs on the CPU, and the editor's log says why.
    if (engine.info().deviceFallback) log('warn', `device fallback: ${engine.info().deviceFallback}`);
    return { protocolVersion: PROTOCOL_VERSION, info: engine.info() };
  });

  const run = async (request: EngineRequest, token: CancellationToken, partial: ProgressToken | undefined): Promise<CompletionResult> => {
    const live = engine ?? (loading ? await loading.catch(() => undefined) : undefined);
    if (!live) throw new ResponseError(RuntimeErrorCodes.NotInitialized, 'no model is loaded: send initialize first');
    const controller = new AbortController();
    const subscription = token.onCancellationRequested(() => controller.abort());
    try {
      const onText = partial === undefined ? undefined : (delta: string) => void connection.sendProgress(PartialResult, partial, { delta }).catch(() => undefined);
      return await live.generate(request, onText, controller.signal);
    } catch (err) {
      throw toResponseError(err as Error);
    } finally {
      subscription.dispose();
    }
  };

  connection.onRequest(Complete, (params, token) => {
    requireString(params?.prefix, 'prefix');
    requireString(params?.documentId, 'documentId');
    return run({ prompt: params.prefix, options: sampling(params.options), priority: 'inline', documentId: params.documentId, maxPromptTokens: params.maxContextTokens }, token, params.partialResultToken);
  });
  connection.onRequest(Warm, async (params: WarmParams, token): Promise<WarmResult> => {
    requireString(params?.prefix, 'prefix');
    requireString(params?.documentId, 'documentId');
    optionalPositiveInt(params.maxContextTokens, 'maxContextTokens');
    const r = await run({ prompt: params.prefix, options: sampling(params.options), priority: 'warm', documentId: params.documentId, maxPromptTokens: params.maxContextTokens }, token, undefined);
    return { promptTokens: r.promptTokens, reusedTokens: r.reusedTokens, prefillMs: r.timings.prefillMs };
  });
  const generation = (priority: Priority) => (params: GenerateParams, token: CancellationToken) => {
    requireString(params?.prompt, 'prompt');
    return run({ prompt: params.prompt, options: sampling(params.options), priority }, token, params.partialResultToken);
  };
  connection.onRequest(Generate, generation('background'));
  connection.onRequest(Rewrite, generation('interactive'));

  // The heads other than generation: one pass each, at interactive priority, on checkpoints that have the head.
  const task = async <R extends TaskRequest>(request: R, token: CancellationToken): Promise<TaskResults[R['task']]> => {
    const live = engine ?? (loading ? await loading.catch(() => undefined) : undefined);
    if (!live) throw new ResponseError(RuntimeErrorCodes.NotInitialized, 'no model is loaded: send initialize first');
    const method = live[request.task]?.bind(live) as ((params: R['params'], signal: AbortSignal) => Promise<TaskResults[R['task']]>) | undefined;
    if (!method) throw toResponseError(new WrongModelTypeError(`this engine cannot ${request.task}: it needs a model run by this runtime`));
    const controller = new AbortController();
    const subscription = token.onCancellationRequested(() => controller.abort());
    try {
      return await method(request.params, controller.signal);
    } catch (err) {
      throw toResponseError(err as Error);
    } finally {
      subscription.dispose();
    }
  };
  connection.onRequest(Classify, (params: ClassifyParams, token) => {
    requireString(params?.text, 'text');
    return task({ task: 'classify', params: { text: params.text } }, token);
  });
  connection.onRequest(Answer, (params: AnswerParams, token) => {
    requireString(params?.question, 'question');
    requireString(params?.context, 'context');
    optionalPositiveInt(params.maxAnswerLength, 'maxAnswerLength');
    optionalPositiveInt(params.topK, 'topK');
    optionalPositiveInt(params.maxSeqLen, 'maxSeqLen');
    if (params.docStride !== undefined && (!Number.isInteger(params.docStride) || params.docStride < 0)) throw new ResponseError(ErrorCodes.InvalidParams, '`docStride` must be an integer >= 0');
    const { question, context, maxAnswerLength, topK, maxSeqLen, docStride } = params;
    return task({ task: 'answer', params: { question, context, maxAnswerLength, topK, maxSeqLen, docStride } }, token);
  });
  connection.onRequest(Embed, (params: EmbedParams, token) => {
    requireString(params?.text, 'text');
    if (params.pooling !== undefined && params.pooling !== 'mean' && params.pooling !== 'last') throw new ResponseError(ErrorCodes.InvalidParams, '`pooling` must be "mean" or "last"');
    return task({ task: 'embed', params: { text: params.text, pooling: params.pooling } }, token);
  });

  connection.onRequest(Status, async () => {
    if (!engine) return { info: undefined, rssBytes: process.memoryUsage().rss, recentTokensPerSecond: undefined, lastLatencyMs: undefined, queued: emptyQueue(), running: 0, prefixCache: emptyPrefixCache() };
    return engine.status();
  });

  connection.onRequest(Shutdown, async () => {
    const e = engine;
    engine = undefined;
    await e?.dispose();
  });
  connection.onNotification(Exit, () => close(0));

  // Unparseable input: say so on stderr and in a log notification, and keep reading.
  connection.onError(([error]) => log('warn', `ignored malformed input: ${error.message}`));
  connection.onClose(() => close(0));
  input.on('end', () => close(0));

  function close(code: number): void {
    if (closing) return;
    closing = true;
    void (async () => {
      await engine?.dispose().catch(() => undefined);
      connection.dispose();
      options.onClose?.(code);
    })();
  }

  connection.listen();
  return connection;
}

function requireString(v: unknown, name: string): void {
  if (typeof v !== 'string') throw new ResponseError(ErrorCodes.InvalidParams, `\`${name}\` must be a string`);
}

function optionalPositiveInt(v: unknown, name: string): void {
  if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < 1)) throw new ResponseError(ErrorCodes.InvalidParams, `\`${name}\` must be an integer >= 1`);
}

const SAMPLING_KEYS = new Set(['max_new_tokens', 'min_new_tokens', 'do_sample', 'temperature', 'top_p', 'top_k', 'typical_p', 'repetition_penalty', 'no_repeat_ngram_size', 'seed', 'stop_strings']);

function sampling(options: unknown): SamplingOptions {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object' || Array.isArray(options)) throw new ResponseError(ErrorCodes.InvalidParams, '`options` must be an object of sampling options');
  for (const key of Object.keys(options)) {
    if (!SAMPLING_KEYS.has(key)) throw new ResponseError(ErrorCodes.InvalidParams, `unknown option \`${key}\`; known: ${[...SAMPLING_KEYS].join(', ')}`);
  }
  return options as SamplingOptions;
}

function toResponseError(err: Error): ResponseError<void> {
  if (err instanceof ResponseError) return err;
  switch (err.name) {
    case 'AbortError':
      return new ResponseError(RuntimeErrorCodes.Cancelled, 'cancelled');
    case 'SupersededError':
      return new ResponseError(RuntimeErrorCodes.Cancelled, err.message);
    case 'EngineBusyError':
      return new ResponseError(RuntimeErrorCodes.Busy, err.message);
    case 'WrongModelTypeError':
      return new ResponseError(RuntimeErrorCodes.WrongModelType, err.message);
    case 'UsageError':
      return new ResponseError(ErrorCodes.InvalidParams, err.message);
    default:
      return new ResponseError(RuntimeErrorCodes.GenerationFailed, err.message);
  }
}
