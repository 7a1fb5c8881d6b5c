// The runtime process's side of the protocol: serves `protocol/protocol.ts` over a pair of
// streams (the process's stdio), with the model in a local engine on a worker thread. Malformed
// input gets an error reply and the server keeps serving; the process exits when its parent goes
// away (stdin closes).
//
// What comes in is checked at this boundary, in three layers, before anything acts on it:
// - framing (frameReader.ts): a malformed or oversized frame is reported and skipped, and reading
//   resumes at the next `Content-Length:` header;
// - the JSON-RPC 2.0 envelope (screen below): a non-object, an empty or any batch, a bad id, method
//   or params structure gets Invalid Request (id null when the id cannot be read) or Invalid Params;
// - each method's parameters (the specs below): every field's type and range, unknown fields
//   refused, with an InvalidParams message that says what was wrong and what is allowed.
//
// At most one engine exists at a time. Initializes are served one after another and the newest
// wins: one that a newer initialize (or shutdown, or the end of stdin) overtakes replies Cancelled
// at once, is never started if it had not started, and disposes its engine as soon as its load
// ends if it had. A request waits for the newest initialize.

import { stat, statfs } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import {
  type CancellationToken,
  type Message,
  type MessageConnection,
  ResponseError,
  ErrorCodes,
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
  type InitializeResult,
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
import {
  type Engine,
  type EngineRequest,
  emptyPrefixCache,
  emptyQueue,
  type Priority,
  type SamplingOptions,
  type TaskRequest,
  type TaskResults,
} from '../../../protocol/engine.js';
import { MAX_TOKENS, SAMPLING_KEYS, SAMPLING_SPEC, isSamplingKey, validSamplingValue } from '../../../protocol/sampling.js';
import { createLocalEngine } from '../engine/localEngine.js';
import { DeviceUnavailableError, WrongModelTypeError, toRpcError } from '../../../protocol/errors.js';
import type { DtypeChoice } from '../model.js';
import { DEVICES, checkThreads } from '../session.js';
import { FrameReader } from './frameReader.js';

export interface RpcServerOptions {
  /**
   * Called once the connection closes (stdin ended, or `exit`). `clean` is false when a model load
   * was still running, or an engine did not finish shutting down within CLOSE_GRACE_MS: its worker
   * may be inside native code, whose threads process.exit would wait for, so the caller should end
   * the process without waiting (cli.ts: SIGKILL).
   */
  onClose?: (code: number, clean: boolean) => void;
  /** Frames declaring a longer body are refused (default frameReader.ts DEFAULT_MAX_FRAME_BYTES, 64 MiB). */
  maxFrameBytes?: number;
}

/** How long a closing server waits for its engine to shut down before reporting an unclean close. */
export const CLOSE_GRACE_MS = 5000;
/** Malformed-input warnings logged per LOG_WINDOW_MS; the rest are counted in the next one. */
const LOG_BURST = 20;
const LOG_WINDOW_MS = 10_000;

export function startRpcServer(input: Readable, output: Writable, options: RpcServerOptions = {}): MessageConnection {
  const writer = new StreamMessageWriter(output);
  const reply = (message: unknown) => quietly(() => writer.write(message as Message));
  const reader = new FrameReader(input, { maxFrameBytes: options.maxFrameBytes, screen: (value) => screen(value, reply, malformed) });
  const connection = createMessageConnection(reader, writer);
  let closing = false;
  const log = (level: 'info' | 'warn' | 'error', message: string) => {
    process.stderr.write(`[opt-runtime] ${level}: ${message}\n`);
    quietly(() => connection.sendNotification(Log, { level, message }));
  };
  let burst = { since: 0, shown: 0, hidden: 0 };
  function malformed(reason: string): void {
    const now = Date.now();
    if (now - burst.since > LOG_WINDOW_MS) {
      if (burst.hidden > 0) log('warn', `ignored malformed input: ${burst.hidden} more messages were not shown`);
      burst = { since: now, shown: 0, hidden: 0 };
    }
    if (burst.shown++ < LOG_BURST) log('warn', `ignored malformed input: ${reason}`);
    else burst.hidden++;
  }

  // The engine's life cycle. `engine` is the one requests use; `generation` counts initializes,
  // shutdowns and the close, so a load can tell it has been overtaken; `serial` runs loads and
  // disposals one at a time, so no two engines are ever loading at once.
  let engine: Engine | undefined;
  let generation = 0;
  /** Initializes and shutdowns received, in order of arrival. */
  let initializes = 0;
  let serial: Promise<unknown> = Promise.resolve();
  /** The newest initialize's or shutdown's work: requests wait for it. */
  let newest: Promise<unknown> = Promise.resolve();
  /** Loads under way (createLocalEngine not yet settled). */
  let loading = 0;
  /** Rejects the reply of each initialize still waiting or loading, when a newer one overtakes it. */
  const overtake = new Set<(reason: ResponseError<void>) => void>();
  const enqueue = <T>(work: () => Promise<T>): Promise<T> => {
    const done = serial.then(work);
    serial = done.catch(() => undefined);
    return done;
  };
  /** Takes the engine away from requests and supersedes every initialize in progress. */
  const retire = (why: string): Engine | undefined => {
    generation++;
    for (const reject of overtake) reject(new ResponseError(RuntimeErrorCodes.Cancelled, why));
    overtake.clear();
    const previous = engine;
    engine = undefined;
    return previous;
  };

  connection.onRequest(Initialize, async (raw: InitializeParams): Promise<InitializeResult> => {
    const version = (raw as unknown as Record<string, unknown> | undefined)?.protocolVersion;
    if (version !== PROTOCOL_VERSION) {
      throw new ResponseError(
        ErrorCodes.InvalidRequest,
        `protocol version ${String(version)} is not supported: this runtime speaks version ${PROTOCOL_VERSION}; update the extension and the runtime together`,
      );
    }
    // An initialize with bad parameters is refused without touching one already under way; among
    // valid ones, the order of arrival decides which is the newest, whatever its checks take.
    const params = readParams('initialize', raw, INITIALIZE);
    const ticket = ++initializes;
    if (params.cacheDir !== undefined) await checkCacheDir(params.cacheDir);
    if (ticket !== initializes || closing)
      throw new ResponseError(
        RuntimeErrorCodes.Cancelled,
        'superseded by a newer initialize or shutdown while its parameters were checked',
      );
    const previous = retire(`superseded by a newer initialize (${params.model})`);
    const mine = generation;
    const current = () => mine === generation && !closing;
    let overtaken!: (reason: ResponseError<void>) => void;
    const overtakenReply = new Promise<never>((_, reject) => (overtaken = reject));
    overtake.add(overtaken);
    const work = enqueue(async (): Promise<InitializeResult> => {
      await previous?.dispose().catch(() => undefined);
      if (!current()) throw new ResponseError(RuntimeErrorCodes.Cancelled, 'superseded before it started');
      let loaded: Engine;
      loading++;
      try {
        loaded = await createLocalEngine({
          model: params.model,
          dtype: params.dtype,
          device: params.device,
          threads: params.threads,
          cacheDir: params.cacheDir,
          queueLimit: params.queueLimit,
          prefixCacheBytes: params.prefixCacheMiB !== undefined ? params.prefixCacheMiB * 2 ** 20 : undefined,
          contextTokens: params.contextTokens,
          assistantModel: params.assistantModel,
          onProgress: (message) => {
            if (current()) quietly(() => connection.sendNotification(LoadProgress, { message }));
          },
        });
      } catch (err) {
        if (!current()) throw new ResponseError(RuntimeErrorCodes.Cancelled, 'superseded while loading');
        log('error', (err as Error).message);
        throw new ResponseError(
          err instanceof DeviceUnavailableError ? RuntimeErrorCodes.DeviceUnavailable : RuntimeErrorCodes.ModelLoadFailed,
          (err as Error).message,
        );
      } finally {
        loading--;
      }
      if (!current()) {
        // Overtaken while it loaded: no one will use it.
        await loaded.dispose().catch(() => undefined);
        throw new ResponseError(RuntimeErrorCodes.Cancelled, 'superseded while loading');
      }
      engine = loaded;
      const info = loaded.info();
      log('info', `loaded ${info.modelId} (${info.dtype} on ${info.device}) in ${info.loadSeconds.toFixed(2)} s`);
      // A GPU that failed to initialize: the model runs on the CPU, and the editor's log says why.
      if (info.deviceFallback) log('warn', `device fallback: ${info.deviceFallback}`);
      return { protocolVersion: PROTOCOL_VERSION, info };
    });
    newest = work;
    work.catch(() => undefined);
    try {
      return await Promise.race([work, overtakenReply]);
    } finally {
      overtake.delete(overtaken);
    }
  });

  /** The engine of the newest initialize, once it has loaded; undefined if none did. */
  const currentEngine = async (): Promise<Engine | undefined> => {
    for (;;) {
      if (engine) return engine;
      const waitingFor = newest;
      await waitingFor.catch(() => undefined);
      if (waitingFor === newest) return engine;
    }
  };

  const run = async (request: EngineRequest, token: CancellationToken, partial: ProgressToken | undefined): Promise<CompletionResult> => {
    const live = await currentEngine();
    if (!live) throw new ResponseError(RuntimeErrorCodes.NotInitialized, 'no model is loaded: send initialize first');
    const controller = new AbortController();
    const subscription = token.onCancellationRequested(() => controller.abort());
    try {
      const onText =
        partial === undefined ? undefined : (delta: string) => quietly(() => connection.sendProgress(PartialResult, partial, { delta }));
      return await live.generate(request, onText, controller.signal);
    } catch (err) {
      throw toResponseError(err);
    } finally {
      subscription.dispose();
    }
  };

  connection.onRequest(Complete, (raw, token) => {
    const p = readParams(Complete.method, raw, COMPLETE);
    return run(
      { prompt: p.prefix, options: p.options, priority: 'inline', documentId: p.documentId, maxPromptTokens: p.maxContextTokens },
      token,
      p.partialResultToken,
    );
  });
  connection.onRequest(Warm, async (raw: WarmParams, token): Promise<WarmResult> => {
    const p = readParams(Warm.method, raw, WARM);
    const r = await run(
      { prompt: p.prefix, options: p.options, priority: 'warm', documentId: p.documentId, maxPromptTokens: p.maxContextTokens },
      token,
      undefined,
    );
    return { promptTokens: r.promptTokens, reusedTokens: r.reusedTokens, prefillMs: r.timings.prefillMs };
  });
  const generationRequest = (method: string, priority: Priority) => (raw: GenerateParams, token: CancellationToken) => {
    const p = readParams(method, raw, GENERATE);
    return run({ prompt: p.prompt, options: p.options, priority }, token, p.partialResultToken);
  };
  connection.onRequest(Generate, generationRequest(Generate.method, 'background'));
  connection.onRequest(Rewrite, generationRequest(Rewrite.method, 'interactive'));

  // The heads other than generation: one pass each, at interactive priority, on checkpoints that have the head.
  const task = async <R extends TaskRequest>(request: R, token: CancellationToken): Promise<TaskResults[R['task']]> => {
    const live = await currentEngine();
    if (!live) throw new ResponseError(RuntimeErrorCodes.NotInitialized, 'no model is loaded: send initialize first');
    const method = live[request.task]?.bind(live) as
      ((params: R['params'], signal: AbortSignal) => Promise<TaskResults[R['task']]>) | undefined;
    if (!method) throw toResponseError(new WrongModelTypeError(`this engine cannot ${request.task}: it needs a model run by this runtime`));
    const controller = new AbortController();
    const subscription = token.onCancellationRequested(() => controller.abort());
    try {
      return await method(request.params, controller.signal);
    } catch (err) {
      throw toResponseError(err);
    } finally {
      subscription.dispose();
    }
  };
  connection.onRequest(Classify, (raw: ClassifyParams, token) => {
    const { text } = readParams(Classify.method, raw, CLASSIFY);
    return task({ task: 'classify', params: { text } }, token);
  });
  connection.onRequest(Answer, (raw: AnswerParams, token) => {
    const { question, context, maxAnswerLength, topK, maxSeqLen, docStride } = readParams(Answer.method, raw, ANSWER);
    return task({ task: 'answer', params: { question, context, maxAnswerLength, topK, maxSeqLen, docStride } }, token);
  });
  connection.onRequest(Embed, (raw: EmbedParams, token) => {
    const { text, pooling } = readParams(Embed.method, raw, EMBED);
    return task({ task: 'embed', params: { text, pooling } }, token);
  });

  connection.onRequest(Status, async () => {
    const live = engine;
    if (!live)
      return {
        info: undefined,
        rssBytes: process.memoryUsage().rss,
        recentTokensPerSecond: undefined,
        lastLatencyMs: undefined,
        queued: emptyQueue(),
        running: 0,
        prefixCache: emptyPrefixCache(),
      };
    return live.status();
  });

  connection.onRequest(Shutdown, async () => {
    initializes++;
    const previous = retire('superseded by shutdown');
    // After any load under way, which then disposes its own engine.
    const work = enqueue(async () => {
      await previous?.dispose();
    });
    newest = work;
    await work;
  });
  connection.onNotification(Exit, () => close(0));

  // Unparseable input (from the frame reader): say so on stderr and in a log notification, and keep
  // reading. Errors that come with a message are the writer's: the parent has gone.
  connection.onError(([error, message]) => {
    if (message === undefined) malformed(error.message);
  });
  connection.onClose(() => close(0));
  input.on('end', () => close(0));

  function close(code: number): void {
    if (closing) return;
    closing = true;
    const previous = retire('the runtime is shutting down');
    void (async () => {
      let timer: NodeJS.Timeout | undefined;
      const graceful = (async () => {
        await previous?.dispose().catch(() => undefined);
        return loading === 0;
      })();
      const deadline = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), CLOSE_GRACE_MS)));
      const clean = await Promise.race([graceful, deadline]);
      clearTimeout(timer);
      connection.dispose();
      options.onClose?.(code, clean);
    })();
  }

  connection.listen();
  return connection;
}

