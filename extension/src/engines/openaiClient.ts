// An Engine backed by any OpenAI-compatible completions server (vLLM, TGI, `opt serve`): Hugging
// Face sampling options become OpenAI fields, text streams over SSE, and HTTP or network failures
// become errors a user can act on. Pure Node (no vscode import), so tests drive it directly.

import {
  type Engine,
  type EngineInfo,
  type EngineRequest,
  type EngineResult,
  type EngineStatus,
  type FinishReason,
  emptyPrefixCache,
  emptyQueue,
} from '../../../protocol/engine.js';
import { EngineBusyError, SupersededError } from '../../../protocol/errors.js';
import { UsageError } from '../../../protocol/errors.js';
import { SAMPLING_KEYS, SAMPLING_SPEC, type SamplingOptionSpec } from '../../../protocol/sampling.js';
import { SseParser } from '../../../protocol/sse.js';

export interface OpenAiEngineOptions {
  /** The server, with or without the trailing /v1 (http://127.0.0.1:8000 and http://127.0.0.1:8000/v1 both work). */
  baseUrl: string;
  apiKey?: string;
  /** Sent as `model`; when absent, the first model /v1/models lists. */
  model?: string;
  /** A request that has not finished after this long fails (default 120 s). */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

type Choice = { text?: unknown; index?: unknown; finish_reason?: unknown; stop_reason?: unknown };
type Usage = { prompt_tokens?: number; completion_tokens?: number };

export function createOpenAiEngine(options: OpenAiEngineOptions): Engine {
  const root = options.baseUrl.trim().replace(/\/+$/, '');
  const apiBase = /\/v1$/.test(root) ? root : `${root}/v1`;
  const serverRoot = apiBase.slice(0, -'/v1'.length);
  const doFetch = options.fetch ?? globalThis.fetch;
  const timeoutMs = options.timeoutMs ?? 120_000;
  const inFlight = new Set<AbortController>();
  const inlineByDocument = new Map<string, AbortController>();
  const recent: { tokens: number; ms: number }[] = [];
  let lastLatencyMs: number | undefined;
  let discovered: { id: string; maxPositions: number } | undefined;
  let discovery: Promise<void> | undefined;
  let disposed = false;

  const headers = (json: boolean): Record<string, string> => ({
    accept: json ? 'text/event-stream, application/json' : 'application/json',
    ...(json ? { 'content-type': 'application/json' } : {}),
    ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {}),
  });

  /** GET that maps failures like generate does; undefined on 404 (the route is optional). */
  async function getJson(url: string, signal: AbortSignal): Promise<unknown> {
    let res: Response;
    try {
      res = await doFetch(url, { headers: headers(false), signal });
    } catch (err) {
      throw signal.aborted ? timeoutOrAbort(signal) : networkError(err, options.baseUrl);
    }
    if (res.status === 404) return void (await res.body?.cancel());
    if (!res.ok) throw await httpError(res, options.baseUrl, options.apiKey !== undefined);
    try {
      return await res.json();
    } catch {
      throw new Error(`${url} did not answer JSON: is ${options.baseUrl} an OpenAI-compatible server?`);
    }
  }

  async function loadModels(signal: AbortSignal): Promise<boolean> {
    const list = (await getJson(`${apiBase}/models`, signal)) as { data?: { id?: unknown; max_model_len?: unknown }[] } | undefined;
    if (!list) return false;
    const entry = list.data?.find((m) => options.model === undefined || m.id === options.model) ?? list.data?.[0];
    if (typeof entry?.id === 'string')
      discovered = { id: entry.id, maxPositions: typeof entry.max_model_len === 'number' ? entry.max_model_len : 0 };
    return true;
  }

  function info(): EngineInfo {
    return {
      modelId: options.model ?? discovered?.id ?? apiBase,
      dir: apiBase,
      architecture: 'remote',
      tasks: ['generate'],
      device: 'remote',
      dtype: 'unknown',
      maxPositions: discovered?.maxPositions ?? 0,
      loadSeconds: 0,
    };
  }

