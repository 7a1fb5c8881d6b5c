// `opt serve`: an OpenAI-compatible completions server (/health, /v1/models, /v1/completions with
// JSON or SSE streaming) over node:http, mapping OpenAI's request fields onto one Engine. Loopback
// by default; any other address needs an API key. A client that goes away cancels its generation.

import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Engine, EngineResult, SamplingOptions } from '../../../protocol/engine.js';
import { ApiError, clip, errorBody, rawErrorResponse, toApiError } from './apiError.js';
import { MAX_CHOICES, parseCompletionRequest } from './completionRequest.js';
import { bearerToken, checkServeAccess, decodePathSegment, isLoopbackHostHeader, publicModelName, requestPath } from './httpGuards.js';
import { sseData } from '../../../protocol/sse.js';

export { checkServeAccess } from './httpGuards.js';
export { parseCompletionRequest } from './completionRequest.js';

export interface OpenAiServerOptions {
  /** Default 127.0.0.1. Any non-loopback address requires `apiKey`. */
  host?: string;
  /** Default 8000; 0 picks a free port. */
  port?: number;
  /** When set, every request but /health needs `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** The id clients see and may send as `model`; default the engine's modelId, or the base name of its folder (never an absolute path). */
  modelName?: string;
  /**
   * The most generations the engine takes at once (LocalEngineOptions.queueLimit; default 16, its
   * default). A request for more choices (prompts × n) could never run: it is a 400, not a 429.
   */
  queueLimit?: number;
  /** Request bodies above this are refused with 413; default 1 MiB. */
  maxBodyBytes?: number;
  /**
   * Options added to every request that OpenAI's API has no field for: prompt lookup
   * (prompt_lookup_num_tokens, max_matching_ngram_size), set for the whole server as vLLM
   * configures n-gram speculation. The text is the same with or without them.
   */
  speculation?: Pick<SamplingOptions, 'prompt_lookup_num_tokens' | 'max_matching_ngram_size'>;
  log?: (line: string) => void;
}

export interface OpenAiServer {
  url: string;
  /** Stops listening, cancels the generations in flight, and closes every connection. The engine stays open. */
  close(): Promise<void>;
}