// ---------------------------------------------------------------------------------------------
// The JSON-RPC 2.0 envelope.

/** Methods that take no parameters: an empty object or array is tolerated, and dropped. */
const NO_PARAMS = new Set<string>([Status.method, Shutdown.method, Exit.method]);

/**
 * Passes a well-formed JSON-RPC 2.0 message on to the connection; answers anything else itself
 * (Invalid Request, or Invalid Params for positional params) and drops it. Requests carry a string
 * or number id; a non-object, an empty array, or an id that cannot be read is answered with id null.
 */
function screen(value: unknown, reply: (message: unknown) => void, malformed: (reason: string) => void): Message | undefined {
  const error = (id: unknown, code: number, message: string) => ({ jsonrpc: '2.0', id: isId(id) ? id : null, error: { code, message } });
  if (Array.isArray(value)) {
    if (value.length === 0) {
      reply(error(null, ErrorCodes.InvalidRequest, 'an empty batch is not a request (JSON-RPC 2.0)'));
      return undefined;
    }
    // Batches are not served: each request in one is answered (in one array, as the spec has it).
    const why = 'batches are not supported by this runtime: send each message in its own frame';
    const replies = value
      .filter((m) => !(isObject(m) && typeof m.method === 'string' && m.id === undefined)) // notifications get no reply
      .map((m) => error(isObject(m) ? m.id : null, ErrorCodes.InvalidRequest, why));
    if (replies.length > 0) reply(replies);
    malformed(`a batch of ${value.length} messages (${why})`);
    return undefined;
  }
  if (!isObject(value)) {
    reply(
      error(null, ErrorCodes.InvalidRequest, `a message must be a JSON object (a request, notification or response), got ${kindOf(value)}`),
    );
    return undefined;
  }
  const { id, method } = value;
  const invalid = (why: string) => {
    // A notification is never answered, even an invalid one: the id tells them apart.
    if (id !== undefined || method === undefined) reply(error(id, ErrorCodes.InvalidRequest, why));
    else malformed(why);
    return undefined;
  };
  if (value.jsonrpc !== '2.0') return invalid(`\`jsonrpc\` must be "2.0", got ${kindOf(value.jsonrpc)}`);
  if (id !== undefined && !isId(id)) return invalid(`\`id\` must be a string or a number, got ${kindOf(id)}`);
  if (method === undefined) {
    // A response (the runtime sends no requests, so the connection only logs it), else nothing.
    if (id !== undefined && ('result' in value || 'error' in value)) return value as unknown as Message;
    return invalid('a message needs `method` (a request or notification) or `result`/`error` with `id` (a response)');
  }
  if (typeof method !== 'string' || method === '') return invalid(`\`method\` must be a non-empty string, got ${kindOf(method)}`);
  let params = value.params;
  if (params === null) params = undefined; // some clients send null for "no parameters"
  if (params !== undefined && typeof params !== 'object') return invalid(`\`params\` must be an object or an array, got ${kindOf(params)}`);
  const invalidParams = (why: string) => {
    if (id !== undefined) reply(error(id, ErrorCodes.InvalidParams, why));
    else malformed(`${method}: ${why}`);
    return undefined;
  };
  if (NO_PARAMS.has(method)) {
    if (params !== undefined && Object.keys(params as object).length > 0) return invalidParams(`${method} takes no parameters`);
    params = undefined;
  } else if (Array.isArray(params)) {
    return invalidParams(`${method} takes its parameters by name, in an object, not in an array`);
  }
  if (method === '$/cancelRequest' && !(isObject(params) && isId(params.id)))
    return invalidParams('$/cancelRequest needs `params.id`, the id of the request to cancel');
  const message: Record<string, unknown> = { jsonrpc: '2.0', method };
  if (id !== undefined) message.id = id;
  if (params !== undefined) message.params = params;
  return message as unknown as Message;
}