  async function generate(request: EngineRequest, onText?: (delta: string) => void, signal?: AbortSignal): Promise<EngineResult> {
    if (disposed) throw new Error('the remote engine is disposed');
    if (signal?.aborted) throw abortError();
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(timeoutError(timeoutMs, options.baseUrl)), timeoutMs);
    const onAbort = () => controller.abort(abortError());
    signal?.addEventListener('abort', onAbort, { once: true });
    const doc = request.priority === 'inline' ? request.documentId : undefined;
    if (doc !== undefined) {
      // As the local engine does: the newest inline request for a document wins.
      inlineByDocument.get(doc)?.abort(new SupersededError(`a newer completion request for ${doc} replaced this one`));
      inlineByDocument.set(doc, controller);
    }
    inFlight.add(controller);
    let finished = false;
    try {
      if (options.model === undefined && !discovered) {
        // Without a model name, ask the server once; servers without /v1/models (TGI) don't need one.
        discovery ??= loadModels(controller.signal).then(
          () => {},
          () => void (discovery = undefined),
        );
        await discovery;
      }
      const result = await complete(request, onText, controller.signal);
      finished = true;
      return result;
    } catch (err) {
      if (controller.signal.aborted) throw timeoutOrAbort(controller.signal);
      throw networkError(err, options.baseUrl);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (doc !== undefined && inlineByDocument.get(doc) === controller) inlineByDocument.delete(doc);
      inFlight.delete(controller);
      if (!finished && !controller.signal.aborted) controller.abort(); // e.g. onText threw: release the connection
    }
  }

  async function complete(
    request: EngineRequest,
    onText: ((delta: string) => void) | undefined,
    signal: AbortSignal,
  ): Promise<EngineResult> {
    const o = request.options;
    const stops = o.stop_strings ?? [];
    const body: Record<string, unknown> = { prompt: request.prompt, stream: true, stream_options: { include_usage: true } };
    const model = options.model ?? discovered?.id;
    if (model !== undefined) body.model = model;
    // Each option under its OpenAI (or vLLM) field, from the sampling spec; one left at its "off"
    // value is not sent (a strict OpenAI server refuses fields it does not know), nor is a sampling
    // warper when decoding is greedy.
    for (const key of SAMPLING_KEYS) {
      const spec: SamplingOptionSpec = SAMPLING_SPEC[key];
      const value = o[key];
      if (spec.openai === null || value === undefined || value === spec.off || (spec.samplingOnly && o.do_sample !== true)) continue;
      if (Array.isArray(value) && value.length === 0) continue;
      body[spec.openai] = value;
    }
    // OpenAI samples unless temperature is 0; transformers decodes greedily unless do_sample.
    body.temperature = o.do_sample === true ? (o.temperature ?? 1) : 0;
    if (request.maxPromptTokens !== undefined) body.truncate_prompt_tokens = request.maxPromptTokens; // vLLM's name

    const start = performance.now();
    const res = await doFetch(`${apiBase}/completions`, { method: 'POST', headers: headers(true), body: JSON.stringify(body), signal });
    const headersAt = performance.now();
    if (!res.ok) throw await httpError(res, options.baseUrl, options.apiKey !== undefined);

    let text = '';
    let chunks = 0;
    let firstAt: number | undefined;
    let finish: unknown;
    let stopReason: unknown;
    let usage: Usage | undefined;
    const take = (c: Choice) => {
      if ((typeof c.index === 'number' ? c.index : 0) !== 0) return;
      if (typeof c.text === 'string' && c.text !== '') {
        firstAt ??= performance.now();
        text += c.text;
        chunks++;
        onText?.(c.text);
      }
      if (c.finish_reason !== undefined && c.finish_reason !== null) finish = c.finish_reason;
      if ('stop_reason' in c) stopReason = c.stop_reason;
    };

    if (!/text\/event-stream/i.test(res.headers.get('content-type') ?? '')) {
      // A server that ignored `stream` answered with one JSON completion.
      const json = (await res.json()) as { choices?: Choice[]; usage?: Usage };
      for (const c of json.choices ?? []) take(c);
      usage = json.usage;
    } else {
      if (!res.body) throw new Error(`${options.baseUrl} sent an empty stream`);
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      const parser = new SseParser();
      let done = false;
      while (!done) {
        const { value, done: ended } = await reader.read();
        if (ended) break;
        for (const event of parser.push(decoder.decode(value, { stream: true }))) {
          if (event.data === '[DONE]') {
            done = true;
            break;
          }
          let payload: { choices?: Choice[]; usage?: Usage; error?: unknown };
          try {
            payload = JSON.parse(event.data);
          } catch {
            throw new Error(`${options.baseUrl} sent a stream event that is not JSON: ${event.data.slice(0, 80)}`);
          }
          if (payload.error !== undefined)
            throw new Error(`the server at ${options.baseUrl} failed during generation: ${errorMessage(payload)}`);
          if (payload.usage) usage = payload.usage;
          for (const c of payload.choices ?? []) take(c);
        }
      }
      if (done) await reader.cancel().catch(() => {});
      else if (finish === undefined) throw new Error(`the server at ${options.baseUrl} closed the stream before the completion finished`);
    }

    const finishReason = mapFinish(finish, stopReason, stops.length > 0);
    if (finishReason === 'stop' && typeof stopReason === 'string' && stops.includes(stopReason)) {
      // OpenAI servers drop the stop sequence; the local engine (like transformers) keeps it: match the local engine.
      text += stopReason;
      onText?.(stopReason);
    }
    const end = performance.now();
    const decodeMs = firstAt === undefined ? 0 : end - firstAt;
    const completionTokens = usage?.completion_tokens ?? chunks;
    recent.push({ tokens: completionTokens, ms: decodeMs });
    if (recent.length > 16) recent.shift();
    lastLatencyMs = end - start;
    return {
      text,
      finishReason,
      promptTokens: usage?.prompt_tokens ?? 0,
      reusedTokens: 0,
      completionTokens,
      truncated: false,
      // Measured here: queued = until the response headers, prefill = until the first text, decode = the rest.
      timings: { queuedMs: headersAt - start, prefillMs: (firstAt ?? end) - headersAt, decodeMs },
    };
  }

  return {
    info,
    generate,
    async status(): Promise<EngineStatus> {
      const limitMs = Math.min(timeoutMs, 10_000);
      const signal = AbortSignal.timeout(limitMs);
      try {
        // /v1/models (vLLM, opt serve) names the model; /health alone (TGI) at least says the server is up.
        if (!(await loadModels(signal)) && (await getJson(`${serverRoot}/health`, signal)) === undefined) {
          throw new Error(`${options.baseUrl} has neither /v1/models nor /health: is it an OpenAI-compatible server?`);
        }
      } catch (err) {
        throw (err as Error).name === 'TimeoutError'
          ? new Error(`cannot reach ${options.baseUrl}: no answer within ${limitMs} ms`, { cause: err })
          : err;
      }
      const tokens = recent.reduce((n, r) => n + r.tokens, 0);
      const ms = recent.reduce((n, r) => n + r.ms, 0);
      return {
        info: info(),
        rssBytes: 0, // the server's memory is not reported over this API
        recentTokensPerSecond: ms > 0 ? (tokens / ms) * 1000 : undefined,
        lastLatencyMs,
        queued: emptyQueue(),
        running: inFlight.size, // requests of this client still open
        prefixCache: emptyPrefixCache(),
      };
    },
    async dispose(): Promise<void> {
      disposed = true;
      for (const c of inFlight) c.abort(abortError());
    },
  };
}

