// `opt serve`: an OpenAI-compatible completions server (/health, /v1/models, /v1/completions with
// JSON or SSE streaming) over node:http, mapping OpenAI's request fields onto one Engine. Loopback
// by default; any other address needs an API key. A client that goes away cancels its generation.

import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Engine, EngineResult, SamplingOptions } from '../engine/engine.js';
import { UsageError } from '../errors.js';
import { sseData } from './sse.js';

export interface OpenAiServerOptions {
  /** Default 127.0.0.1. Any non-loopback address requires `apiKey`. */
  host?: string;
  /** Default 8000; 0 picks a free port. */
  port?: number;
  /** When set, every request but /health needs `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** The id clients see and may send as `model`; default the engine's modelId. */
  modelName?: string;
  /** Request bodies above this are refused with 413; default 1 MiB. */
  maxBodyBytes?: number;
  log?: (line: string) => void;
}

export interface OpenAiServer {
  url: string;
  /** Stops listening, cancels the generations in flight, and closes every connection. The engine stays open. */
  close(): Promise<void>;
}

/** An OpenAI-style error answer: status, message, and the field at fault. */
class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly type = 'invalid_request_error',
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const MAX_CHOICES = 128;
const OPENAI_DEFAULT_MAX_TOKENS = 16;

export async function startOpenAiServer(engine: Engine, options: OpenAiServerOptions = {}): Promise<OpenAiServer> {
  const host = options.host ?? '127.0.0.1';
  const { apiKey } = options;
  if (apiKey !== undefined && apiKey === '') throw new UsageError('the API key must not be empty');
  if (!isLoopback(host) && apiKey === undefined) {
    throw new UsageError(`binding ${host} would expose the completions server beyond this machine without authentication: set an API key (clients then send "Authorization: Bearer <key>"), or bind 127.0.0.1`);
  }
  const info = engine.info();
  const modelId = options.modelName ?? info.modelId;
  const acceptedModels = new Set([modelId, info.modelId]);
  const maxBodyBytes = options.maxBodyBytes ?? 1 << 20;
  const created = Math.floor(Date.now() / 1000);
  const keyDigest = apiKey === undefined ? undefined : sha256(apiKey);
  const log = options.log ?? (() => {});
  const inFlight = new Set<{ abort(): void; done: Promise<void> }>();
  let closing = false;

  const server = createServer((req, res) => {
    const started = performance.now();
    const controller = new AbortController();
    const done = route(req, res, controller.signal)
      .catch((err: unknown) => sendError(res, toApiError(err)))
      .finally(() => {
        inFlight.delete(entry);
        log(`${req.method} ${req.url} ${res.statusCode}${res.writableEnded ? '' : ' (client closed)'} ${Math.round(performance.now() - started)} ms`);
      });
    const entry = { abort: () => controller.abort(new ApiError(503, 'the server is shutting down', null, 'shutting_down', 'server_error')), done };
    inFlight.add(entry);
  });

  async function route(req: IncomingMessage, res: ServerResponse, shutdown: AbortSignal): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname.replace(/\/+$/, '') || '/';
    if (closing) throw new ApiError(503, 'the server is shutting down', null, 'shutting_down', 'server_error');
    if (path === '/health') {
      allow(req, ['GET', 'HEAD']);
      return sendJson(res, 200, { status: 'ok', model: modelId });
    }
    checkAccess(req);
    if (path === '/v1/models') {
      allow(req, ['GET', 'HEAD']);
      return sendJson(res, 200, { object: 'list', data: [modelObject()] });
    }
    if (path.startsWith('/v1/models/')) {
      allow(req, ['GET', 'HEAD']);
      const id = decodeURIComponent(path.slice('/v1/models/'.length));
      if (!acceptedModels.has(id)) throw new ApiError(404, `The model \`${id}\` does not exist; this server serves \`${modelId}\``, 'model', 'model_not_found');
      return sendJson(res, 200, modelObject());
    }
    if (path === '/v1/completions') {
      allow(req, ['POST']);
      return complete(req, res, shutdown);
    }
    throw new ApiError(404, `no route ${path}: this server answers /health, /v1/models and /v1/completions`, null, 'not_found');
  }

  const modelObject = () => ({ id: modelId, object: 'model', created, owned_by: 'opt-complete', root: info.modelId, max_model_len: info.maxPositions });

  function checkAccess(req: IncomingMessage): void {
    if (keyDigest) {
      const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
      // Compare digests: equal length, so timingSafeEqual applies and the key's length does not leak either.
      if (!m || !timingSafeEqual(sha256(m[1]!.trim()), keyDigest)) {
        throw new ApiError(401, m ? 'Incorrect API key provided.' : 'Missing API key: send "Authorization: Bearer <key>".', null, 'invalid_api_key', 'invalid_request_error', { 'www-authenticate': 'Bearer' });
      }
      return;
    }
    // Without a key the server is loopback-only; refuse other Host names so a web page that
    // rebinds its DNS name to 127.0.0.1 cannot drive it from the browser.
    const hostHeader = req.headers.host;
    if (hostHeader !== undefined && !isLoopback(hostnameOf(hostHeader)) && hostnameOf(hostHeader) !== host) {
      throw new ApiError(403, `requests for host ${hostnameOf(hostHeader)} are refused: without an API key this server only answers loopback names`, null, 'forbidden_host');
    }
  }

  async function complete(req: IncomingMessage, res: ServerResponse, shutdown: AbortSignal): Promise<void> {
    const type = req.headers['content-type'];
    if (type !== undefined && !/^application\/json\b/i.test(type)) {
      throw new ApiError(415, `the body must be JSON (Content-Type: application/json), got ${type}`, null, 'unsupported_media_type');
    }
    const body = await readBody(req, res, maxBodyBytes);
    let json: unknown;
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch (err) {
      throw new ApiError(400, `We could not parse the JSON body of your request: ${(err as Error).message}`, null, 'invalid_json');
    }
    const plan = parseCompletionRequest(json, acceptedModels, modelId);
    if (shutdown.aborted) throw shutdown.reason as ApiError; // close() began while the body was arriving

    // One signal for the generations: the client went away, the server is closing, or a sibling choice failed.
    const cancel = new AbortController();
    setMaxListeners(MAX_CHOICES + 4, cancel.signal); // one listener per choice is expected, not a leak
    let clientGone = false;
    res.once('close', () => {
      if (res.writableEnded) return;
      clientGone = true;
      cancel.abort();
    });
    const onShutdown = () => cancel.abort(shutdown.reason);
    shutdown.addEventListener('abort', onShutdown, { once: true });

    const id = `cmpl-${randomUUID().replaceAll('-', '')}`;
    const createdAt = Math.floor(Date.now() / 1000);
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => ({ id, object: 'text_completion', created: createdAt, model: modelId, choices, ...extra });
    const write = (payload: unknown) => {
      if (clientGone) return;
      if (!res.headersSent) res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
      res.write(sseData(payload));
    };

    const jobs = plan.prompts.flatMap((prompt, p) => Array.from({ length: plan.n }, (_, i) => ({ prompt, index: p * plan.n + i, first: i === 0 })));
    let failure: unknown;
    const results = await Promise.all(
      jobs.map(async (job) => {
        const hold = new StopHoldback(plan.stops, plan.echo ? job.prompt : '');
        const emit = (text: string, result?: EngineResult) => {
          if (!plan.stream || (text === '' && !result)) return;
          const finish = result ? openAiFinish(result) : null;
          write(chunk([{ text, index: job.index, logprobs: null, finish_reason: finish, ...(result ? { stop_reason: matchedStop(result, plan.stops) } : {}) }]));
        };
        try {
          const seed = plan.seed === undefined ? undefined : plan.seed + job.index;
          const result = await engine.generate(
            {
              prompt: job.prompt,
              options: { ...plan.options, ...(seed !== undefined ? { seed } : {}) },
              priority: 'background',
              ...(plan.maxPromptTokens !== undefined ? { maxPromptTokens: plan.maxPromptTokens } : {}),
            },
            plan.stream ? (delta) => emit(hold.push(delta)) : undefined,
            cancel.signal,
          );
          emit(hold.finish(stripStop(result, plan.stops)), result);
          return { job, result };
        } catch (err) {
          failure ??= err;
          cancel.abort(); // the request as a whole has failed: stop its other choices
          return undefined;
        }
      }),
    );
    shutdown.removeEventListener('abort', onShutdown);
    if (clientGone) return;
    if (failure !== undefined) {
      const error = shutdown.aborted ? (shutdown.reason as ApiError) : toApiError(failure);
      if (!res.headersSent) throw error;
      write({ error: errorBody(error) }); // mid-stream: the status line is gone, so the error travels as an event
      write('[DONE]');
      res.end();
      return;
    }
    const done = results as { job: (typeof jobs)[number]; result: EngineResult }[];
    const promptTokens = done.filter((r) => r.job.first).reduce((n, r) => n + r.result.promptTokens, 0);
    const completionTokens = done.reduce((n, r) => n + r.result.completionTokens, 0);
    const usage = { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
    if (plan.stream) {
      if (plan.includeUsage) write(chunk([], { usage }));
      write('[DONE]');
      res.end();
      return;
    }
    const choices = done.map(({ job, result }) => ({
      text: (plan.echo ? job.prompt : '') + stripStop(result, plan.stops),
      index: job.index,
      logprobs: null,
      finish_reason: openAiFinish(result),
      stop_reason: matchedStop(result, plan.stops),
    }));
    sendJson(res, 200, chunk(choices, { usage }));
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8000, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  log(`serving ${modelId} at ${url}/v1${apiKey ? ' (API key required)' : ''}`);

  let closed: Promise<void> | undefined;
  return {
    url,
    close() {
      closed ??= (async () => {
        closing = true;
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const r of inFlight) r.abort();
        server.closeIdleConnections();
        // Generations end within one decode step of the abort; don't let a stuck one hold the close.
        await Promise.race([Promise.allSettled([...inFlight].map((r) => r.done)), new Promise((r) => setTimeout(r, 2000).unref())]);
        server.closeAllConnections();
        await stopped;
      })();
      return closed;
    },
  };
}