/**
 * Sends a notification whose loss does not matter. Once the connection has closed (stdin ended, and
 * the engine is still streaming), vscode-jsonrpc throws at once rather than rejecting: an uncaught
 * exception that ended the process with code 1 and a stack trace.
 */
function quietly(send: () => Promise<void>): void {
  try {
    void send().catch(() => undefined);
  } catch {
    // closed or disposed: nobody is listening
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isId = (v: unknown): v is string | number => typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v));

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  return String(v);
}

// ---------------------------------------------------------------------------------------------
// Parameters: one spec per method. A field is a function from the JSON value to the value used,
// throwing InvalidParams with what was wrong and what is allowed. Absent and null are the same.

type Field<T> = (v: unknown, name: string) => T;

function invalidParam(message: string): ResponseError<void> {
  return new ResponseError(ErrorCodes.InvalidParams, message);
}

function field<T>(expected: string, ok: (v: unknown) => boolean): { required: Field<T>; optional: Field<T | undefined> } {
  const required: Field<T> = (v, name) => {
    if (v === undefined || v === null) throw invalidParam(`\`${name}\` is required: ${expected}`);
    if (!ok(v)) throw invalidParam(`\`${name}\` must be ${expected}, got ${kindOf(v)}`);
    return v as T;
  };
  return { required, optional: (v, name) => (v === undefined || v === null ? undefined : required(v, name)) };
}

