// `opt serve` against a real local engine on a fixture model: routes, completions (JSON and SSE,
// n > 1, prompt arrays, stop sequences, echo), every validation error, auth, busy and disconnect
// handling; then the OpenAI client Engine round-tripping through it, and the SSE parser alone.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createOpenAiEngine } from '../../extension/src/engines/openaiClient.js';
import { type Engine, type EngineRequest } from '../../protocol/engine.js';
import { EngineBusyError, SupersededError } from '../../protocol/errors.js';
import { createLocalEngine } from '../../runtime/src/engine/localEngine.js';
import { UsageError } from '../../protocol/errors.js';
import { type OpenAiServer, startOpenAiServer } from '../../runtime/src/server/openaiServer.js';
import { SseParser } from '../../protocol/sse.js';
import { writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { tempDir } from '../helpers/decoderHarness.js';

const tmp = tempDir('openai');
after(() => tmp.remove());

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

/** Splits an SSE body by hand (not with the parser under test) and checks its framing. */
function sseFrames(text: string): string[] {
  assert.ok(text.endsWith('data: [DONE]\n\n'), `stream ends with [DONE]: ${JSON.stringify(text.slice(-40))}`);
  const frames = text.split('\n\n').slice(0, -1);
  for (const f of frames) assert.match(f, /^data: [^\n]*$/);
  return frames.map((f) => f.slice('data: '.length));
}

async function waitIdle(engine: Engine, withinMs: number): Promise<number> {
  const start = performance.now();
  for (;;) {
    const s = await engine.status();
    const queued = s.queued.inline + s.queued.interactive + s.queued.background;
    if (s.running === 0 && queued === 0) return performance.now() - start;
    if (performance.now() - start > withinMs) assert.fail(`engine still busy after ${withinMs} ms: running ${s.running}, queued ${queued}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** node:http, for what fetch won't do: a custom Host header, or hanging up mid-request. */
function rawRequest(
  url: string,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: string },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}${path}`, { method: options.method ?? 'GET', headers: options.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

describe('opt serve (OpenAI-compatible server)', () => {
  let engine: Engine;
  let server: OpenAiServer;
  const logs: string[] = [];
  const greedy = (prompt: string, options: EngineRequest['options']) =>
    engine.generate({ prompt, options: { do_sample: false, ...options }, priority: 'background' });

  before(async () => {
    const f = await writeOptCheckpoint(join(tmp.path, 'model'), { tokenizer: true, seed: 41, config: { max_position_embeddings: 2048 } });
    engine = await createLocalEngine({ model: f.dir, dtype: 'fp32', cacheDir: join(tmp.path, 'cache'), queueLimit: 16 });
    server = await startOpenAiServer(engine, { port: 0, modelName: 'opt-test', log: (l) => logs.push(l) });
  });
  after(async () => {
    await server.close();
    await engine.dispose();
  });

  test('GET /health and /v1/models', async () => {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const health = await fetch(`${server.url}/health`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: 'ok', model: 'opt-test' });
    const models = (await (await fetch(`${server.url}/v1/models`)).json()) as Json;
    assert.equal(models.object, 'list');
    assert.equal(models.data.length, 1);
    assert.equal(models.data[0].id, 'opt-test');
    assert.equal(models.data[0].object, 'model');
    assert.equal(typeof models.data[0].owned_by, 'string');
    assert.equal(models.data[0].max_model_len, 2048);
    assert.equal(((await (await fetch(`${server.url}/v1/models/opt-test`)).json()) as Json).id, 'opt-test');
    assert.equal((await fetch(`${server.url}/v1/models/nope`)).status, 404);
  });

  test("a greedy completion is the engine's own greedy text, in OpenAI's format", async () => {
    const res = await post(server.url, { model: 'opt-test', prompt: 'Hello there', max_tokens: 8, temperature: 0 });
    assert.equal(res.status, 200);
    const body = (await res.json()) as Json;
    const direct = await greedy('Hello there', { max_new_tokens: 8 });
    assert.match(body.id, /^cmpl-[0-9a-f]{32}$/);
    assert.equal(body.object, 'text_completion');
    assert.equal(typeof body.created, 'number');
    assert.equal(body.model, 'opt-test');
    assert.deepEqual(Object.keys(body.choices[0]).sort(), ['finish_reason', 'index', 'logprobs', 'stop_reason', 'text']);
    assert.equal(body.choices[0].text, direct.text);
    assert.equal(body.choices[0].index, 0);
    assert.equal(body.choices[0].logprobs, null);
    assert.equal(body.choices[0].finish_reason, direct.finishReason === 'length' ? 'length' : 'stop');
    assert.deepEqual(body.usage, {
      prompt_tokens: direct.promptTokens,
      completion_tokens: direct.completionTokens,
      total_tokens: direct.promptTokens + direct.completionTokens,
    });
    // max_tokens defaults to OpenAI's 16; the model's name may be left out.
    const dflt = (await (await post(server.url, { prompt: 'Hello there', temperature: 0 })).json()) as Json;
    assert.equal(dflt.usage.completion_tokens, (await greedy('Hello there', { max_new_tokens: 16 })).completionTokens);
  });

  test('streamed deltas add up to the non-streamed text; a final chunk carries finish_reason, then usage and [DONE]', async () => {
    const request = { prompt: 'Streaming is', max_tokens: 24, min_tokens: 24, temperature: 0 };
    const whole = (await (await post(server.url, request)).json()) as Json;
    const res = await post(server.url, { ...request, stream: true, stream_options: { include_usage: true } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /^text\/event-stream/);
    const frames = sseFrames(await res.text());
    assert.equal(frames.at(-1), '[DONE]');
    const chunks = frames.slice(0, -1).map((f) => JSON.parse(f) as Json);
    const usage = chunks.at(-1);
    assert.deepEqual(usage.choices, []);
    assert.deepEqual(usage.usage, whole.usage);
    const textChunks = chunks.slice(0, -1);
    assert.ok(textChunks.length > 2, `${textChunks.length} chunks`);
    for (const c of textChunks) {
      assert.equal(c.object, 'text_completion');
      assert.equal(c.id, chunks[0].id);
      assert.equal(c.model, 'opt-test');
      assert.equal(c.choices.length, 1);
      assert.equal(c.choices[0].index, 0);
      assert.equal(c.choices[0].logprobs, null);
    }
    assert.deepEqual(
      textChunks.slice(0, -1).map((c) => c.choices[0].finish_reason),
      textChunks.slice(0, -1).map(() => null),
    );
    assert.equal(textChunks.at(-1).choices[0].finish_reason, 'length');
    assert.equal(textChunks.map((c) => c.choices[0].text).join(''), whole.choices[0].text);
    // Without stream_options there is no usage chunk.
    const plain = sseFrames(await (await post(server.url, { ...request, stream: true })).text())
      .slice(0, -1)
      .map((f) => JSON.parse(f) as Json);
    assert.ok(plain.every((c) => c.usage === undefined && c.choices.length === 1));
  });

  test('n > 1 and prompt arrays: one choice per prompt and sample, seeded, usage summed', async () => {
    const request = { prompt: ['Once upon a time', 'def main('], n: 2, max_tokens: 6, min_tokens: 6, temperature: 0.9, seed: 7 };
    const a = (await (await post(server.url, request)).json()) as Json;
    const b = (await (await post(server.url, request)).json()) as Json;
    assert.deepEqual(
      a.choices.map((c: Json) => c.index),
      [0, 1, 2, 3],
    );
    assert.deepEqual(
      a.choices.map((c: Json) => c.text),
      b.choices.map((c: Json) => c.text),
      'a seed makes the request reproducible',
    );
    assert.notEqual(a.choices[0].text, a.choices[1].text, 'the samples of one prompt differ');
    const p0 = await greedy('Once upon a time', { max_new_tokens: 1 });
    const p1 = await greedy('def main(', { max_new_tokens: 1 });
    assert.deepEqual(a.usage, {
      prompt_tokens: p0.promptTokens + p1.promptTokens,
      completion_tokens: 24,
      total_tokens: p0.promptTokens + p1.promptTokens + 24,
    });
    // Streamed, each index gets its deltas and its own final chunk; the texts match the JSON answer.
    const frames = sseFrames(await (await post(server.url, { ...request, stream: true })).text())
      .slice(0, -1)
      .map((f) => JSON.parse(f) as Json);
    const texts = ['', '', '', ''];
    const finals = [0, 0, 0, 0];
    for (const c of frames) {
      assert.equal(c.choices.length, 1);
      texts[c.choices[0].index] += c.choices[0].text;
      if (c.choices[0].finish_reason) finals[c.choices[0].index]!++;
    }
    assert.deepEqual(
      texts,
      a.choices.map((c: Json) => c.text),
    );
    assert.deepEqual(finals, [1, 1, 1, 1]);
  });

  test('stop sequences end the text before them (streamed too, never leaking a part); echo prepends the prompt', async () => {
    const free = await greedy('Stop here', { max_new_tokens: 20, min_new_tokens: 20 });
    // A stop sequence from the middle of the free text, ending inside a later token.
    let at = 6;
    while (free.text.indexOf(free.text.slice(at, at + 4)) < at) at++;
    const stop = free.text.slice(at, at + 4);
    assert.equal(stop.length, 4);
    const request = { prompt: 'Stop here', max_tokens: 20, temperature: 0, stop: ['never-appears', stop] };
    const json = (await (await post(server.url, request)).json()) as Json;
    assert.equal(json.choices[0].text, free.text.slice(0, at));
    assert.equal(json.choices[0].finish_reason, 'stop');
    assert.equal(json.choices[0].stop_reason, stop);
    const frames = sseFrames(await (await post(server.url, { ...request, stream: true })).text())
      .slice(0, -1)
      .map((f) => JSON.parse(f) as Json);
    assert.equal(frames.map((c) => c.choices[0].text).join(''), free.text.slice(0, at));
    assert.equal(frames.at(-1).choices[0].finish_reason, 'stop');
    // A single string works as well as an array.
    assert.equal(((await (await post(server.url, { ...request, stop })).json()) as Json).choices[0].text, free.text.slice(0, at));
    // echo
    const echoed = (await (await post(server.url, { prompt: 'Stop here', max_tokens: 5, temperature: 0, echo: true })).json()) as Json;
    assert.equal(echoed.choices[0].text, 'Stop here' + (await greedy('Stop here', { max_new_tokens: 5 })).text);
    const echoStream = sseFrames(
      await (await post(server.url, { prompt: 'Stop here', max_tokens: 5, temperature: 0, echo: true, stream: true })).text(),
    );
    assert.equal(
      echoStream
        .slice(0, -1)
        .map((f) => (JSON.parse(f) as Json).choices[0].text)
        .join(''),
      echoed.choices[0].text,
    );
  });

  test('every bad field is refused with an OpenAI-style 400 naming it', async () => {
    const cases: [unknown, string | null][] = [
      [[1, 2], null],
      [{ prompt: 'x', foo: 1 }, 'foo'],
      [{}, 'prompt'],
      [{ prompt: 5 }, 'prompt'],
      [{ prompt: [] }, 'prompt'],
      [{ prompt: [1, 2, 3] }, 'prompt'],
      [{ prompt: ['a', 3] }, 'prompt'],
      [{ prompt: 'x', max_tokens: -1 }, 'max_tokens'],
      [{ prompt: 'x', max_tokens: 0 }, 'max_tokens'],
      [{ prompt: 'x', max_tokens: 2.5 }, 'max_tokens'],
      [{ prompt: 'x', max_tokens: '8' }, 'max_tokens'],
      [{ prompt: 'x', temperature: -0.1 }, 'temperature'],
      [{ prompt: 'x', temperature: 2.5 }, 'temperature'],
      [{ prompt: 'x', temperature: 'hot' }, 'temperature'],
      [{ prompt: 'x', top_p: 0 }, 'top_p'],
      [{ prompt: 'x', top_p: 1.5 }, 'top_p'],
      [{ prompt: 'x', n: 0 }, 'n'],
      [{ prompt: 'x', n: 129 }, 'n'],
      [{ prompt: ['a', 'b'], n: 100 }, 'n'],
      [{ prompt: 'x', stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
      [{ prompt: 'x', stop: 3 }, 'stop'],
      [{ prompt: 'x', stop: [''] }, 'stop'],
      [{ prompt: 'x', stream: 'yes' }, 'stream'],
      [{ prompt: 'x', stream_options: { include_usage: true } }, 'stream_options'],
      [{ prompt: 'x', stream: true, stream_options: { include_usage: 1 } }, 'stream_options'],
      [{ prompt: 'x', seed: 1.5 }, 'seed'],
      [{ prompt: 'x', echo: 'yes' }, 'echo'],
      [{ prompt: 'x', logprobs: 1 }, 'logprobs'],
      [{ prompt: 'x', presence_penalty: 0.5 }, 'presence_penalty'],
      [{ prompt: 'x', frequency_penalty: 3 }, 'frequency_penalty'],
      [{ prompt: 'x', logit_bias: { 50: 10 } }, 'logit_bias'],
      [{ prompt: 'x', best_of: 3 }, 'best_of'],
      [{ prompt: 'x', suffix: 'tail' }, 'suffix'],
      [{ prompt: 'x', user: 3 }, 'user'],
      [{ prompt: 'x', top_k: -2 }, 'top_k'],
      [{ prompt: 'x', repetition_penalty: 0 }, 'repetition_penalty'],
      [{ prompt: 'x', typical_p: 2 }, 'typical_p'],
      [{ prompt: 'x', no_repeat_ngram_size: -1 }, 'no_repeat_ngram_size'],
      [{ prompt: 'x', max_tokens: 4, min_tokens: 5 }, 'min_tokens'],
      [{ prompt: 'x', truncate_prompt_tokens: 0 }, 'truncate_prompt_tokens'],
    ];
    for (const [body, param] of cases) {
      const res = await post(server.url, body);
      const json = (await res.json()) as Json;
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.deepEqual(Object.keys(json.error).sort(), ['code', 'message', 'param', 'type'], JSON.stringify(body));
      assert.equal(json.error.type, 'invalid_request_error');
      assert.equal(json.error.param, param, JSON.stringify(body));
      assert.ok(json.error.message.length > 10);
    }
    // What is accepted as "off": nulls, zero penalties, an empty logit_bias, top_k -1, best_of = n.
    const ok = await post(server.url, {
      prompt: 'x',
      max_tokens: 2,
      temperature: null,
      top_p: null,
      stop: null,
      logprobs: null,
      presence_penalty: 0,
      frequency_penalty: 0,
      logit_bias: {},
      top_k: -1,
      best_of: 1,
      user: 'me',
      suffix: null,
    });
    assert.equal(ok.status, 200, await ok.clone().text());
    const badJson = await post(server.url, '{"prompt": ');
    assert.equal(badJson.status, 400);
    assert.equal(((await badJson.json()) as Json).error.code, 'invalid_json');
    const wrongModel = await post(server.url, { prompt: 'x', model: 'gpt-4' });
    assert.equal(wrongModel.status, 404);
    assert.equal(((await wrongModel.json()) as Json).error.code, 'model_not_found');
    const text = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      body: '{"prompt":"x"}',
      headers: { 'content-type': 'text/plain' },
    });
    assert.equal(text.status, 415);
    const get = await fetch(`${server.url}/v1/completions`);
    assert.equal(get.status, 405);
    assert.equal(get.headers.get('allow'), 'POST');
    assert.equal((await fetch(`${server.url}/v1/models`, { method: 'POST' })).status, 405);
    const chat = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', body: '{}' });
    assert.equal(chat.status, 404);
    assert.equal(typeof ((await chat.json()) as Json).error.message, 'string');
  });

  test('a body over maxBodyBytes is refused with 413', async () => {
    const small = await startOpenAiServer(engine, { port: 0, maxBodyBytes: 256 });
    try {
      const res = await post(small.url, { prompt: 'x'.repeat(1000) });
      assert.equal(res.status, 413);
      assert.equal(((await res.json()) as Json).error.code, 'request_too_large');
      // Chunked (no Content-Length): counted while reading.
      const chunked = await rawRequest(small.url, '/v1/completions', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
        body: JSON.stringify({ prompt: 'y'.repeat(1000) }),
      });
      assert.equal(chunked.status, 413);
      assert.equal((await post(small.url, { prompt: 'fits', max_tokens: 2 })).status, 200);
    } finally {
      await small.close();
    }
  });

  test('with an API key, only /health is open; without one, only loopback binds and loopback Host names', async () => {
    const keyed = await startOpenAiServer(engine, { port: 0, apiKey: 'sekret-key' });
    try {
      assert.equal((await fetch(`${keyed.url}/health`)).status, 200);
      const missing = await fetch(`${keyed.url}/v1/models`);
      assert.equal(missing.status, 401);
      assert.equal(missing.headers.get('www-authenticate'), 'Bearer');
      assert.equal(((await missing.json()) as Json).error.code, 'invalid_api_key');
      assert.equal((await fetch(`${keyed.url}/v1/models`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
      assert.equal((await fetch(`${keyed.url}/v1/models`, { headers: { authorization: 'Bearer sekret-key-and-more' } })).status, 401);
      assert.equal((await post(keyed.url, { prompt: 'x', max_tokens: 2 })).status, 401);
      assert.equal((await fetch(`${keyed.url}/v1/models`, { headers: { authorization: 'Bearer sekret-key' } })).status, 200);
      assert.equal((await post(keyed.url, { prompt: 'x', max_tokens: 2 }, { authorization: 'Bearer sekret-key' })).status, 200);
    } finally {
      await keyed.close();
    }
    // Refused before anything listens (these never bind).
    for (const host of ['0.0.0.0', '::', '192.168.1.10']) {
      await assert.rejects(
        startOpenAiServer(engine, { host, port: 0 }),
        (e: Error) => e instanceof UsageError && /API key/.test(e.message) && e.message.includes(host),
      );
    }
    await assert.rejects(startOpenAiServer(engine, { port: 0, apiKey: '' }), UsageError);
    // DNS rebinding: a keyless server answers loopback Host names only.
    const rebound = await rawRequest(server.url, '/v1/models', { headers: { host: 'evil.example:80' } });
    assert.equal(rebound.status, 403);
    assert.equal((await rawRequest(server.url, '/v1/models', { headers: { host: 'localhost' } })).status, 200);
  });

  test('keys: blank ones refused at start, both sides trimmed (finding 12)', async () => {
    for (const apiKey of [' ', '\t \n', '\n']) {
      await assert.rejects(
        startOpenAiServer(engine, { port: 0, apiKey }),
        (e: Error) => e instanceof UsageError && /blank/.test(e.message),
      );
      await assert.rejects(
        startOpenAiServer(engine, { host: '0.0.0.0', port: 0, apiKey }),
        (e: Error) => e instanceof UsageError && /blank/.test(e.message),
      );
    }
    for (const apiKey of ['k\u0000y', 'kéy', 'k\ny'])
      await assert.rejects(
        startOpenAiServer(engine, { port: 0, apiKey }),
        (e: Error) => e instanceof UsageError && /printable ASCII/.test(e.message),
      );
    // A key read with its newline (OPT_API_KEY from a file) is the key without it, as a client's is.
    const keyed = await startOpenAiServer(engine, { port: 0, apiKey: '  sekret key\n' });
    try {
      for (const authorization of ['Bearer sekret key', 'bearer   sekret key  ', 'BEARER\tsekret key']) {
        assert.equal((await rawRequest(keyed.url, '/v1/models', { headers: { authorization } })).status, 200, authorization);
      }
      for (const authorization of [
        'Bearer sekret',
        'Bearer sekretkey',
        'Bearer  ',
        'Bearer',
        'sekret key',
        'Basic sekret key',
        'Bearersekret key',
      ]) {
        assert.equal((await rawRequest(keyed.url, '/v1/models', { headers: { authorization } })).status, 401, authorization);
      }
    } finally {
      await keyed.close();
    }
  });

  test('the Host header is parsed, not pattern-matched: only exact loopback names with an optional port (finding 12)', async () => {
    for (const host of [
      'localhost',
      'LocalHost:8000',
      '127.0.0.1',
      '127.0.0.1:1',
      '127.255.3.4:65535',
      '[::1]',
      '[::1]:8000',
      '[0:0:0:0:0:0:0:1]:1',
      '[::ffff:127.0.0.1]',
    ]) {
      assert.equal((await rawRequest(server.url, '/v1/models', { headers: { host } })).status, 200, host);
    }
    for (const host of [
      '127.0.0.1:1@evil.com',
      '[::1].evil.com',
      '[::1]evil.com',
      '[::1]:80@evil.com',
      'localhost.evil.com',
      'localhost@evil.com',
      '127.0.0.1.evil.com',
      'evil.com#127.0.0.1',
      'localhost:',
      'localhost:80:80',
      'localhost:99999',
      'localhost:-1',
      'localhost:0x50',
      '[localhost]',
      '[127.0.0.1]',
      '127.0.0.01',
      '127.1',
      '::1',
      '[::2]',
      '[fe80::1%25lo]',
      '[::1',
      'localhost.',
      'user@localhost',
      '0.0.0.0',
      ' ', // ' ' arrives empty (node:http would replace '' with its own Host)
    ]) {
      const res = await rawRequest(server.url, '/v1/models', { headers: { host } });
      assert.equal(res.status, 403, JSON.stringify(host));
      assert.equal((JSON.parse(res.body) as Json).error.code, 'forbidden_host');
    }
  });

  test('/health and /v1/models name a model folder by its base name, never its path (finding 12)', async () => {
    const s = await startOpenAiServer(engine, { port: 0, apiKey: 'k' });
    try {
      const health = await (await fetch(`${s.url}/health`)).text();
      assert.deepEqual(JSON.parse(health), { status: 'ok', model: 'model' });
      const models = await (await fetch(`${s.url}/v1/models`, { headers: { authorization: 'Bearer k' } })).text();
      assert.ok(!health.includes(tmp.path) && !models.includes(tmp.path), models);
      assert.deepEqual([(JSON.parse(models) as Json).data[0].id, (JSON.parse(models) as Json).data[0].root], ['model', 'model']);
      // Clients may name it by the base name, or by the folder as the server was given it.
      for (const model of ['model', engine.info().modelId]) {
        assert.equal((await post(s.url, { model, prompt: 'x', max_tokens: 1 }, { authorization: 'Bearer k' })).status, 200, model);
      }
    } finally {
      await s.close();
    }
  });

  test('a server with prompt lookup answers the same text as one without, in fewer passes', async () => {
    const fast = await startOpenAiServer(engine, { port: 0, modelName: 'opt-test', speculation: { prompt_lookup_num_tokens: 6 } });
    try {
      for (const prompt of ['one two three one two three one two', 'a = 1\nb = 2\na = 1\nb =']) {
        const body = { prompt, max_tokens: 24, temperature: 0 };
        const plain = (await (await post(server.url, body)).json()) as Json;
        const looked = (await (await post(fast.url, body)).json()) as Json;
        assert.equal(looked.choices[0].text, plain.choices[0].text, prompt);
        assert.deepEqual(looked.usage, plain.usage);
      }
    } finally {
      await fast.close();
    }
  });

  test('opt serve takes prompt lookup as a server flag, checked before it loads anything; other sampling flags are refused', () => {
    const serve = (args: string[]) =>
      spawnSync(
        process.execPath,
        ['--import', 'tsx', 'runtime/src/cli.ts', 'serve', '--model', join(tmp.path, 'no-such-model'), '--port', '0', ...args],
        { encoding: 'utf8', timeout: 60_000 },
      );
    const cases: [string[], RegExp][] = [
      [['--prompt-lookup-num-tokens', '0'], /--prompt-lookup-num-tokens must be an integer >= 1 and <= 64, got 0/],
      [['--max-matching-ngram-size', '99'], /--max-matching-ngram-size must be an integer >= 1 and <= 64, got 99/],
      [['--temperature', '0.5'], /serve takes sampling options per request .*temperature/],
    ];
    for (const [args, message] of cases) {
      const r = serve(args);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /no-such-model|not found/, 'refused before the model is looked for');
    }
  });

  test('opt serve refuses a public bind without a key, or a blank key, before it loads anything (finding 12)', () => {
    const { OPT_API_KEY: _ignored, ...withoutKey } = process.env;
    const serve = (args: string[], env: Record<string, string> = {}) =>
      spawnSync(
        process.execPath,
        ['--import', 'tsx', 'runtime/src/cli.ts', 'serve', '--model', join(tmp.path, 'no-such-model'), '--port', '0', ...args],
        { encoding: 'utf8', timeout: 60_000, env: { ...withoutKey, ...env } },
      );
    const cases: [string[], Record<string, string>, RegExp][] = [
      [['--host', '0.0.0.0'], {}, /binding 0\.0\.0\.0 .*without authentication/],
      [['--host', '0.0.0.0'], { OPT_API_KEY: ' ' }, /API key is blank/],
      [[], { OPT_API_KEY: ' ' }, /API key is blank/],
      [['--api-key', '  '], {}, /API key is blank/],
    ];
    for (const [args, env, message] of cases) {
      const r = serve(args, env);
      assert.notEqual(r.status, 0, r.stderr);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /no-such-model|not found/, 'refused before the model is looked for');
    }
  });

  test('more choices than the engine queue can ever take: a 400 naming the limit, never a 429 (finding 10)', async () => {
    await waitIdle(engine, 1000);
    // Idle engine, queue limit 16: 17 rows could never run, whether from n, from prompts, or both.
    for (const [body, param] of [
      [{ prompt: 'busy', n: 17 }, 'n'],
      [{ prompt: 'busy', n: 128 }, 'n'],
      [{ prompt: Array.from({ length: 17 }, (_, i) => `p${i}`) }, 'prompt'],
      [{ prompt: Array.from({ length: 200 }, (_, i) => `p${i}`) }, 'prompt'],
      [{ prompt: ['a', 'b', 'c'], n: 6 }, 'n'],
    ] as const) {
      const res = await post(server.url, { ...body, max_tokens: 2 });
      const json = (await res.json()) as Json;
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.headers.get('retry-after'), null);
      assert.equal(json.error.param, param);
      assert.match(json.error.message, /at most 16\b/);
    }
    // Exactly the limit fits when idle.
    const full = await post(server.url, { prompt: ['a', 'b', 'c', 'd'], n: 4, max_tokens: 2, min_tokens: 2 });
    assert.equal(full.status, 200, await full.clone().text());
    assert.equal(((await full.json()) as Json).choices.length, 16);
    await waitIdle(engine, 1000);
  });

  test('rows that fit but not beside another request: 429 with Retry-After, and nothing is left running', async () => {
    await waitIdle(engine, 1000);
    const request = { prompt: 'busy', n: 10, max_tokens: 50, min_tokens: 50, temperature: 0 };
    const answers = await Promise.all([post(server.url, request), post(server.url, request)]);
    assert.deepEqual(answers.map((r) => r.status).sort(), [200, 429]);
    const busy = answers.find((r) => r.status === 429)!;
    assert.equal(busy.headers.get('retry-after'), '1');
    assert.equal(((await busy.json()) as Json).error.code, 'server_busy');
    await waitIdle(engine, 1000);
  });

  test('client errors are 4xx with a reason: malformed escapes, deep JSON, out-of-range sampling values (finding 11)', async () => {
    const escape = await fetch(`${server.url}/v1/models/%ZZ`);
    assert.equal(escape.status, 400);
    assert.match(((await escape.json()) as Json).error.message, /malformed percent-escape/);
    assert.equal((await fetch(`${server.url}/v1/models/%E0%A4%A`)).status, 400);
    assert.equal(((await (await fetch(`${server.url}/v1/models/opt%2Dtest`)).json()) as Json).id, 'opt-test');
    // Nested deeper than any recursive walk survives, in a field whose error message quotes the value.
    for (const field of ['stop', 'prompt', 'model', 'max_tokens', 'stream_options', 'logit_bias', 'user']) {
      const deep = `{"prompt":"x",${JSON.stringify(field)}:${'['.repeat(200_000)}${']'.repeat(200_000)}}`.replace(
        '"prompt":"x","prompt":',
        '"prompt":',
      );
      const res = await post(server.url, deep);
      const json = (await res.json()) as Json;
      assert.equal(res.status, 400, `${field}: ${JSON.stringify(json)}`);
      assert.equal(json.error.param, field);
    }
    // The tiniest positive temperature is the greedy limit, not a failed draw.
    const direct = await greedy('Cold', { max_new_tokens: 6, min_new_tokens: 6 });
    for (const temperature of [1e-300, Number.MIN_VALUE, 1e-40, 1e-6]) {
      const res = await post(server.url, { prompt: 'Cold', max_tokens: 6, min_tokens: 6, temperature, seed: 1 });
      assert.equal(res.status, 200, `${temperature}: ${await res.clone().text()}`);
      assert.equal(((await res.json()) as Json).choices[0].text, direct.text);
    }
    // repetition_penalty has a documented range the sampler's float32 arithmetic holds to.
    for (const repetition_penalty of [1e-300, Number.MIN_VALUE, 1e-7, 1e7, 1e300]) {
      const res = await post(server.url, { prompt: 'x', max_tokens: 4, repetition_penalty });
      const json = (await res.json()) as Json;
      assert.equal(res.status, 400, String(repetition_penalty));
      assert.equal(json.error.param, 'repetition_penalty');
      assert.match(json.error.message, /from 0\.000001 to 1000000/);
    }
    for (const repetition_penalty of [1e-6, 0.5, 1, 2, 1e6]) {
      for (const temperature of [0, 1e-5, 1, 2]) {
        const res = await post(server.url, { prompt: 'x x x x', max_tokens: 8, min_tokens: 8, repetition_penalty, temperature, seed: 2 });
        assert.equal(res.status, 200, `${repetition_penalty} at ${temperature}: ${await res.clone().text()}`);
      }
    }
  });

  test('an unexpected exception is a short 500 without a stack, and the server keeps serving', async () => {
    let calls = 0;
    const info = engine.info();
    const broken: Engine = {
      info: () => info,
      async generate(request, onText) {
        calls++;
        if (request.prompt === 'throw')
          throw new TypeError(`Cannot read properties of undefined (reading 'x')\n    at secret (/home/someone/src/file.ts:1:1)`);
        if (request.prompt === 'throw-in-stream') {
          onText?.('a');
          (null as unknown as { x: number }).x = 1; // a TypeError from the engine itself
        }
        return {
          text: 'ok',
          finishReason: 'length',
          promptTokens: 1,
          completionTokens: 1,
          reusedTokens: 0,
          truncated: false,
          timings: { queuedMs: 0, prefillMs: 0, decodeMs: 0 },
        };
      },
      status: () => engine.status(),
      dispose: async () => {},
    };
    const logged: string[] = [];
    const s = await startOpenAiServer(broken, {
      port: 0,
      log: (l) => {
        logged.push(l);
        throw new Error('the log itself fails');
      },
    });
    try {
      for (const prompt of ['throw', 'throw-in-stream']) {
        for (const stream of [false, true]) {
          const res = await post(s.url, { prompt, stream });
          const text = await res.text();
          assert.doesNotMatch(text, /\bat \S+ \(|\.ts:\d+|\/home\//, 'no stack or path in the body');
          if (res.status === 500) {
            const json = JSON.parse(text) as Json;
            assert.equal(json.error.type, 'server_error');
            assert.ok(json.error.message.length < 300);
            assert.match(json.error.message, /^internal server error: /);
          } else {
            assert.equal(res.status, 200); // the stream had begun: the error is its last event
            assert.match(text, /"type":"server_error"/);
            assert.ok(text.endsWith('data: [DONE]\n\n'));
          }
        }
      }
      assert.ok(
        logged.some((l) => l.includes('at secret')),
        'the stack goes to the log',
      );
      const ok = await post(s.url, { prompt: 'fine' });
      assert.equal(ok.status, 200);
      assert.equal(((await ok.json()) as Json).choices[0].text, 'ok');
      assert.ok(calls >= 5);
    } finally {
      await s.close();
    }
  });

  test('a client that hangs up cancels its generation (JSON and streaming)', async (t) => {
    const long = { prompt: 'Go on and on', max_tokens: 1900, min_tokens: 1900, temperature: 0 };
    const fullStart = performance.now();
    await greedy(long.prompt, { max_new_tokens: 1900, min_new_tokens: 1900 });
    const fullMs = performance.now() - fullStart;

    // JSON: hang up 100 ms in.
    const controller = new AbortController();
    const req = fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(long),
      signal: controller.signal,
    });
    await new Promise((r) => setTimeout(r, 100));
    controller.abort();
    await assert.rejects(req, { name: 'AbortError' });
    const idleJson = await waitIdle(engine, fullMs / 2);

    // Streaming: read the first chunk, then hang up.
    const c2 = new AbortController();
    const res = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...long, stream: true }),
      signal: c2.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    const hungUpAt = performance.now();
    c2.abort();
    const idleStream = await waitIdle(engine, fullMs / 2);
    assert.ok(
      performance.now() - hungUpAt < fullMs / 2,
      `idle ${idleStream.toFixed(0)} ms after hang-up; a full run takes ${fullMs.toFixed(0)} ms`,
    );
    assert.ok(idleJson < fullMs / 2);
    t.diagnostic(
      `a full 1900-token run takes ${fullMs.toFixed(0)} ms; the engine was idle ${idleJson.toFixed(0)} ms (JSON) and ${idleStream.toFixed(0)} ms (stream) after the hang-up`,
    );
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(logs.filter((l) => l.includes('(client closed)')).length, 2, logs.join('\n'));
  });

  describe('the OpenAI client engine against opt serve', () => {
    test("greedy text, finish reason and token counts equal the engine's own; deltas add up; stop strings kept as locally", async () => {
      const client = createOpenAiEngine({ baseUrl: server.url });
      for (const options of [{ max_new_tokens: 12 }, { max_new_tokens: 30, min_new_tokens: 30 }]) {
        let streamed = '';
        const remote = await client.generate(
          { prompt: 'Remote prompt', options, priority: 'inline', documentId: 'doc' },
          (d) => (streamed += d),
        );
        const local = await greedy('Remote prompt', options);
        assert.equal(remote.text, local.text);
        assert.equal(streamed, remote.text);
        assert.equal(remote.finishReason, local.finishReason);
        assert.equal(remote.promptTokens, local.promptTokens);
        assert.equal(remote.completionTokens, local.completionTokens);
        assert.equal(remote.reusedTokens, 0);
        assert.ok(remote.timings.decodeMs >= 0 && remote.timings.queuedMs >= 0 && remote.timings.prefillMs >= 0);
      }
      // A stop string: the local engine keeps it at the end; so does the client (from stop_reason).
      const free = await greedy('Remote prompt', { max_new_tokens: 20, min_new_tokens: 20 });
      const stop = free.text.slice(8, 11);
      const local = await greedy('Remote prompt', { max_new_tokens: 20, stop_strings: [stop] });
      let streamed = '';
      const remote = await client.generate(
        { prompt: 'Remote prompt', options: { max_new_tokens: 20, stop_strings: [stop] }, priority: 'interactive' },
        (d) => (streamed += d),
      );
      assert.equal(local.finishReason, 'stop');
      assert.deepEqual([remote.text, remote.finishReason], [local.text, 'stop']);
      assert.equal(streamed, remote.text);
      // Seeded sampling maps to the same engine options, so it reproduces the local result.
      const sampled = { do_sample: true, temperature: 0.8, top_p: 0.9, top_k: 20, seed: 11, max_new_tokens: 10, repetition_penalty: 1.1 };
      assert.equal(
        (await client.generate({ prompt: 'Sample', options: sampled, priority: 'background' })).text,
        (await engine.generate({ prompt: 'Sample', options: sampled, priority: 'background' })).text,
      );
      // maxPromptTokens travels as vLLM's truncate_prompt_tokens.
      const long = 'A prompt with quite a few words in it, more than four tokens for sure';
      const cut = await client.generate({ prompt: long, options: { max_new_tokens: 5 }, priority: 'background', maxPromptTokens: 4 });
      const cutLocal = await engine.generate({ prompt: long, options: { max_new_tokens: 5 }, priority: 'background', maxPromptTokens: 4 });
      assert.equal(cutLocal.truncated, true);
      assert.deepEqual([cut.text, cut.promptTokens], [cutLocal.text, cutLocal.promptTokens]);
      // The model was discovered from /v1/models; status reports it.
      const s = await client.status();
      assert.equal(s.info!.modelId, 'opt-test');
      assert.equal(s.info!.maxPositions, 2048);
      assert.equal(s.running, 0);
      assert.ok(s.lastLatencyMs! > 0);
      await client.dispose();
    });

    test('baseUrl with /v1 and an explicit model work too', async () => {
      const client = createOpenAiEngine({ baseUrl: `${server.url}/v1/`, model: 'opt-test' });
      const r = await client.generate({ prompt: 'Hi', options: { max_new_tokens: 3 }, priority: 'background' });
      assert.equal(r.text, (await greedy('Hi', { max_new_tokens: 3 })).text);
      const wrong = createOpenAiEngine({ baseUrl: server.url, model: 'gpt-4' });
      await assert.rejects(wrong.generate({ prompt: 'Hi', options: {}, priority: 'background' }), /404.*does not exist/);
    });

    test("aborting mid-stream rejects with AbortError at once and stops the server's generation", async () => {
      const client = createOpenAiEngine({ baseUrl: server.url });
      const controller = new AbortController();
      let deltas = 0;
      let abortedAt = 0;
      const p = client.generate(
        { prompt: 'Abort me', options: { max_new_tokens: 1900, min_new_tokens: 1900 }, priority: 'background' },
        () => {
          if (++deltas === 3) {
            abortedAt = performance.now();
            controller.abort();
          }
        },
        controller.signal,
      );
      await assert.rejects(p, { name: 'AbortError' });
      assert.ok(performance.now() - abortedAt < 200, `rejected ${performance.now() - abortedAt} ms after abort`);
      await waitIdle(engine, 500);
      // Already aborted: rejects without a request.
      await assert.rejects(client.generate({ prompt: 'x', options: {}, priority: 'background' }, undefined, controller.signal), {
        name: 'AbortError',
      });
      // A newer inline request for the same document supersedes the older, as locally.
      const first = client.generate({
        prompt: 'a',
        options: { max_new_tokens: 1900, min_new_tokens: 1900 },
        priority: 'inline',
        documentId: 'd',
      });
      const second = client.generate({ prompt: 'b', options: { max_new_tokens: 3 }, priority: 'inline', documentId: 'd' });
      await assert.rejects(first, (e: Error) => e instanceof SupersededError);
      assert.equal((await second).completionTokens, 3);
      await waitIdle(engine, 500);
    });

    test('clear errors: wrong or missing key, busy server, server down, timeout', async () => {
      const keyed = await startOpenAiServer(engine, { port: 0, apiKey: 'k1' });
      try {
        const wrong = createOpenAiEngine({ baseUrl: keyed.url, apiKey: 'k2', model: 'x' });
        await assert.rejects(
          wrong.generate({ prompt: 'x', options: {}, priority: 'background' }),
          /the server at http:\/\/127\.0\.0\.1:\d+ rejected the API key \(HTTP 401/,
        );
        await assert.rejects(wrong.status(), /rejected the API key/);
        const none = createOpenAiEngine({ baseUrl: keyed.url });
        await assert.rejects(none.generate({ prompt: 'x', options: {}, priority: 'background' }), /requires an API key/);
        const right = createOpenAiEngine({ baseUrl: keyed.url, apiKey: 'k1' });
        assert.equal((await right.generate({ prompt: 'x', options: { max_new_tokens: 2 }, priority: 'background' })).completionTokens, 2);
        // Invalid options come back as UsageError with the server's message.
        await assert.rejects(
          right.generate({ prompt: 'x', options: { do_sample: true, top_p: 7 }, priority: 'background' }),
          (e: Error) => e instanceof UsageError && /top_p/.test(e.message),
        );
      } finally {
        await keyed.close();
      }
      // Busy: more concurrent requests than the engine's queue.
      const client = createOpenAiEngine({ baseUrl: server.url, model: 'opt-test' });
      const settled = await Promise.allSettled(
        Array.from({ length: 24 }, () =>
          client.generate({ prompt: 'q', options: { max_new_tokens: 40, min_new_tokens: 40 }, priority: 'background' }),
        ),
      );
      const busy = settled.filter((s) => s.status === 'rejected');
      assert.ok(busy.length >= 8, `${busy.length} refused`);
      for (const b of busy)
        assert.ok((b as PromiseRejectedResult).reason instanceof EngineBusyError, String((b as PromiseRejectedResult).reason));
      assert.match(((busy[0] as PromiseRejectedResult).reason as Error).message, /busy \(HTTP 429.*retry after 1 s/);
      // Down: a port nothing listens on.
      const probe = createNetServer();
      await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
      const port = (probe.address() as { port: number }).port;
      await new Promise((r) => probe.close(r));
      const down = createOpenAiEngine({ baseUrl: `http://127.0.0.1:${port}`, model: 'x' });
      await assert.rejects(
        down.generate({ prompt: 'x', options: {}, priority: 'background' }),
        new RegExp(`cannot reach http://127.0.0.1:${port}: is the server running\\?`),
      );
      await assert.rejects(down.status(), /cannot reach .*is the server running/);
      // Not an OpenAI server at all.
      const other = createHttpServer((_req, res) => res.writeHead(404).end('Not Found'));
      await new Promise<void>((r) => other.listen(0, '127.0.0.1', () => r()));
      try {
        const wrongUrl = createOpenAiEngine({ baseUrl: `http://127.0.0.1:${(other.address() as { port: number }).port}` });
        await assert.rejects(wrongUrl.status(), /has neither \/v1\/models nor \/health/);
        await assert.rejects(
          wrongUrl.generate({ prompt: 'x', options: {}, priority: 'background' }),
          /answered 404 \(HTTP 404: Not Found\): check the URL/,
        );
      } finally {
        other.close();
      }
      // Timeout: a server that accepts and never answers.
      const silent = createNetServer(() => {});
      await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
      try {
        const slow = createOpenAiEngine({
          baseUrl: `http://127.0.0.1:${(silent.address() as { port: number }).port}`,
          model: 'x',
          timeoutMs: 200,
        });
        await assert.rejects(slow.generate({ prompt: 'x', options: {}, priority: 'background' }), {
          name: 'TimeoutError',
          message: /within 200 ms/,
        });
      } finally {
        silent.close();
        (silent as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      }
    });
  });
});

describe('SSE parser', () => {
  const stream =
    ': keep-alive\n\ndata: {"a":1}\n\ndata: first\r\ndata: second\r\n\r\nevent: x\ndata:no-space\n\nid: 7\ndata: é✓🧑‍💻\r\rdata: [DONE]\n\n';
  const expected = [
    { event: 'message', data: '{"a":1}' },
    { event: 'message', data: 'first\nsecond' },
    { event: 'x', data: 'no-space' },
    { event: 'message', data: 'é✓🧑‍💻', id: '7' },
    { event: 'message', data: '[DONE]', id: '7' },
  ];
  const bytes = new TextEncoder().encode(stream);

  test('every split into two chunks, at any byte, gives the same events', () => {
    for (let cut = 0; cut <= bytes.length; cut++) {
      const decoder = new TextDecoder();
      const parser = new SseParser();
      const events = [
        ...parser.push(decoder.decode(bytes.subarray(0, cut), { stream: true })),
        ...parser.push(decoder.decode(bytes.subarray(cut), { stream: true })),
      ];
      assert.deepEqual(events, expected, `cut at ${cut}`);
    }
  });

  test('one byte at a time, and all at once', () => {
    const decoder = new TextDecoder();
    const parser = new SseParser();
    const events = [];
    for (const b of bytes) events.push(...parser.push(decoder.decode(Uint8Array.of(b), { stream: true })));
    assert.deepEqual(events, expected);
    assert.deepEqual(new SseParser().push(stream), expected);
    // An event without its blank line is incomplete.
    const p = new SseParser();
    assert.deepEqual(p.push('data: partial\n'), []);
    assert.deepEqual(p.end(), []);
  });
});