/** What parseCompletionRequest makes of a body: the engine options plus how to shape the answer. */
interface CompletionPlan {
  prompts: string[];
  n: number;
  stream: boolean;
  includeUsage: boolean;
  echo: boolean;
  stops: string[];
  seed: number | undefined;
  options: SamplingOptions;
  /** vLLM's truncate_prompt_tokens. Longer prompts lose tokens from their start in any case (the engine's rule). */
  maxPromptTokens: number | undefined;
}

const FIELDS = new Set([
  'model', 'prompt', 'max_tokens', 'temperature', 'top_p', 'n', 'stop', 'stream', 'stream_options', 'seed', 'echo',
  'logprobs', 'presence_penalty', 'frequency_penalty', 'logit_bias', 'best_of', 'suffix', 'user',
  'top_k', 'repetition_penalty', 'typical_p', 'no_repeat_ngram_size', 'min_tokens', 'truncate_prompt_tokens',
]);

/**
 * Validates an OpenAI completions body, plus vLLM/TGI's top_k, repetition_penalty, typical_p,
 * no_repeat_ngram_size, min_tokens and truncate_prompt_tokens.
 */
export function parseCompletionRequest(body: unknown, models: ReadonlySet<string>, modelId: string): CompletionPlan {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'the request body must be a JSON object', null, 'invalid_type');
  const b = body as Record<string, unknown>;
  for (const key of Object.keys(b)) {
    if (!FIELDS.has(key)) throw new ApiError(400, `Unrecognized request argument supplied: ${key}`, key, 'unknown_parameter');
  }
  const given = (k: string) => b[k] !== undefined && b[k] !== null;
  const bad = (k: string, expected: string, code = 'invalid_type') => new ApiError(400, `${k} must be ${expected}, got ${show(b[k])}`, k, code);
  const number = (k: string, ok: (v: number) => boolean, expected: string): number | undefined => {
    if (!given(k)) return undefined;
    const v = b[k];
    if (typeof v !== 'number' || !Number.isFinite(v)) throw bad(k, expected);
    if (!ok(v)) throw bad(k, expected, 'invalid_value');
    return v;
  };
  const integer = (k: string, min: number, max: number, expected: string) => number(k, (v) => Number.isInteger(v) && v >= min && v <= max, expected);
  const flag = (k: string): boolean => {
    if (!given(k)) return false;
    if (typeof b[k] !== 'boolean') throw bad(k, 'a boolean');
    return b[k] as boolean;
  };
  const unsupported = (k: string, why: string) => new ApiError(400, `${k} is not supported by this server: ${why}`, k, 'unsupported_parameter');

  if (given('model')) {
    if (typeof b.model !== 'string') throw bad('model', 'a string');
    if (!models.has(b.model)) throw new ApiError(404, `The model \`${b.model}\` does not exist; this server serves \`${modelId}\``, 'model', 'model_not_found');
  }

  let prompts: string[];
  if (typeof b.prompt === 'string') prompts = [b.prompt];
  else if (Array.isArray(b.prompt) && b.prompt.length > 0 && b.prompt.every((p) => typeof p === 'string')) prompts = b.prompt as string[];
  else if (Array.isArray(b.prompt) && b.prompt.length > 0 && b.prompt.every((p) => typeof p === 'number' || Array.isArray(p))) throw unsupported('prompt', 'token-id prompts are not accepted; send text');
  else throw given('prompt') ? bad('prompt', 'a string or a non-empty array of strings') : new ApiError(400, 'you must provide a prompt', 'prompt', 'missing_required_parameter');

  const maxTokens = integer('max_tokens', 1, Number.MAX_SAFE_INTEGER, 'a positive integer') ?? OPENAI_DEFAULT_MAX_TOKENS;
  const temperature = number('temperature', (v) => v >= 0 && v <= 2, 'a number between 0 and 2') ?? 1;
  const topP = number('top_p', (v) => v > 0 && v <= 1, 'a number in (0, 1]');
  const n = integer('n', 1, MAX_CHOICES, `an integer from 1 to ${MAX_CHOICES}`) ?? 1;
  if (prompts.length * n > MAX_CHOICES) throw new ApiError(400, `prompts × n must be at most ${MAX_CHOICES}, got ${prompts.length} × ${n}`, 'n', 'invalid_value');
  const bestOf = integer('best_of', 1, MAX_CHOICES, 'a positive integer');
  if (bestOf !== undefined && bestOf !== n) throw unsupported('best_of', 'only best_of equal to n (no ranking by log probability)');

  let stops: string[] = [];
  if (typeof b.stop === 'string') stops = [b.stop];
  else if (Array.isArray(b.stop) && b.stop.every((s) => typeof s === 'string')) stops = b.stop as string[];
  else if (given('stop')) throw bad('stop', 'a string or an array of strings');
  if (stops.length > 4) throw new ApiError(400, `stop takes at most 4 sequences, got ${stops.length}`, 'stop', 'invalid_value');
  if (stops.some((s) => s === '')) throw new ApiError(400, 'stop sequences must not be empty', 'stop', 'invalid_value');

  const stream = flag('stream');
  let includeUsage = false;
  if (given('stream_options')) {
    const so = b.stream_options;
    if (!stream) throw new ApiError(400, 'stream_options is only allowed when stream is true', 'stream_options', 'invalid_value');
    if (typeof so !== 'object' || Array.isArray(so) || Object.keys(so as object).some((k) => k !== 'include_usage')) throw bad('stream_options', 'an object with only include_usage');
    const iu = (so as { include_usage?: unknown }).include_usage;
    if (iu !== undefined && iu !== null && typeof iu !== 'boolean') throw bad('stream_options', 'an object whose include_usage is a boolean');
    includeUsage = iu === true;
  }
  const seed = integer('seed', Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER - MAX_CHOICES, 'an integer');
  const echo = flag('echo');
  if (given('logprobs')) {
    integer('logprobs', 0, 5, 'an integer from 0 to 5');
    throw unsupported('logprobs', 'log probabilities are not returned');
  }
  for (const k of ['presence_penalty', 'frequency_penalty']) {
    if (number(k, (v) => v >= -2 && v <= 2, 'a number between -2 and 2')) throw unsupported(k, 'only 0; use repetition_penalty');
  }
  if (given('logit_bias')) {
    if (typeof b.logit_bias !== 'object' || Array.isArray(b.logit_bias)) throw bad('logit_bias', 'an object');
    if (Object.keys(b.logit_bias as object).length > 0) throw unsupported('logit_bias', 'token biases are not applied');
  }
  if (given('suffix')) {
    if (typeof b.suffix !== 'string') throw bad('suffix', 'a string');
    if (b.suffix !== '') throw unsupported('suffix', 'OPT models only continue text (no insertion)');
  }
  if (given('user') && typeof b.user !== 'string') throw bad('user', 'a string');
  const topK = integer('top_k', -1, Number.MAX_SAFE_INTEGER, 'an integer ≥ -1 (-1 or 0 disables it)');
  const repetitionPenalty = number('repetition_penalty', (v) => v > 0, 'a positive number');
  const typicalP = number('typical_p', (v) => v > 0 && v <= 1, 'a number in (0, 1]');
  const noRepeat = integer('no_repeat_ngram_size', 0, Number.MAX_SAFE_INTEGER, 'a non-negative integer');
  const minTokens = integer('min_tokens', 0, maxTokens, `an integer from 0 to max_tokens (${maxTokens})`);
  const maxPromptTokens = integer('truncate_prompt_tokens', 1, Number.MAX_SAFE_INTEGER, 'a positive integer');

  // Every option is set explicitly so the answer follows OpenAI's defaults, not the model's
  // generation_config.json (e.g. transformers' implicit top_k = 50 when sampling).
  const options: SamplingOptions = {
    max_new_tokens: maxTokens,
    ...(minTokens ? { min_new_tokens: minTokens } : {}),
    repetition_penalty: repetitionPenalty ?? 1,
    no_repeat_ngram_size: noRepeat ?? 0,
    ...(stops.length > 0 ? { stop_strings: stops } : {}),
    ...(temperature === 0
      ? { do_sample: false }
      : { do_sample: true, temperature, top_p: topP ?? 1, top_k: topK !== undefined && topK > 0 ? topK : 0, typical_p: typicalP ?? 1 }),
  };
  return { prompts, n, stream, includeUsage, echo, stops, seed, options, maxPromptTokens };
}