const MAX_NAME = 4096;

const int = (min: number, max: number) =>
  field<number>(`an integer >= ${min} and <= ${max}`, (v) => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max);
const num = (expected: string, ok: (n: number) => boolean) =>
  field<number>(expected, (v) => typeof v === 'number' && Number.isFinite(v) && ok(v));
const anyText = field<string>('a string', (v) => typeof v === 'string');
/** An identifier or a path: not empty, no NUL, at most MAX_NAME characters. */
const name = (what: string) =>
  field<string>(
    `${what} (a non-empty string of at most ${MAX_NAME} characters, without NUL)`,
    (v) => typeof v === 'string' && v !== '' && v.length <= MAX_NAME && !v.includes('\0'),
  );
const oneOf = <T extends string>(values: readonly T[]) =>
  field<T>(
    values.length === 2
      ? `${JSON.stringify(values[0])} or ${JSON.stringify(values[1])}`
      : `one of ${values.map((x) => JSON.stringify(x)).join(', ')}`,
    (v) => (values as readonly unknown[]).includes(v),
  );
const progressToken = field<ProgressToken>(
  `a string of at most ${MAX_NAME} characters or an integer`,
  (v) => (typeof v === 'string' && v.length <= MAX_NAME) || (typeof v === 'number' && Number.isSafeInteger(v)),
);

