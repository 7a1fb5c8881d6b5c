// A seeded fuzz/property suite for `opt serve`: random and mutated HTTP requests against a real
// server on loopback over a tiny random model. Whatever arrives, the answer is a well-formed HTTP
// response: 2xx with a valid body for a valid request, 4xx with an OpenAI-style JSON error for a
// client error, never a 5xx for something the client could have fixed, never a stack trace; and
// the server still answers a valid request afterwards. Every request is bounded by a timeout.

import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { Engine } from '../../protocol/engine.js';
import { createLocalEngine } from '../../runtime/src/engine/localEngine.js';
import { type OpenAiServer, startOpenAiServer } from '../../runtime/src/server/openaiServer.js';
import { writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { tempDir } from '../helpers/decoderHarness.js';

const tmp = tempDir('fuzz-serve');
after(() => tmp.remove());

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const SEED = 42;
const REQUEST_TIMEOUT_MS = 10_000;
const QUEUE_LIMIT = 16;
const KEY = 'fuzz-key';
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request over node:http (no keep-alive), bounded by REQUEST_TIMEOUT_MS. */
function send(base: string, o: { method?: string; path: string; headers?: Record<string, string>; body?: string }): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const url = new URL(base);
    const req = httpRequest(
      { host: url.hostname, port: url.port, method: o.method ?? 'GET', path: o.path, headers: o.headers, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
        res.on('error', reject);
      },
    );
    req.setTimeout(REQUEST_TIMEOUT_MS, () =>
      req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms: ${o.method ?? 'GET'} ${o.path}`)),
    );
    req.on('error', reject);
    req.end(o.body);
  });
}

const post = (base: string, body: string, headers: Record<string, string> = {}) =>
  send(base, { method: 'POST', path: '/v1/completions', headers: { 'content-type': 'application/json', ...headers }, body });

const STACK = /\n\s+at |\bat \S+ \(|\.[cm]?[jt]s:\d+:\d+/;

/** Every answer: a known status below 500, no stack, and for errors an OpenAI-style JSON body with a reason. */
function checkWellFormed(r: Reply, what: string, method = 'GET'): Json {
  assert.ok(r.status >= 200 && r.status < 500, `${what}: HTTP ${r.status} ${r.body.slice(0, 300)}`);
  assert.doesNotMatch(r.body, STACK, `${what}: a stack trace in the body`);
  if (method === 'HEAD') return undefined;
  if (r.status >= 400) {
    assert.match(String(r.headers['content-type']), /^application\/json/, what);
    const json = JSON.parse(r.body) as Json;
    assert.equal(typeof json.error?.message, 'string', `${what}: ${r.body}`);
    assert.ok(json.error.message.length > 0 && json.error.message.length < 500, `${what}: ${json.error.message}`);
    assert.equal(typeof json.error.type, 'string');
    assert.ok(json.error.param === null || typeof json.error.param === 'string');
    assert.ok(json.error.code === null || typeof json.error.code === 'string');
    return json;
  }
  if (String(r.headers['content-type']).startsWith('text/event-stream')) return undefined;
  return JSON.parse(r.body) as Json;
}

/** A 200 from /v1/completions: `rows` choices with text and a finish reason, JSON or SSE ending in [DONE]. */
function checkCompletion(r: Reply, rows: number, what: string): void {
  assert.equal(r.status, 200, `${what}: ${r.body.slice(0, 300)}`);
  checkWellFormed(r, what, 'POST');
  const seen = new Set<number>();
  if (String(r.headers['content-type']).startsWith('text/event-stream')) {
    assert.ok(r.body.endsWith('data: [DONE]\n\n'), `${what}: unterminated stream`);
    const frames = r.body.split('\n\n').slice(0, -2);
    for (const f of frames) {
      assert.match(f, /^data: [^\n]*$/);
      const c = JSON.parse(f.slice(6)) as Json;
      assert.equal(c.error, undefined, `${what}: ${f}`);
      assert.equal(c.object, 'text_completion');
      for (const ch of c.choices) {
        assert.equal(typeof ch.text, 'string');
        if (ch.finish_reason !== null) {
          assert.ok(['stop', 'length'].includes(ch.finish_reason));
          assert.ok(!seen.has(ch.index), `${what}: two final chunks for choice ${ch.index}`);
          seen.add(ch.index);
        }
      }
    }
  } else {
    const json = JSON.parse(r.body) as Json;
    assert.equal(json.object, 'text_completion');
    assert.equal(json.choices.length, rows, what);
    for (const ch of json.choices) {
      assert.equal(typeof ch.text, 'string');
      assert.ok(['stop', 'length'].includes(ch.finish_reason));
      seen.add(ch.index);
    }
    const u = json.usage;
    assert.ok(
      Number.isInteger(u.prompt_tokens) &&
        Number.isInteger(u.completion_tokens) &&
        u.total_tokens === u.prompt_tokens + u.completion_tokens,
    );
  }
  assert.deepEqual(
    [...seen].sort((a, b) => a - b),
    Array.from({ length: rows }, (_, i) => i),
    `${what}: choice indexes`,
  );
}

/** The documented ranges, restated independently of the server: in range must run, out of range must be a 400 naming the field. */
type Range = { kind: 'int' | 'real'; min: number; max: number; minOpen?: boolean; onlyZero?: boolean };
const RANGES: Record<string, Range> = {
  max_tokens: { kind: 'int', min: 1, max: MAX_SAFE },
  temperature: { kind: 'real', min: 0, max: 2 },
  top_p: { kind: 'real', min: 0, max: 1, minOpen: true },
  n: { kind: 'int', min: 1, max: QUEUE_LIMIT },
  seed: { kind: 'int', min: -MAX_SAFE, max: MAX_SAFE - 128 },
  top_k: { kind: 'int', min: -1, max: MAX_SAFE },
  repetition_penalty: { kind: 'real', min: 1e-6, max: 1e6 },
  typical_p: { kind: 'real', min: 0, max: 1, minOpen: true },
  min_p: { kind: 'real', min: 0, max: 1 },
  no_repeat_ngram_size: { kind: 'int', min: 0, max: MAX_SAFE },
  min_tokens: { kind: 'int', min: 0, max: 3 }, // up to max_tokens, 3 in the base request
  truncate_prompt_tokens: { kind: 'int', min: 1, max: MAX_SAFE },
  presence_penalty: { kind: 'real', min: -2, max: 2, onlyZero: true },
  frequency_penalty: { kind: 'real', min: -2, max: 2, onlyZero: true },
};
const inRange = (r: Range, v: number) =>
  (r.kind === 'real' || Number.isInteger(v)) && (r.minOpen ? v > r.min : v >= r.min) && v <= r.max && (!r.onlyZero || v === 0);

const TINY = [Number.MIN_VALUE, 1e-300, 1e-45, 1e-40, 1e-38, 1e-30, 1e-7, 1e-6, 1e-5];
const HUGE = [1e6, 1e7, 1e30, 1e38, 1e39, 1e300, Number.MAX_VALUE, MAX_SAFE, MAX_SAFE + 2];
/** Values at, just inside and just beyond a range's ends, tiny and huge magnitudes, fractions. */
function numberFor(r: Range): fc.Arbitrary<number> {
  const ends = [r.min, r.max, r.min - 1, r.max + 1, r.min + 0.5, r.max - 0.5, r.min - 1e-9, r.max + 1e-9, -r.min, -r.max];
  const magnitudes = [...TINY, ...HUGE].flatMap((x) => [x, -x]);
  const inside =
    r.kind === 'int'
      ? fc.integer({ min: Math.max(r.min, -MAX_SAFE), max: Math.min(r.max, MAX_SAFE) })
      : fc.double({ min: r.min, max: r.max, noNaN: true, noDefaultInfinity: true });
  return fc.oneof(
    fc.constantFrom(...ends.filter(Number.isFinite)),
    fc.constantFrom(...magnitudes),
    inside,
    fc.double({ noNaN: true, noDefaultInfinity: true }),
  );
}

/** A JSON value of any type: for "wrong type" mutations of every field. */
const anyJson = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom<unknown>(
    null,
    true,
    false,
    '',
    '8',
    [],
    {},
    [1, 2],
    ['a', 3],
    { include_usage: 'yes' },
    -1,
    0,
    1,
    2.5,
    1e300,
    -1e300,
    'x'.repeat(5000),
  ),
);

const FIELDS = [
  'model',
  'prompt',
  'max_tokens',
  'temperature',
  'top_p',
  'n',
  'stop',
  'stream',
  'stream_options',
  'seed',
  'echo',
  'logprobs',
  'presence_penalty',
  'frequency_penalty',
  'logit_bias',
  'best_of',
  'suffix',
  'user',
  'top_k',
  'repetition_penalty',
  'typical_p',
  'no_repeat_ngram_size',
  'min_tokens',
  'truncate_prompt_tokens',
  'min_p',
];

describe('opt serve under fuzzed requests', () => {
  let engine: Engine;
  let open: OpenAiServer;
  let keyed: OpenAiServer;

  before(async () => {
    const f = await writeOptCheckpoint(join(tmp.path, 'model'), { tokenizer: true, seed: 42 }); // 64 positions: any generation is short
    engine = await createLocalEngine({ model: f.dir, dtype: 'fp32', cacheDir: join(tmp.path, 'cache'), queueLimit: QUEUE_LIMIT });
    open = await startOpenAiServer(engine, { port: 0, queueLimit: QUEUE_LIMIT });
    keyed = await startOpenAiServer(engine, { port: 0, apiKey: KEY, queueLimit: QUEUE_LIMIT });
  });
  after(async () => {
    await open?.close();
    await keyed?.close();
    await engine?.dispose();
  });

  /** The liveness check after each property: a valid completion still runs on both servers. */
  async function stillServes(): Promise<void> {
    checkCompletion(await post(open.url, JSON.stringify({ prompt: 'Still there?', max_tokens: 2 })), 1, 'liveness');
    checkCompletion(
      await post(keyed.url, JSON.stringify({ prompt: 'Still there?', max_tokens: 2 }), { authorization: `Bearer ${KEY}` }),
      1,
      'liveness (keyed)',
    );
  }

  test('random paths and methods, percent-escapes included', async () => {
    const segment = fc.oneof(
      fc.constantFrom(
        '',
        'v1',
        'models',
        'completions',
        'health',
        'chat',
        'model',
        '%ZZ',
        '%',
        '%2',
        '%2F',
        '%00',
        '%E0%A4%A',
        '%C0%AF',
        '%FF',
        '..',
        '.',
        '%2e%2e',
        'v1%2Fmodels',
      ),
      fc.stringMatching(/^[A-Za-z0-9\-._~!$&'()*+,;=:@%]{0,12}$/),
      fc.uint8Array({ maxLength: 4 }).map((bytes) => [...bytes].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')),
    );
    const path = fc
      .tuple(fc.array(segment, { minLength: 1, maxLength: 5 }), fc.constantFrom('', '/', '//', '?a=1', '?%ZZ', '#x', '?'))
      .map(([s, tail]) => `/${s.join('/')}${tail}`);
    const method = fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH');
    await fc.assert(
      fc.asyncProperty(method, path, fc.constantFrom('', '{}', '{"prompt":"x","max_tokens":1}'), async (m, p, body) => {
        // node:http sends a GET/HEAD/DELETE/OPTIONS body unframed (it would arrive as a second, garbage request): bodies go with the others only.
        const withBody = body !== '' && ['POST', 'PUT', 'PATCH'].includes(m);
        const r = await send(open.url, {
          method: m,
          path: p,
          headers: withBody ? { 'content-type': 'application/json' } : {},
          body: withBody ? body : undefined,
        });
        const json = checkWellFormed(r, `${m} ${p}`, m);
        if (r.status === 200 && m !== 'HEAD' && !p.startsWith('/health') && !p.startsWith('/v1/completions'))
          assert.ok(json.object === 'list' || json.object === 'model', `${m} ${p}: ${r.body}`);
        if (/^\/v1\/models\/[^/?#]*%(?![0-9A-Fa-f]{2})/.test(p) && ['GET', 'HEAD'].includes(m))
          assert.equal(r.status, 400, `${m} ${p}: a malformed escape`);
      }),
      { seed: SEED, numRuns: 400 },
    );
    await stillServes();
  });

  test('Host headers: a keyless server answers exactly the loopback names, with an optional numeric port', async () => {
    const names: [string, boolean][] = [
      ['localhost', true],
      ['LOCALHOST', true],
      ['127.0.0.1', true],
      ['127.1.2.3', true],
      ['127.255.255.255', true],
      ['[::1]', true],
      ['[0:0:0:0:0:0:0:1]', true],
      ['[::ffff:127.0.0.1]', true],
      ['evil.com', false],
      ['localhost.', false],
      ['localhost.evil.com', false],
      ['127.0.0.1.evil.com', false],
      ['[::1].evil.com', false],
      ['127.0.0.256', false],
      ['127.0.0.01', false],
      ['127.1', false],
      ['0.0.0.0', false],
      ['[::]', false],
      ['[::2]', false],
      ['::1', false],
      ['[localhost]', false],
      ['[127.0.0.1]', false],
      ['user@localhost', false],
      ['localhost@evil.com', false],
      ['', false],
      ['[::1', false],
      ['::1]', false],
      ['128.0.0.1', false],
    ];
    const ports: [string, boolean][] = [
      ['', true],
      [':80', true],
      [':1', true],
      [':65535', true],
      [':0', true],
      [':', false],
      [':65536', false],
      [':99999', false],
      [':-1', false],
      [':0x50', false],
      [':80:80', false],
      [':1@evil.com', false],
      [':80/x', false],
      [': 80', false],
    ];
    const structured = fc
      .tuple(
        fc.constantFrom(...names),
        fc.constantFrom(...ports),
        fc.constantFrom<[string, boolean]>(
          ['', true],
          ['@evil.com', false],
          ['.evil.com', false],
          ['/', false],
          ['#', false],
          ['?', false],
        ),
      )
      .map(([[n, a], [p, b], [s, c]]) => ({ host: n + p + s, loopback: a && b && c }));
    const random = fc
      .string({ unit: fc.constantFrom(...'abclo127.0:[]@/%#?1-f '.split('')), minLength: 1, maxLength: 24 })
      .map((host) => ({ host, loopback: undefined as boolean | undefined }));
    await fc.assert(
      fc.asyncProperty(fc.oneof(structured, random), async ({ host, loopback }) => {
        const r = await send(open.url, { path: '/v1/models', headers: { host } });
        checkWellFormed(r, `Host: ${JSON.stringify(host)}`);
        assert.ok(r.status === 200 || r.status === 403, `Host: ${JSON.stringify(host)}: ${r.status}`);
        const sent = host.trim(); // HTTP drops the blanks around a header value
        if (loopback !== undefined && host === sent && host !== '')
          assert.equal(r.status === 200, loopback, `Host: ${JSON.stringify(host)}`);
        // Whatever is accepted has the shape of a loopback name with a numeric port.
        if (r.status === 200)
          assert.match(sent, /^(localhost|127(\.\d{1,3}){3}|\[[0-9a-f:.]+\])(:\d{1,5})?$/i, `Host: ${JSON.stringify(host)} was accepted`);
      }),
      { seed: SEED, numRuns: 300 },
    );
    await stillServes();
  });

  test('Authorization headers: exactly "Bearer <key>" (any case, blanks around) opens a keyed server', async () => {
    const structured = fc
      .tuple(
        fc.constantFrom(' ', '', '\t'),
        fc.constantFrom<[string, boolean]>(
          ['Bearer', true],
          ['bearer', true],
          ['BEARER', true],
          ['Basic', false],
          ['Token', false],
          ['', false],
          ['Bearerx', false],
          ['Bear', false],
        ),
        fc.constantFrom<[string, boolean]>([' ', true], ['\t', true], ['  ', true], ['', false]),
        fc.constantFrom<[string, boolean]>(
          [KEY, true],
          ['fuzz-ke', false],
          ['fuzz-keyy', false],
          ['FUZZ-KEY', false],
          ['', false],
          ['fuzz key', false],
          [`${KEY} ${KEY}`, false],
          ['"fuzz-key"', false],
        ),
        fc.constantFrom('', ' ', '\t', '  '),
      )
      .map(([lead, [scheme, a], [sep, b], [key, c], trail]) => ({ authorization: lead + scheme + sep + key + trail, ok: a && b && c }));
    const random = fc
      .string({ unit: fc.constantFrom(...'Bearer fuzz-key\t'.split('')), maxLength: 24 })
      .map((authorization) => ({ authorization, ok: /^[ \t]*bearer[ \t]+fuzz-key[ \t]*$/i.test(authorization) }));
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(structured, random),
        fc.constantFrom('/v1/models', '/v1/models/model', '/health'),
        async ({ authorization, ok }, path) => {
          const r = await send(keyed.url, { path, headers: { authorization } });
          checkWellFormed(r, `Authorization: ${JSON.stringify(authorization)}`);
          if (path === '/health') return assert.equal(r.status, 200);
          assert.equal(r.status, ok ? 200 : 401, `Authorization: ${JSON.stringify(authorization)}`);
          if (!ok) assert.equal(r.headers['www-authenticate'], 'Bearer');
        },
      ),
      { seed: SEED, numRuns: 300 },
    );
    const health = JSON.parse((await send(keyed.url, { path: '/health' })).body) as Json;
    assert.equal(health.model, 'model', "the folder's base name, not its path");
    await stillServes();
  });

  test('random, deeply nested and wrongly typed bodies', async () => {
    const randomJson = fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v));
    // Described, not built, so that a counterexample prints short; nested() builds the body.
    const deep = fc.record({
      field: fc.constantFrom(...FIELDS, 'other'),
      depth: fc.integer({ min: 1000, max: 150_000 }),
      open: fc.constantFrom('[', '{"a":'),
    });
    const nested = ({ field, depth, open }: { field: string; depth: number; open: string }) =>
      `{"prompt":"x",${JSON.stringify(field)}:${open.repeat(depth)}null${(open === '[' ? ']' : '}').repeat(depth)}}`.replace(
        '"prompt":"x","prompt":',
        '"prompt":',
      );
    const mutated = fc
      .tuple(fc.dictionary(fc.constantFrom(...FIELDS), anyJson, { minKeys: 1, maxKeys: 3 }), fc.boolean())
      .map(([fields, stream]) => JSON.stringify({ prompt: 'Hi', max_tokens: 2, ...(stream ? { stream } : {}), ...fields }));
    const broken = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.constantFrom(
        '',
        '{',
        '{"prompt":',
        'null',
        '"x"',
        '[]',
        '1e999',
        '{"prompt":"x",}',
        '\u0000',
        '{"__proto__":{"n":99},"prompt":"x"}',
      ),
    );
    const contentType = fc.constantFrom(
      'application/json',
      'application/json; charset=utf-8',
      'APPLICATION/JSON',
      'text/plain',
      'application/x-www-form-urlencoded',
      '',
    );
    await fc.assert(
      fc.asyncProperty(fc.oneof(randomJson, deep, mutated, mutated, broken), contentType, async (input, type) => {
        const body = typeof input === 'string' ? input : nested(input);
        const r = await send(open.url, { method: 'POST', path: '/v1/completions', headers: type ? { 'content-type': type } : {}, body });
        const what = `${type} ${body.slice(0, 200)}`;
        checkWellFormed(r, what, 'POST');
        assert.ok([200, 400, 404, 415].includes(r.status), `${what}: HTTP ${r.status} ${r.body.slice(0, 200)}`);
        if (r.status === 200) {
          const b = JSON.parse(body) as Json;
          const rows = (Array.isArray(b.prompt) ? b.prompt.length : 1) * (typeof b.n === 'number' ? b.n : 1);
          checkCompletion(r, rows, what);
        }
      }),
      { seed: SEED, numRuns: 400 },
    );
    await stillServes();
  });

  test('numbers at and beyond the documented ranges: inside they run, outside they are a 400 naming the field', async () => {
    const field = fc.constantFrom(...Object.keys(RANGES));
    const assignment = field.chain((k) => numberFor(RANGES[k]!).map((v) => [k, v] as const));
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(assignment, { minLength: 1, maxLength: 3, selector: ([k]) => k }),
        fc.boolean(),
        async (fields, stream) => {
          const body: Record<string, unknown> = { prompt: 'Range', max_tokens: 3, stream, ...Object.fromEntries(fields) };
          const maxTokens = fields.find(([k]) => k === 'max_tokens')?.[1] ?? 3;
          const bad = fields.filter(([k, v]) => !inRange(k === 'min_tokens' ? { ...RANGES[k]!, max: maxTokens } : RANGES[k]!, v));
          const r = await post(open.url, JSON.stringify(body));
          const what = JSON.stringify(body);
          if (bad.length === 0) return checkCompletion(r, typeof body.n === 'number' ? body.n : 1, what);
          const json = checkWellFormed(r, what, 'POST');
          assert.equal(r.status, 400, `${what}: HTTP ${r.status} ${r.body.slice(0, 200)}`);
          assert.ok(
            bad.some(([k]) => k === json.error.param),
            `${what}: named ${json.error.param}`,
          );
        },
      ),
      { seed: SEED, numRuns: 400 },
    );
    await stillServes();
  });

  test('raw mutated requests: whatever the bytes, a well-formed answer (or a closed connection)', async () => {
    const body = '{"prompt":"Hi","max_tokens":2}';
    const base = `POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`;
    const port = Number(new URL(open.url).port);
    const edit = fc.record({
      at: fc.nat(),
      op: fc.constantFrom('replace', 'insert', 'delete'),
      byte: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(10, 13, 32, 58, 0, 37, 123)),
    });
    const rawOnce = (bytes: Buffer) =>
      new Promise<string>((resolve) => {
        const socket = connect(port, '127.0.0.1');
        const chunks: Buffer[] = [];
        const finish = () => {
          clearTimeout(half);
          clearTimeout(hard);
          socket.destroy();
          resolve(Buffer.concat(chunks).toString('latin1'));
        };
        // A request still waiting for body bytes gets an end of stream after a while; then a hard limit.
        const half = setTimeout(() => socket.end(), 300);
        const hard = setTimeout(finish, 2000);
        socket.on('data', (c: Buffer) => chunks.push(c));
        socket.on('close', finish);
        socket.on('error', finish);
        socket.write(bytes);
      });
    await fc.assert(
      fc.asyncProperty(fc.array(edit, { minLength: 1, maxLength: 4 }), async (edits) => {
        const bytes = [...Buffer.from(base, 'latin1')];
        for (const e of edits) {
          const at = e.at % (bytes.length + 1);
          if (e.op === 'insert') bytes.splice(at, 0, e.byte);
          else if (e.op === 'delete') bytes.splice(at, 1);
          else bytes[Math.min(at, bytes.length - 1)] = e.byte;
        }
        const answer = await rawOnce(Buffer.from(bytes));
        const what = JSON.stringify(Buffer.from(bytes).toString('latin1'));
        if (answer === '') return; // closed without an answer (the request never completed)
        assert.match(answer, /^HTTP\/1\.1 \d{3} /, `${what}: ${JSON.stringify(answer.slice(0, 200))}`);
        for (const m of answer.matchAll(/HTTP\/1\.1 (\d{3}) /g)) assert.ok(Number(m[1]) < 500, `${what}: ${answer.slice(0, 300)}`);
        assert.doesNotMatch(answer, STACK, what);
        const status = Number(answer.slice(9, 12));
        // An error with a body (not the answer to a HEAD) carries the JSON error.
        if (status >= 400 && !/\r\ncontent-length: 0\r\n/i.test(answer))
          assert.match(answer, /\r\n\r\n\{"error":\{"message":"[^"]+/, `${what}: ${answer.slice(0, 300)}`);
      }),
      { seed: SEED, numRuns: 300 },
    );
    await stillServes();
  });
});