/** OpenAI reports both an end-of-sequence token and a stop sequence as 'stop'. */
function openAiFinish(r: EngineResult): 'stop' | 'length' {
  return r.finishReason === 'length' ? 'length' : 'stop';
}

/** The stop sequence that ended the text (vLLM's stop_reason): the engine leaves it at the end, OpenAI leaves it out. */
function matchedStop(r: EngineResult, stops: readonly string[]): string | null {
  if (r.finishReason !== 'stop') return null;
  let best: string | null = null;
  for (const s of stops) if (r.text.endsWith(s) && (best === null || s.length > best.length)) best = s;
  return best;
}

function stripStop(r: EngineResult, stops: readonly string[]): string {
  const s = matchedStop(r, stops);
  return s === null ? r.text : r.text.slice(0, r.text.length - s.length);
}

/**
 * Streams text without ever sending part of a stop sequence: the tail that could still grow into
 * one is held back until the next delta (or the end) decides.
 */
class StopHoldback {
  private _text = '';
  private _sent = 0;

  constructor(private readonly _stops: readonly string[], private _prefix: string) {}

  push(delta: string): string {
    this._text += delta;
    return this._release(this._text.length - this._held());
  }

  /** The rest of the final text (stop sequence removed) not sent yet. */
  finish(finalText: string): string {
    // The final text extends what was sent unless the engine disagrees with its own deltas; then send what was missing, if anything.
    if (finalText.startsWith(this._text.slice(0, this._sent))) this._text = finalText;
    return this._release(Math.max(this._sent, this._text.length));
  }