/** The method's parameters, each read by its field; a parameter the method does not take is refused. */
function readParams<S extends Record<string, Field<unknown>>>(
  method: string,
  params: unknown,
  spec: S,
): { [K in keyof S]: ReturnType<S[K]> } {
  const given = params ?? {};
  if (!isObject(given)) throw invalidParam(`${method} takes its parameters by name, in an object, got ${kindOf(given)}`);
  for (const key of Object.keys(given)) {
    if (!Object.hasOwn(spec, key)) throw invalidParam(`${method}: unknown parameter \`${key}\`; it takes ${Object.keys(spec).join(', ')}`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, read] of Object.entries(spec)) out[key] = read(Object.hasOwn(given, key) ? given[key] : undefined, key);
  return out as { [K in keyof S]: ReturnType<S[K]> };
}

const DTYPE_VALUES = ['auto', 'fp32', 'fp16', 'int8', 'int4'] as const satisfies readonly DtypeChoice[];
// Every dtype the loader takes is listed (a compile error here when model.ts gains one).
const _allDtypes: Exclude<DtypeChoice, (typeof DTYPE_VALUES)[number]> extends never ? true : never = true;
void _allDtypes;

const threadsField: Field<number | undefined> = (v, key) => {
  if (v === undefined || v === null) return undefined;
  try {
    return checkThreads(v, `\`${key}\``);
  } catch (err) {
    throw invalidParam((err as Error).message);
  }
};