/** 'stop' from an OpenAI server covers both EOS and a stop sequence; vLLM and `opt serve` tell them apart with stop_reason. */
function mapFinish(finish: unknown, stopReason: unknown, hadStops: boolean): FinishReason {
  if (finish === 'length') return 'length';
  if (finish === 'eos_token') return 'eos'; // TGI's spelling
  if (finish === 'stop') {
    if (typeof stopReason === 'string') return 'stop';
    if (stopReason === null || typeof stopReason === 'number') return 'eos';
    return hadStops ? 'stop' : 'eos';
  }
  return 'stop';
}

function abortError(): Error {
  return new DOMException('The operation was aborted', 'AbortError');
}

function timeoutError(ms: number, url: string): Error {
  const e = new Error(`no complete answer from ${url} within ${ms} ms`);
  e.name = 'TimeoutError';
  return e;
}

/** The reason the request's controller was aborted: the caller, a newer inline request, a timeout, or dispose. */
function timeoutOrAbort(signal: AbortSignal): Error {
  const r = signal.reason;
  return r instanceof Error || r instanceof DOMException ? (r as Error) : abortError();
}

/** fetch's "TypeError: fetch failed" says nothing; its cause holds the socket error. */
function networkError(err: unknown, url: string): Error {
  if (!(err instanceof TypeError) || err.cause === undefined) return err as Error; // not from fetch (e.g. thrown by onText)
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const code = cause?.code ?? cause?.message ?? err.message;
  if (code === 'ECONNREFUSED') return new Error(`cannot reach ${url}: is the server running? (connection refused)`, { cause: err });
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return new Error(`cannot reach ${url}: the host name does not resolve`, { cause: err });
  if (code === 'UND_ERR_SOCKET' || code === 'ECONNRESET')
    return new Error(`the connection to ${url} broke before the answer was complete`, { cause: err });
  return new Error(`cannot reach ${url}: ${code}`, { cause: err });
}

async function httpError(res: Response, url: string, sentKey: boolean): Promise<Error> {
  const raw = await res.text().catch(() => '');
  let message: string;
  try {
    message = errorMessage(JSON.parse(raw));
  } catch {
    message = raw.slice(0, 200) || res.statusText;
  }
  const what = `(HTTP ${res.status}: ${message})`;
  switch (true) {
    case res.status === 401 || res.status === 403:
      return new Error(
        sentKey
          ? `the server at ${url} rejected the API key ${what}: check the API key setting`
          : `the server at ${url} requires an API key ${what}: set one in the settings`,
      );
    case res.status === 429: {
      const retry = res.headers.get('retry-after');
      return new EngineBusyError(`the server at ${url} is busy ${what}${retry ? `; retry after ${retry} s` : ''}`);
    }
    case res.status === 404:
      return new Error(
        `the server at ${url} answered 404 ${what}: check the URL (an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1) and the model name`,
      );
    case res.status === 400 || res.status === 413 || res.status === 422:
      return new UsageError(`the server at ${url} refused the request ${what}`);
    default:
      return new Error(`the server at ${url} failed ${what}`);
  }
}

/** OpenAI and vLLM send {error: {message}}, TGI {error: "…"}, FastAPI {detail}. */
function errorMessage(body: unknown): string {
  const b = body as { error?: unknown; message?: unknown; detail?: unknown };
  if (typeof b?.error === 'string') return b.error;
  const inner = b?.error as { message?: unknown } | undefined;
  if (typeof inner?.message === 'string') return inner.message;
  if (typeof b?.message === 'string') return b.message;
  if (b?.detail !== undefined) return typeof b.detail === 'string' ? b.detail : JSON.stringify(b.detail);
  return JSON.stringify(body).slice(0, 200);
}