  private _release(upTo: number): string {
    const out = this._prefix + this._text.slice(this._sent, Math.max(this._sent, upTo));
    this._sent = Math.max(this._sent, upTo);
    if (out !== '') this._prefix = '';
    return out;
  }

  /** Length of the longest tail that is a prefix of (or is) a stop sequence. */
  private _held(): number {
    let keep = 0;
    for (const s of this._stops) {
      for (let k = Math.min(s.length, this._text.length); k > keep; k--) {
        if (this._text.endsWith(s.slice(0, k))) {
          keep = k;
          break;
        }
      }
    }
    return keep;
  }
}

function readBody(req: IncomingMessage, res: ServerResponse, limit: number): Promise<Buffer> {
  const tooLarge = () => {
    res.setHeader('connection', 'close'); // the rest of the upload is not read
    return new ApiError(413, `the request body exceeds ${limit} bytes`, null, 'request_too_large');
  };
  if (Number(req.headers['content-length'] ?? 0) > limit) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size <= limit) return void chunks.push(c);
      req.off('data', onData);
      req.resume();
      reject(tooLarge());
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
    req.once('close', () => reject(new Error('the client closed the connection during the upload')));
  });
}

function allow(req: IncomingMessage, methods: string[]): void {
  if (!methods.includes(req.method ?? '')) {
    throw new ApiError(405, `method ${req.method} is not allowed here; use ${methods.join(' or ')}`, null, 'method_not_allowed', 'invalid_request_error', { allow: methods.join(', ') });
  }
}

function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const e = err instanceof Error ? err : new Error(String(err));
  if (e.name === 'EngineBusyError') return new ApiError(429, e.message, null, 'server_busy', 'rate_limit_error', { 'retry-after': '1' });
  if (e.name === 'UsageError') return new ApiError(400, e.message, null, 'invalid_value');
  return new ApiError(500, `generation failed: ${e.message}`, null, null, 'server_error');
}

const errorBody = (e: ApiError) => ({ message: e.message, type: e.type, param: e.param, code: e.code });

function sendError(res: ServerResponse, e: ApiError): void {
  if (res.headersSent || res.destroyed) return void res.end();
  sendJson(res, e.status, { error: errorBody(e) }, e.headers);
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^(::ffff:)?127\.\d+\.\d+\.\d+$/.test(h);
}

function hostnameOf(hostHeader: string): string {
  if (hostHeader.startsWith('[')) return hostHeader.slice(0, hostHeader.indexOf(']') + 1);
  const colon = hostHeader.lastIndexOf(':');
  return colon < 0 ? hostHeader : hostHeader.slice(0, colon);
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