const INITIALIZE = {
  protocolVersion: (v: unknown) => v as number, // checked first, with its own error
  model: name('a model folder or a Hugging Face id such as facebook/opt-125m').required,
  dtype: oneOf(DTYPE_VALUES).optional,
  device: oneOf(DEVICES).optional,
  threads: threadsField,
  cacheDir: name('a folder for converted models').optional,
  queueLimit: int(1, 1024).optional,
  prefixCacheMiB: num(
    `a number of MiB >= 0 and <= ${2 ** 20} (0 keeps no prefix states; leave it out for the automatic size)`,
    (n) => n >= 0 && n <= 2 ** 20,
  ).optional,
  contextTokens: int(1, MAX_TOKENS).optional,
  assistantModel: name('an assistant model folder or a Hugging Face id such as facebook/opt-125m').optional,
};

/** Sampling options: each known one checked against the spec (the engine checks how they combine); unknown ones refused. */
const sampling: Field<SamplingOptions> = (v, key) => {
  if (v === undefined || v === null) return {};
  if (!isObject(v)) throw invalidParam(`\`${key}\` must be an object of sampling options, got ${kindOf(v)}`);
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    if (!isSamplingKey(k)) throw invalidParam(`unknown option \`${k}\`; known: ${SAMPLING_KEYS.join(', ')}`);
    if (x === undefined || x === null) continue;
    if (!validSamplingValue(k, x)) throw invalidParam(`\`${key}.${k}\` must be ${SAMPLING_SPEC[k].expected}, got ${kindOf(x)}`);
    out[k] = x;
  }
  return out as SamplingOptions;
};

