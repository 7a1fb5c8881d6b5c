// The robustness review of `opt rpc`, each finding pinned: overlapping initializes leave exactly
// one engine (the newest), `threads` is bounded at every entry point, the frame reader resynchronises
// after any malformed or oversized frame without buffering it, every parameter and the JSON-RPC
// envelope are checked at the boundary, and the process exits when stdin closes whatever is in flight.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { SETTING_RULES } from '../../extension/src/settings.js';
import { PROTOCOL_VERSION, RuntimeErrorCodes } from '../../protocol/protocol.js';
import { DEFAULT_MAX_FRAME_BYTES, FrameReader, JsonChecker } from '../../runtime/src/server/frameReader.js';
import { checkThreads, createSession, maxThreads } from '../../runtime/src/session.js';
import { writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { tempDir } from '../helpers/decoderHarness.js';
import { RawRuntime as Runtime, type RawReply as Reply, frameOf } from '../helpers/rawRuntime.js';

const tmp = tempDir('rpc-hardening');
after(() => tmp.remove());

const INVALID_REQUEST = -32600;
const INVALID_PARAMS = -32602;

const frame = (message: unknown) => frameOf(JSON.stringify(message));

// ---------------------------------------------------------------------------------------------
// The frame reader in-process: fast enough for properties over thousands of inputs.

function readerOn(maxFrameBytes?: number) {
  const input = new PassThrough();
  const reader = new FrameReader(input, { maxFrameBytes });
  const messages: unknown[] = [];
  const errors: string[] = [];
  reader.onError((e) => errors.push(e.message));
  reader.listen((m) => messages.push(m));
  return { reader, messages, errors, push: (b: Buffer | string) => reader.push(Buffer.isBuffer(b) ? b : Buffer.from(b, 'latin1')) };
}

describe('frame reader', () => {
  test('each malformed frame of the review is reported once, and the frame after it is read', () => {
    const cases: [string, RegExp][] = [
      ['Content-Length: abc\r\n\r\n{"jsonrpc":"2.0","id":1,"method":"x"}', /Content-Length must be a whole number of bytes, got "abc"/],
      ['a header line without any colon\r\n\r\n', /a header line without a colon/],
      ['Content-Length: -5\r\n\r\n{}', /got "-5"/],
      ['Content-Length: 13\n\n{"jsonrpc":1}', /must end with CRLF/],
      ['Content-Length: 40\r\n\r\n{"jsonrpc":', /not JSON/], // runs into the next frame: abandoned at its first byte
      ['Content-Length: 0\r\n\r\n', /body is empty/],
      ['{"jsonrpc":"2.0","id":1,"method":"no header"}', /not a header name/],
    ];
    for (const [bad, reason] of cases) {
      const r = readerOn();
      r.push(bad);
      r.push(frame({ ok: 1 }));
      r.push(frame({ ok: 2 }));
      assert.deepEqual(r.messages, [{ ok: 1 }, { ok: 2 }], JSON.stringify(bad));
      assert.equal(r.errors.length, 1, `${JSON.stringify(bad)}: ${r.errors.join(' | ')}`);
      assert.match(r.errors[0]!, reason);
    }
  });

  test('a Content-Length over the limit is refused naming the limit, and its bytes are skipped', () => {
    for (const length of ['1000000000000', String(2n ** 53n + 1n), '99999999999999999999999999']) {
      const r = readerOn();
      r.push(`Content-Length: ${length}\r\n\r\n`);
      for (let i = 0; i < 4; i++) r.push(Buffer.alloc(2 ** 20, 0x61)); // bytes of the refused body, read and dropped
      r.push(frame({ after: length }));
      assert.deepEqual(r.messages, [{ after: length }]);
      assert.equal(r.errors.length, 1);
      assert.match(r.errors[0]!, new RegExp(`frame of ${length} bytes is over the limit of ${DEFAULT_MAX_FRAME_BYTES / 2 ** 20} MiB`));
      // What it keeps while skipping is a possible `Content-Length:` cut by a chunk boundary, no more.
      assert.ok((r.reader as unknown as { pending: Buffer }).pending.length < 16);
    }
  });

  test('after any bytes, a valid frame is read (split at any boundaries), and the one after it too', () => {
    const fragment = fc.oneof(
      fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
      fc
        .constantFrom(
          'Content-Length: ',
          'Content-Length: 12',
          'content-length:3',
          '\r\n',
          '\n',
          '\r\n\r\n',
          ':',
          '{',
          '"',
          '\\',
          '}',
          ']',
          '[',
          'Content-Type: x; charset=latin1\r\n',
          'X-A: b\r\n',
          '-1',
          '1e5',
        )
        .map((s) => Buffer.from(s, 'latin1')),
      fc.nat({ max: 200 }).map((n) => Buffer.from(`Content-Length: ${n}\r\n\r\n`)),
      fc.jsonValue().map((v) => frame(v)),
      fc.jsonValue().map((v) => frame(v).subarray(0, -1)),
    );
    fc.assert(
      fc.property(fc.array(fragment, { maxLength: 8 }), fc.array(fc.nat({ max: 60 }), { maxLength: 6 }), (parts, cuts) => {
        const r = readerOn(4096);
        const stream = Buffer.concat([...parts, frame({ sentinel: 1 }), frame({ sentinel: 2 })]);
        let at = 0;
        for (const cut of cuts) {
          r.push(stream.subarray(at, Math.min(stream.length, at + cut)));
          at = Math.min(stream.length, at + cut);
        }
        r.push(stream.subarray(at));
        assert.deepEqual(r.messages.slice(-2), [{ sentinel: 1 }, { sentinel: 2 }]);
      }),
      { seed: 42, numRuns: 3000 },
    );
  });

  test('the incremental JSON check agrees with JSON.parse', () => {
    const check = (s: string) => {
      const b = Buffer.from(s, 'utf8');
      const c = new JsonChecker();
      return (c.feed(b, 0, b.length) ?? c.end()) === undefined;
    };
    const parses = (s: string) => {
      try {
        JSON.parse(s);
        return true;
      } catch {
        return false;
      }
    };
    const json = fc.jsonValue({ maxDepth: 6 }).map((v) => JSON.stringify(v, null, Math.random() < 0.5 ? 0 : 1));
    const mutated = fc
      .tuple(json, fc.nat(), fc.constantFrom('', ',', ']', '}', '"', '\\', '0', '-', '.', 'e', ' ', '\u0001', 'x', 't', '\u00e9'))
      .map(([s, at, ins]) => {
        const i = s.length === 0 ? 0 : at % s.length;
        return s.slice(0, i) + ins + s.slice(i + (at % 2));
      });
    fc.assert(
      fc.property(fc.oneof(json, mutated, fc.string()), (s) => check(s) === parses(s)),
      { seed: 42, numRuns: 5000 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// The runtime as a process, spoken to in raw frames (some of these are not JSON-RPC at all).

const errorCode = (r: Reply) => r.error?.code;
const init = (model: string, extra: Record<string, unknown> = {}) => ({
  protocolVersion: PROTOCOL_VERSION,
  model,
  dtype: 'fp32',
  threads: 1,
  cacheDir: join(tmp.path, 'cache'),
  ...extra,
});

async function until(what: string, ok: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// Threads and RSS are read from /proc, and the pseudo file systems refused are Linux's.
describe('the runtime process', { timeout: 120_000, skip: process.platform !== 'linux' }, () => {
  const models: string[] = [];
  let rt: Runtime;
  before(async () => {
    // Three tiny models told apart by their positions.
    for (const positions of [64, 96, 128])
      models.push(
        (await writeOptCheckpoint(join(tmp.path, `m${positions}`), { seed: positions, config: { max_position_embeddings: positions } }))
          .dir,
      );
    rt = new Runtime();
  });
  after(() => rt.stop());

  test('finding 5: overlapping initializes leave exactly one engine, the newest one', async (t) => {
    const first = await rt.request('initialize', init(models[0]!));
    assert.equal(first.result?.info?.modelId, models[0]);
    // Worker and onnxruntime threads of one engine, once the process has settled.
    await new Promise((r) => setTimeout(r, 500));
    const baseline = rt.threads();
    const baseRss = rt.rssMiB();
    for (let round = 0; round < 3; round++) {
      const order = [0, 1, 2].map((i) => models[(i + round) % 3]!);
      const replies = await Promise.all(order.map((m) => rt.request('initialize', init(m))));
      assert.deepEqual(
        replies.slice(0, 2).map(errorCode),
        [RuntimeErrorCodes.Cancelled, RuntimeErrorCodes.Cancelled],
        JSON.stringify(replies),
      );
      assert.equal(replies[2]!.result?.info?.modelId, order[2], JSON.stringify(replies[2]));
      const status = await rt.request('opt/status');
      assert.equal(status.result?.info?.modelId, order[2], 'the last initialize is the model loaded');
      await until(`round ${round}: back to ${baseline} threads (now ${rt.threads()})`, () => rt.threads() === baseline, 10_000);
    }
    const grew = rt.rssMiB() - baseRss;
    t.diagnostic(
      `${baseline} threads throughout; RSS ${baseRss.toFixed(0)} MiB → +${grew.toFixed(0)} MiB after 3 rounds (each engine held about 200 MiB when they leaked)`,
    );
    assert.ok(grew < 150, `RSS grew by ${grew.toFixed(0)} MiB`);
    const done = await rt.request('opt/complete', { documentId: 'a', prefix: 'hello', options: { max_new_tokens: 2 } });
    assert.equal((done.result as { completionTokens?: number }).completionTokens, 2);
  });

  test('finding 9: the JSON-RPC envelope — non-objects, batches, bad ids and params structures', async () => {
    const raw = (s: string) => () => rt.write(`Content-Length: ${Buffer.byteLength(s)}\r\n\r\n${s}`);
    for (const body of ['[]', '5', '"x"', 'null', 'true']) {
      const r = await rt.nullIdReply(raw(body));
      assert.equal(errorCode(r), INVALID_REQUEST, body);
    }
    // A batch: each request in it is answered Invalid Request, in one array.
    const from = rt.messages.length;
    raw('[{"jsonrpc":"2.0","id":"b1","method":"opt/status"},{"jsonrpc":"2.0","method":"exit"},7]')();
    const batch = (await rt.next((m) => Array.isArray(m), from)) as unknown as Reply[];
    assert.deepEqual(
      batch.map((m) => [m.id, m.error?.code]),
      [
        ['b1', INVALID_REQUEST],
        [null, INVALID_REQUEST],
      ],
    );
    const envelope: [string, number][] = [
      ['{"jsonrpc":"1.0","id":11,"method":"opt/status"}', INVALID_REQUEST],
      ['{"jsonrpc":"2.0","id":12}', INVALID_REQUEST],
      ['{"jsonrpc":"2.0","id":13,"method":5}', INVALID_REQUEST],
      ['{"jsonrpc":"2.0","id":14,"method":"opt/complete","params":5}', INVALID_REQUEST],
      ['{"jsonrpc":"2.0","id":15,"method":"opt/complete","params":["a","b"]}', INVALID_PARAMS],
      ['{"jsonrpc":"2.0","id":16,"method":"opt/status","params":{"x":1}}', INVALID_PARAMS],
    ];
    for (const [body, code] of envelope) {
      const id = (JSON.parse(body) as { id: number }).id;
      const from2 = rt.messages.length;
      raw(body)();
      const r = await rt.next((m) => m.id === id, from2);
      assert.equal(errorCode(r), code, `${body}: ${JSON.stringify(r)}`);
    }
    const bad = await rt.nullIdReply(raw('{"jsonrpc":"2.0","id":{"x":1},"method":"opt/status"}'));
    assert.match(bad.error!.message, /`id` must be a string or a number/);
    // A malformed $/cancelRequest (vscode-jsonrpc would throw reading params.id) is dropped with a log line.
    raw('{"jsonrpc":"2.0","method":"$/cancelRequest"}')();
    assert.ok((await rt.request('opt/status')).result);
  });

  test('finding 9: every parameter is checked, with what was wrong and what is allowed', async () => {
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['initialize', init(models[0]!, { queueLimit: 0 }), /`queueLimit` must be an integer >= 1 and <= 1024, got 0/],
      ['initialize', init(models[0]!, { queueLimit: -1 }), /`queueLimit`/],
      ['initialize', init(models[0]!, { queueLimit: 'x' }), /`queueLimit` must be an integer/],
      ['initialize', init(models[0]!, { contextTokens: 0 }), /`contextTokens`/],
      ['initialize', init(models[0]!, { prefixCacheMiB: -1 }), /`prefixCacheMiB` must be a number of MiB >= 0/],
      ['initialize', init(models[0]!, { dtype: 'fp64' }), /`dtype` must be one of "auto", "fp32", "fp16", "int8", "int4", got "fp64"/],
      ['initialize', init(models[0]!, { device: 'tpu' }), /`device` must be one of "auto", "cpu", "webgpu", "cuda"/],
      [
        'initialize',
        init(models[0]!, { threads: 100000 }),
        new RegExp(`\`threads\` must be an integer from 0 .* to ${maxThreads()} \\(this machine's logical CPUs\\), got 100000`),
      ],
      ['initialize', init(models[0]!, { threads: 1.5 }), /`threads`/],
      [
        'initialize',
        init(models[0]!, { cacheDir: '/proc/self' }),
        /`cacheDir` cannot hold converted models: \/proc\/self is on the kernel's proc file system/,
      ],
      [
        'initialize',
        init(models[0]!, { cacheDir: '/sys/kernel/opt-cache' }),
        /`cacheDir` cannot hold converted models: \/sys\/kernel is on the kernel's sysfs file system/,
      ],
      ['initialize', init(models[0]!, { cacheDir: 5 }), /`cacheDir` must be a folder/],
      ['initialize', init(''), /`model` must be a model folder or a Hugging Face id/],
      ['initialize', { ...init(models[0]!), modle: 'x' }, /unknown parameter `modle`; it takes protocolVersion, model, dtype/],
      ['opt/complete', { documentId: 'a', prefix: 'x', maxContextTokens: -5 }, /`maxContextTokens` must be an integer >= 1/],
      ['opt/complete', { documentId: 'a', prefix: 'x', maxContextTokens: 0 }, /`maxContextTokens`/],
      ['opt/complete', { documentId: 'a', prefix: 'x', maxContextTokens: 'x' }, /`maxContextTokens`/],
      ['opt/complete', { documentId: 5, prefix: 'x' }, /`documentId` must be the document's id/],
      ['opt/complete', { documentId: 'a' }, /`prefix` is required: a string/],
      [
        'opt/complete',
        { documentId: 'a', prefix: 'x', options: { temperature: 'hot' } },
        /`options.temperature` must be a finite number >= 0, got "hot"/,
      ],
      [
        'opt/complete',
        { documentId: 'a', prefix: 'x', options: { stop_strings: [1] } },
        /`options.stop_strings` must be an array of at most 64 non-empty strings/,
      ],
      ['opt/complete', { documentId: 'a', prefix: 'x', options: [] }, /`options` must be an object of sampling options/],
      ['opt/complete', { documentId: 'a', prefix: 'x', partialResultToken: { a: 1 } }, /`partialResultToken`/],
      ['opt/warm', { documentId: 'a', prefix: 'x', maxContextTokens: 0 }, /`maxContextTokens`/],
      ['opt/generate', { prompt: 'x', options: { max_new_tokens: 0 } }, /`options.max_new_tokens` must be an integer >= 1/],
      ['opt/rewrite', { prompt: null }, /`prompt` is required/],
      ['opt/classify', { text: ['x'] }, /`text` must be a string, got an array/],
      ['opt/answer', { question: 'q', context: 'c', docStride: -1 }, /`docStride` must be an integer >= 0/],
      ['opt/embed', { text: 'x', pooling: 'max' }, /`pooling` must be "mean" or "last"/],
    ];
    for (const [method, params, message] of cases) {
      const r = await rt.request(method, params);
      assert.equal(errorCode(r), INVALID_PARAMS, `${method} ${JSON.stringify(params)}: ${JSON.stringify(r)}`);
      assert.match(r.error!.message, message);
    }
    // None of those disturbed the engine: the model of the previous test still answers.
    const status = await rt.request('opt/status');
    assert.ok(status.result?.info?.modelId);
    const ok = await rt.request('opt/complete', { documentId: 'a', prefix: 'x', maxContextTokens: 16, options: { max_new_tokens: 1 } });
    assert.ok(ok.result, JSON.stringify(ok));
  });

  test('finding 7: after each malformed frame the stream is back in step at the next header', async () => {
    const before = rt.messages.length;
    for (const bad of [
      'Content-Length: abc\r\n\r\n{"jsonrpc":"2.0","id":999,"method":"opt/status"}',
      'no colon in this header line\r\n\r\n{}',
      'Content-Length: -5\r\n\r\n{}',
      'Content-Length: 40\n\n{"jsonrpc":"2.0","id":998,"method":"opt/status"}',
    ]) {
      rt.write(bad);
      const r = await rt.request('opt/status', undefined, 10_000);
      assert.ok(r.result, `after ${JSON.stringify(bad)}`);
    }
    const logs = rt.messages
      .slice(before)
      .filter((m) => m.method === 'opt/log' && /ignored malformed input: malformed frame header/.test(m.params?.message ?? ''));
    assert.equal(logs.length, 4, logs.map((l) => l.params?.message).join('\n'));
    assert.ok(!rt.messages.slice(before).some((m) => m.id === 999 || m.id === 998), 'a frame with a bad header is skipped, not guessed at');
  });

  test('finding 8: a huge Content-Length is refused naming the limit, and its body is not buffered', async (t) => {
    // 128 MiB of body after the first: kept, it would show in the RSS; skipped, garbage the GC takes back.
    for (const [length, mib] of [
      ['1000000000000', 128],
      [String(2n ** 53n + 1n), 16],
    ] as const) {
      const rss = rt.rssMiB();
      const from = rt.messages.length;
      rt.write(`Content-Length: ${length}\r\n\r\n`);
      const chunk = Buffer.alloc(2 ** 20, '{"a":"xxxxxxx"}');
      for (let i = 0; i < mib; i++) await new Promise<void>((r) => rt.child.stdin.write(chunk, () => r()));
      const log = await rt.next((m) => m.method === 'opt/log' && /over the limit/.test(m.params?.message ?? ''), from);
      assert.match(log.params!.message!, new RegExp(`a frame of ${length} bytes is over the limit of 64 MiB`));
      const r = await rt.request('opt/status');
      assert.ok(r.result);
      const grew = rt.rssMiB() - rss;
      t.diagnostic(`${length}: ${mib} MiB of body sent, RSS +${grew.toFixed(0)} MiB`);
      assert.ok(grew < 64, `RSS grew by ${grew.toFixed(0)} MiB while ${mib} MiB were skipped`);
    }
    assert.doesNotMatch(rt.stderr, /\n\s+at /, 'no stack trace on stderr');
  });
});

describe('finding 6: threads are bounded by the machine at every entry point', () => {
  test('session creation refuses more threads than logical CPUs, naming the limit', async () => {
    assert.equal(maxThreads(), availableParallelism());
    assert.equal(checkThreads(0), 0);
    assert.equal(checkThreads(maxThreads()), maxThreads());
    for (const bad of [maxThreads() + 1, 100000, -1, 1.5, Number.NaN, '2'])
      assert.throws(
        () => checkThreads(bad),
        /threads must be an integer from 0 \(one per physical core\) to \d+ \(this machine's logical CPUs\)/,
      );
    // Before onnxruntime sees the model path at all: the check comes first.
    await assert.rejects(
      createSession('/nonexistent.onnx', { device: 'cpu', threads: 5000 }),
      new RegExp(`threads must be an integer from 0 .* to ${maxThreads()} `),
    );
  });

  test('the command line refuses --threads over the limit, and rpc takes no options', async () => {
    const { dir } = await writeOptCheckpoint(join(tmp.path, 'cli'), { seed: 3 });
    const opt = (...args: string[]) =>
      spawnSync(process.execPath, ['--import', 'tsx', 'runtime/src/cli.ts', ...args], { encoding: 'utf8', timeout: 60_000 });
    const logits = opt('logits', '--model', dir, '--ids', '2', '--threads', '5000', '--cache-dir', join(tmp.path, 'cache'));
    assert.equal(logits.status, 2, logits.stderr);
    assert.match(
      logits.stderr,
      new RegExp(`--threads must be an integer from 0 \\(one per physical core\\) to ${maxThreads()} .*got 5000`),
    );
    const rpc = opt('rpc', '--threads', '4');
    assert.equal(rpc.status, 2, rpc.stderr);
    assert.match(rpc.stderr, /rpc takes no arguments or options/);
  });

  test('the optComplete.threads setting has a maximum, and config.ts clamps to it and to the CPUs', () => {
    const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
    const setting = pkg.contributes.configuration.properties['optComplete.threads'];
    assert.equal(setting.minimum, 0);
    assert.equal(setting.maximum, 256);
    // The setting's rule clamps to package.json's maximum; config.ts (which cannot be loaded outside
    // VS Code, so its getter is read) clamps further to the CPUs.
    assert.equal(SETTING_RULES.threads.max, setting.maximum);
    assert.equal(SETTING_RULES.threads.min, setting.minimum);
    const getter = /get threads\(\): number \{\s*return this\._number\('threads', availableParallelism\(\)\);/.exec(
      readFileSync('extension/src/config.ts', 'utf8'),
    );
    assert.ok(getter, "config.ts clamps threads to min(the rule's maximum, availableParallelism())");
  });
});

describe('the process exits when stdin closes, whatever is in flight', { timeout: 60_000 }, () => {
  test('during a load that never finishes (a Hub that never answers)', async (t) => {
    const sockets = new Set<import('node:net').Socket>();
    const hub = http.createServer(() => undefined); // accepts, never answers
    hub.on('connection', (s) => sockets.add(s));
    await new Promise<void>((r) => hub.listen(0, '127.0.0.1', r));
    try {
      const env = {
        ...process.env,
        HF_ENDPOINT: `http://127.0.0.1:${(hub.address() as AddressInfo).port}`,
        HF_HOME: join(tmp.path, 'hf'),
        HF_HUB_OFFLINE: '',
        TRANSFORMERS_OFFLINE: '',
      };
      const rt = new Runtime({ env });
      const from = rt.messages.length;
      const pending = rt.request('initialize', init('someone/slow-model'));
      void pending.catch(() => undefined);
      await until('the load reached the Hub', () => sockets.size > 0, 20_000);
      assert.equal(rt.messages.slice(from).filter((m) => m.id !== undefined).length, 0, 'still loading');
      const started = Date.now();
      rt.child.stdin.end();
      const exit = await rt.exited(10_000);
      t.diagnostic(`exited ${Date.now() - started} ms after stdin closed (${JSON.stringify(exit)})`);
    } finally {
      for (const s of sockets) s.destroy();
      hub.close();
    }
  });

  test('during a long generation', async () => {
    const { dir } = await writeOptCheckpoint(join(tmp.path, 'gen'), { seed: 5, config: { max_position_embeddings: 512 } });
    const rt = new Runtime();
    assert.ok((await rt.request('initialize', init(dir))).result);
    const from = rt.messages.length;
    rt.write(
      frame({
        jsonrpc: '2.0',
        id: 'long',
        method: 'opt/generate',
        params: { prompt: 'Once', options: { max_new_tokens: 400, min_new_tokens: 400 }, partialResultToken: 'p' },
      }),
    );
    await rt.next((m) => m.method === '$/progress', from);
    rt.child.stdin.end();
    const exit = await rt.exited(10_000);
    assert.deepEqual(exit, { code: 0, signal: null }, `an engine that shuts down in time: a normal exit; stderr: ${rt.stderr}`);
    assert.doesNotMatch(rt.stderr, /\n\s+at /);
  });
});