export async function startOpenAiServer(engine: Engine, options: OpenAiServerOptions = {}): Promise<OpenAiServer> {
  const host = options.host ?? '127.0.0.1';
  const apiKey = checkServeAccess(host, options.apiKey);
  const info = engine.info();
  const modelId = options.modelName ?? publicModelName(info.modelId, info.dir);
  const acceptedModels = new Set([modelId, info.modelId]);
  const maxRows = Math.min(MAX_CHOICES, options.queueLimit ?? 16);
  const maxBodyBytes = options.maxBodyBytes ?? 1 << 20;
  const created = Math.floor(Date.now() / 1000);
  const keyDigest = apiKey === undefined ? undefined : sha256(apiKey);
  const userLog = options.log ?? (() => {});
  const log = (line: string) => {
    try {
      userLog(line);
    } catch {
      // A failing log must not fail the request it describes, nor the server.
    }
  };
  const inFlight = new Set<{ abort(): void; done: Promise<void> }>();
  let closing = false;

  // node:http's own Host check answers with an empty body; ours (in route) answers like every other error.
  const server = createServer({ requireHostHeader: false }, (req, res) => {
    const started = performance.now();
    const controller = new AbortController();
    // route() is async, so whatever it throws arrives here: an ApiError as its answer, anything
    // else as a short 500 (the stack goes to the log only). Nothing escapes to crash the server.
    const done = route(req, res, controller.signal)
      .catch((err: unknown) => {
        const e = toApiError(err);
        if (e.status >= 500 && !(err instanceof ApiError))
          log(`${req.method} ${clip(req.url ?? '', 200)}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
        sendError(res, e);
      })
      .catch(() => void res.destroy())
      .finally(() => {
        inFlight.delete(entry);
        log(
          `${req.method} ${clip(req.url ?? '', 200)} ${res.statusCode}${res.writableEnded ? '' : ' (client closed)'} ${Math.round(performance.now() - started)} ms`,
        );
      });
    const entry = {
      abort: () => controller.abort(new ApiError(503, 'the server is shutting down', null, 'shutting_down', 'server_error')),
      done,
    };
    inFlight.add(entry);
  });
  // A request node:http cannot parse (bad request line, header or framing) gets a JSON 400 (431
  // for oversized headers) instead of the bare default, unless a response is already on its way.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const pending = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || pending?.headersSent) return void socket.destroy();
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    socket.end(rawErrorResponse(new ApiError(status, `malformed HTTP request${err.code ? ` (${err.code})` : ''}`, null, 'bad_request')));
  });

  async function route(req: IncomingMessage, res: ServerResponse, shutdown: AbortSignal): Promise<void> {
    if (req.headers.host === undefined && req.httpVersionMajor === 1 && req.httpVersionMinor >= 1) {
      throw new ApiError(400, 'an HTTP/1.1 request must send a Host header', null, 'missing_host');
    }
    const path = requestPath(req.url);
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
      const id = decodePathSegment(path.slice('/v1/models/'.length));
      if (!acceptedModels.has(id))
        throw new ApiError(404, `The model \`${clip(id)}\` does not exist; this server serves \`${modelId}\``, 'model', 'model_not_found');
      return sendJson(res, 200, modelObject());
    }
    if (path === '/v1/completions') {
      allow(req, ['POST']);
      return complete(req, res, shutdown);
    }
    throw new ApiError(404, `no route ${clip(path)}: this server answers /health, /v1/models and /v1/completions`, null, 'not_found');
  }

  const modelObject = () => ({
    id: modelId,
    object: 'model',
    created,
    owned_by: 'opt-complete',
    root: publicModelName(info.modelId, info.dir),
    max_model_len: info.maxPositions,
  });

  function checkAccess(req: IncomingMessage): void {
    if (keyDigest) {
      const sent = bearerToken(req.headers.authorization);
      // Compare digests: equal length, so timingSafeEqual applies and the key's length does not leak either.
      if (sent === undefined || !timingSafeEqual(sha256(sent), keyDigest)) {
        throw new ApiError(
          401,
          sent !== undefined ? 'Incorrect API key provided.' : 'Missing API key: send "Authorization: Bearer <key>".',
          null,
          'invalid_api_key',
          'invalid_request_error',
          { 'www-authenticate': 'Bearer' },
        );
      }
      return;
    }
    // Without a key the server is loopback-only; refuse other Host names so a web page that
    // rebinds its DNS name to 127.0.0.1 cannot drive it from the browser.
    const hostHeader = req.headers.host;
    if (hostHeader !== undefined && !isLoopbackHostHeader(hostHeader)) {
      throw new ApiError(
        403,
        `requests for host ${JSON.stringify(clip(hostHeader))} are refused: without an API key this server only answers loopback names (localhost, 127.x.x.x, [::1], with an optional port)`,
        null,
        'forbidden_host',
      );
    }
  }

  async function complete(req: IncomingMessage, res: ServerResponse, shutdown: AbortSignal): Promise<void> {
    const type = req.headers['content-type'];
    if (type !== undefined && !/^application\/json\b/i.test(type)) {
      throw new ApiError(415, `the body must be JSON (Content-Type: application/json), got ${clip(type)}`, null, 'unsupported_media_type');
    }
    const body = await readBody(req, res, maxBodyBytes);
    let json: unknown;
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch (err) {
      throw new ApiError(
        400,
        `We could not parse the JSON body of your request: ${clip((err as Error).message, 200)}`,
        null,
        'invalid_json',
      );
    }
    const plan = parseCompletionRequest(json, acceptedModels, modelId, maxRows);
    Object.assign(plan.options, options.speculation);
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
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => ({
      id,
      object: 'text_completion',
      created: createdAt,
      model: modelId,
      choices,
      ...extra,
    });
    const write = (payload: unknown) => {
      if (clientGone) return;
      if (!res.headersSent)
        res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
      res.write(sseData(payload));
    };

    const jobs = plan.prompts.flatMap((prompt, p) =>
      Array.from({ length: plan.n }, (_, i) => ({ prompt, index: p * plan.n + i, first: i === 0 })),
    );
    let failure: unknown;
    const results = await Promise.all(
      jobs.map(async (job) => {
        const hold = new StopHoldback(plan.stops, plan.echo ? job.prompt : '');
        const emit = (text: string, result?: EngineResult) => {
          if (!plan.stream || (text === '' && !result)) return;
          const finish = result ? openAiFinish(result) : null;
          write(
            chunk([
              {
                text,
                index: job.index,
                logprobs: null,
                finish_reason: finish,
                ...(result ? { stop_reason: matchedStop(result, plan.stops) } : {}),
              },
            ]),
          );
        };
        // The engine calls onText from its own event handler: an exception there must fail this
        // request, not escape into the engine (or the process).
        const onDelta = (send: () => void) => {
          try {
            send();
          } catch (err) {
            failure ??= err;
            cancel.abort();
          }
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
            plan.stream ? (delta) => onDelta(() => emit(hold.push(delta))) : undefined,
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
      if (error.status >= 500 && failure instanceof Error && !(failure instanceof ApiError))
        log(`generation failed: ${failure.stack ?? failure.message}`);
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

  constructor(
    private readonly _stops: readonly string[],
    private _prefix: string,
  ) {}

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
    req.once('error', (err) =>
      reject(new ApiError(400, `the request body could not be read: ${clip(err.message, 120)}`, null, 'incomplete_body')),
    );
    req.once('close', () =>
      reject(
        new ApiError(400, 'the request body ended early: the client closed the connection during the upload', null, 'incomplete_body'),
      ),
    );
  });
}

function allow(req: IncomingMessage, methods: string[]): void {
  if (!methods.includes(req.method ?? '')) {
    throw new ApiError(
      405,
      `method ${req.method} is not allowed here; use ${methods.join(' or ')}`,
      null,
      'method_not_allowed',
      'invalid_request_error',
      { allow: methods.join(', ') },
    );
  }
}

function sendError(res: ServerResponse, e: ApiError): void {
  if (res.headersSent || res.destroyed) return void res.end();
  sendJson(res, e.status, { error: errorBody(e) }, e.headers);
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();