const COMPLETE = {
  documentId: name("the document's id").required,
  prefix: anyText.required,
  suffix: anyText.optional,
  maxContextTokens: int(1, MAX_TOKENS).optional,
  options: sampling,
  partialResultToken: progressToken.optional,
};
const WARM = {
  documentId: name("the document's id").required,
  prefix: anyText.required,
  maxContextTokens: int(1, MAX_TOKENS).optional,
  options: sampling,
};
const GENERATE = {
  prompt: anyText.required,
  options: sampling,
  partialResultToken: progressToken.optional,
};
const CLASSIFY = { text: anyText.required };
const ANSWER = {
  question: anyText.required,
  context: anyText.required,
  maxAnswerLength: int(1, MAX_TOKENS).optional,
  topK: int(1, 1024).optional,
  maxSeqLen: int(1, MAX_TOKENS).optional,
  docStride: int(0, MAX_TOKENS).optional,
};
const EMBED = { text: anyText.required, pooling: oneOf(['mean', 'last'] as const).optional };

// Kernel pseudo file systems (statfs f_type): they hold no files, and creating folders in them
// ranges from failing oddly (recursive mkdir under /proc/self spun forever) to creating cgroups.
const PSEUDO_FILE_SYSTEMS: Record<number, string> = {
  0x9fa0: 'proc',
  0x62656572: 'sysfs',
  0x27e0eb: 'cgroup',
  0x63677270: 'cgroup2',
  0x64626720: 'debugfs',
  0x74726163: 'tracefs',
  0x73636673: 'securityfs',
  0x1cd1: 'devpts',
  0xcafe4a11: 'bpf',
  0x6165676c: 'pstore',
  0xde5e81e4: 'efivarfs',
  0x62656570: 'configfs',
  0xf97cff8c: 'selinuxfs',
  0x65735543: 'fusectl',
  0x19800202: 'mqueue',
};

/**
 * A `cacheDir` on a kernel pseudo file system is refused here: the loader's recursive mkdir under
 * /proc/self spun at 100 % CPU in libuv's pool, out of reach of any timeout. The nearest existing
 * folder of the path decides. Other trouble (a file in the way, no permission) is the loader's to
 * report, naming the file (errors.ts fileAccessError).
 */
async function checkCacheDir(dir: string): Promise<void> {
  if (process.platform !== 'linux') return;
  let probe = resolve(dir);
  for (;;) {
    const s = await stat(probe).catch((err: NodeJS.ErrnoException) => err);
    if (!(s instanceof Error)) break;
    if (s.code !== 'ENOENT' || dirname(probe) === probe) return;
    probe = dirname(probe);
  }
  const type = (await statfs(probe).catch(() => undefined))?.type;
  const pseudo = type === undefined ? undefined : PSEUDO_FILE_SYSTEMS[type];
  if (pseudo)
    throw invalidParam(
      `\`cacheDir\` cannot hold converted models: ${probe} is on the kernel's ${pseudo} file system; give a folder on a disk, or leave it out for ~/.cache/opt-complete`,
    );
}

function toResponseError(err: unknown): ResponseError<void> {
  if (err instanceof ResponseError) return err;
  const { code, message } = toRpcError(err);
  return new ResponseError(code, message);
}
