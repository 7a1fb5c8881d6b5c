// Seeded fuzz/property suite for `opt rpc`: random and mutated JSON-RPC frames (headers, lengths,
// bodies), envelopes and batches, and requests whose parameters have the wrong types or ranges,
// written to one real runtime process with a tiny model loaded. After every case the process must
// still answer a valid completion correctly within a timeout, must not have crashed or printed a
// stack trace, and its RSS must stay within a fixed bound of where it started.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { PROTOCOL_VERSION } from '../../protocol/protocol.js';
import { maxThreads } from '../../runtime/src/session.js';
import { writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { tempDir } from '../helpers/decoderHarness.js';
import { RawRuntime, frameOf } from '../helpers/rawRuntime.js';

const tmp = tempDir('fuzz-rpc');
after(() => tmp.remove());

/** How far the RSS may rise above its level after the first check, over the whole suite. */
const RSS_BOUND_MIB = 256;
const CHECK_TIMEOUT_MS = 10_000;
/**
 * The cases share one process, so a failure's cause may lie in an earlier case: the failing case is
 * reported as it was (shrinking would replay smaller cases against a process already broken).
 */
const endOnFailure = true;

// ---------------------------------------------------------------------------------------------
// Arbitraries.

const odd = fc.constantFrom<unknown>(null, -1, 0, 1.5, 1e300, -0, '', 'x', '5', [], {}, true, false, [1, 2], { a: 1 }, 2 ** 53 + 1);
/** A field: sometimes a valid value, often a wrong type or range. */
const around = <T>(valid: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 2, arbitrary: valid }, { weight: 2, arbitrary: odd }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) });

const text = fc.string({ maxLength: 120, unit: 'binary' });
const sampling = fc.oneof(
  fc.record(
    {
      max_new_tokens: around(fc.integer({ min: 1, max: 4 })),
      min_new_tokens: around(fc.integer({ min: 0, max: 2 })),
      do_sample: around(fc.boolean()),
      temperature: around(fc.double({ min: 0.1, max: 2, noNaN: true })),
      top_p: around(fc.double({ min: 0.1, max: 1, noNaN: true })),
      top_k: around(fc.integer({ min: 0, max: 50 })),
      typical_p: around(fc.double({ min: 0.1, max: 1, noNaN: true })),
      repetition_penalty: around(fc.double({ min: 0.5, max: 2, noNaN: true })),
      no_repeat_ngram_size: around(fc.integer({ min: 0, max: 3 })),
      seed: around(fc.integer()),
      stop_strings: around(fc.array(fc.string({ minLength: 1, maxLength: 4 }), { maxLength: 3 })),
      temprature: fc.constant(1),
    },
    { requiredKeys: [] },
  ),
  odd,
);

const tokens = (max: number) => around(fc.integer({ min: 1, max }));
const PARAMS: Record<string, fc.Arbitrary<Record<string, unknown>>> = {
  'opt/complete': fc.record(
    {
      documentId: around(fc.constantFrom('a', 'b')),
      prefix: around(text),
      suffix: around(text),
      maxContextTokens: tokens(64),
      options: sampling,
      partialResultToken: around(fc.oneof(fc.string(), fc.integer())),
    },
    { requiredKeys: [] },
  ),
  'opt/warm': fc.record(
    { documentId: around(fc.constantFrom('a', 'b')), prefix: around(text), maxContextTokens: tokens(64), options: sampling },
    { requiredKeys: [] },
  ),
  'opt/generate': fc.record({ prompt: around(text), options: sampling, partialResultToken: around(fc.string()) }, { requiredKeys: [] }),
  'opt/rewrite': fc.record({ prompt: around(text), options: sampling }, { requiredKeys: [] }),
  'opt/classify': fc.record({ text: around(text) }, { requiredKeys: [] }),
  'opt/answer': fc.record(
    {
      question: around(text),
      context: around(text),
      maxAnswerLength: tokens(20),
      topK: tokens(5),
      maxSeqLen: around(fc.integer({ min: 8, max: 64 })),
      docStride: around(fc.integer({ min: 0, max: 8 })),
    },
    { requiredKeys: [] },
  ),
  'opt/embed': fc.record({ text: around(text), pooling: around(fc.constantFrom('mean', 'last')) }, { requiredKeys: [] }),
  'opt/status': fc.record({ x: odd }, { requiredKeys: [] }),
  'opt/nonexistent': fc.record({ a: odd }, { requiredKeys: [] }),
};

/** Initialize, always with the test's model (a load of another would leave nothing to check against): the rest is fuzzed. */
const initializeParams = (model: string, cacheDir: string) =>
  fc.record(
    {
      protocolVersion: fc.constantFrom<unknown>(PROTOCOL_VERSION, PROTOCOL_VERSION, 0, '1', null),
      model: fc.constantFrom<unknown>(model, model, model, '', 5, null),
      dtype: fc.constantFrom<unknown>('fp32', 'fp64', 5, null),
      device: fc.constantFrom<unknown>('cpu', 'tpu', 1),
      threads: fc.constantFrom<unknown>(1, maxThreads() + 1, 100000, -1, 1.5, 'x'),
      cacheDir: fc.constantFrom<unknown>(cacheDir, cacheDir, '/proc/self', '/sys/kernel', 5, null),
      queueLimit: fc.constantFrom<unknown>(16, 0, -1, 'x', 1e9, null),
      prefixCacheMiB: fc.constantFrom<unknown>(16, -1, 'x', 1e300),
      contextTokens: fc.constantFrom<unknown>(64, 0, -5, 'x'),
      modle: fc.constant('typo'),
    },
    { requiredKeys: ['protocolVersion', 'model', 'cacheDir', 'threads'] },
  );

const id = fc.oneof(fc.integer(), fc.string({ maxLength: 8 }), fc.constantFrom<unknown>(null, 1.5, [], {}, true));

/** A request's JSON (as a string), the envelope itself sometimes broken. */
const request = (init: fc.Arbitrary<Record<string, unknown>>) =>
  fc
    .tuple(
      fc.oneof(
        { weight: 6, arbitrary: fc.constantFrom(...Object.keys(PARAMS)).chain((m) => fc.tuple(fc.constant(m), PARAMS[m]!)) },
        { weight: 1, arbitrary: fc.tuple(fc.constant('initialize'), init) },
      ),
      fc.record({
        jsonrpc: fc.constantFrom<unknown>('2.0', '2.0', '2.0', '1.0', 2, undefined),
        id: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 1e6 }) }, { weight: 1, arbitrary: id }),
        positional: fc.boolean(),
      }),
    )
    .map(([[method, params], env]) =>
      JSON.stringify({ jsonrpc: env.jsonrpc, id: env.id, method, params: env.positional ? Object.values(params) : params }),
    );

/** Bytes that are a frame, then broken in one of the ways a stream goes out of step. */
const mutatedFrame = (body: fc.Arbitrary<string>) =>
  fc.tuple(body, fc.nat({ max: 9 }), fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 8 })).map(([json, how, at, junk]) => {
    const b = Buffer.from(json, 'utf8');
    const i = at % (b.length + 1);
    const header = (h: string) => Buffer.concat([Buffer.from(h, 'latin1'), b]);
    switch (how) {
      case 0:
        return frameOf(b); // intact
      case 1:
        return header(`Content-Length: ${b.length + ((at % 11) - 5)}\r\n\r\n`); // off by a few
      case 2:
        return header(
          `Content-Length: ${['abc', '-1', '', ' 12 ', '1e3', '0x10', '99999999999999999999', '1000000000000', String(2 ** 53 + 1)][at % 9]}\r\n\r\n`,
        );
      case 3:
        return header(`Content-Length: ${b.length}${['\n\n', '\r\n', '\r\n\r\n\r\n', '\n\r\n', '\r\r\n'][at % 5]}`);
      case 4:
        return header(
          `${['content-length', 'Content-Length ', 'ContentLength', 'X: y\r\nContent-Length', 'Content-Length: 1\r\nContent-Length'][at % 5]}: ${b.length}\r\n\r\n`,
        );
      case 5:
        return b; // no header at all
      case 6:
        return frameOf(b).subarray(0, frameOf(b).length - 1 - (at % Math.max(1, b.length))); // cut short
      case 7:
        return frameOf(Buffer.concat([b.subarray(0, i), Buffer.from(junk), b.subarray(i)])).subarray(0, -junk.length); // junk inside, length of the original
      case 8:
        return Buffer.concat([frameOf(b), Buffer.from(junk)]); // junk between frames
      default:
        return Buffer.concat([Buffer.from(junk), frameOf(b)]);
    }
  });

/** A case: a few pieces of input, written in chunks cut at random places. */
const chunked = (pieces: fc.Arbitrary<Buffer[]>) =>
  fc.tuple(pieces, fc.array(fc.nat({ max: 300 }), { maxLength: 4 })).map(([parts, cuts]) => {
    const all = Buffer.concat(parts);
    const chunks: Buffer[] = [];
    let at = 0;
    for (const cut of cuts) {
      if (at >= all.length) break;
      chunks.push(all.subarray(at, at + cut));
      at += cut;
    }
    chunks.push(all.subarray(at));
    return chunks.filter((c) => c.length > 0);
  });

// ---------------------------------------------------------------------------------------------

// RSS is read from /proc.
describe('opt rpc under fuzzed input', { timeout: 120_000, skip: process.platform !== 'linux' }, () => {
  let rt: RawRuntime;
  let modelDir: string;
  let cacheDir: string;
  let rssStart = 0;
  let rssMax = 0;
  let cases = 0;

  before(async () => {
    modelDir = (await writeOptCheckpoint(join(tmp.path, 'model'), { seed: 7 })).dir;
    cacheDir = join(tmp.path, 'cache');
    rt = new RawRuntime({ idPrefix: 'check-', keepMessages: 2000 });
    const init = await rt.request(
      'initialize',
      { protocolVersion: PROTOCOL_VERSION, model: modelDir, dtype: 'fp32', threads: 1, cacheDir },
      60_000,
    );
    assert.ok(init.result, JSON.stringify(init));
    await check();
    rssStart = rt.rssMiB();
  });
  after(async () => {
    rt.child.stdin.end();
    await new Promise((r) => (rt.child.exitCode !== null || rt.child.signalCode !== null ? r(undefined) : rt.child.once('exit', r)));
  });

  /** The property after every case: alive, answering a valid completion, no stack trace, RSS bounded. */
  async function check(): Promise<void> {
    cases++;
    const r = await rt.request(
      'opt/complete',
      { documentId: 'check', prefix: 'hello world', suffix: '', options: { max_new_tokens: 1 } },
      CHECK_TIMEOUT_MS,
    );
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    assert.equal(r.result?.completionTokens, 1);
    assert.equal(typeof r.result?.text, 'string');
    assert.equal(rt.child.exitCode, null, 'the runtime exited');
    assert.doesNotMatch(rt.stderr, /\n\s+at \S/, 'a stack trace on stderr');
    if (rssStart > 0) {
      const rss = rt.rssMiB();
      rssMax = Math.max(rssMax, rss);
      assert.ok(rss < rssStart + RSS_BOUND_MIB, `RSS ${rss.toFixed(0)} MiB, from ${rssStart.toFixed(0)} MiB`);
    }
  }

  const run = async (chunks: Buffer[]) => {
    await rt.writeChunks(chunks);
    await check();
  };

  test('random bytes', async () => {
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
      fc.string({ maxLength: 200 }).map((s) => Buffer.from(s, 'utf8')),
      fc
        .array(
          fc.constantFrom('Content-Length: ', '12', '\r\n', '\n', ':', '{', '}', '"', '\\', 'Content-Type: a; charset=latin1\r\n', '-'),
          { maxLength: 20 },
        )
        .map((a) => Buffer.from(a.join(''), 'latin1')),
    );
    await fc.assert(fc.asyncProperty(chunked(fc.array(bytes, { minLength: 1, maxLength: 3 })), run), {
      seed: 42,
      numRuns: 400,
      endOnFailure,
    });
  });

  test('mutated frames: headers, lengths, separators, bodies', async () => {
    const body = fc.oneof(
      request(initializeParams(modelDir, cacheDir)),
      fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
    );
    await fc.assert(fc.asyncProperty(chunked(fc.array(mutatedFrame(body), { minLength: 1, maxLength: 4 })), run), {
      seed: 42,
      numRuns: 600,
      endOnFailure,
    });
  });

  test('envelopes and batches: non-objects, bad ids, versions, methods and params structures', async () => {
    const value = fc.oneof(
      fc.jsonValue({ maxDepth: 2 }),
      fc.array(
        fc.oneof(
          fc.jsonValue({ maxDepth: 1 }),
          request(initializeParams(modelDir, cacheDir)).map((s) => JSON.parse(s) as unknown),
        ),
        { maxLength: 4 },
      ),
      fc.record(
        {
          jsonrpc: fc.constantFrom<unknown>('2.0', '1.0', null),
          id,
          method: fc.oneof(
            fc.constantFrom<unknown>('opt/status', 'opt/complete', '$/cancelRequest', '$/progress', '$/setTrace', 5, '', null),
          ),
          params: fc.oneof(odd, fc.jsonValue({ maxDepth: 2 })),
          result: odd,
          error: odd,
        },
        { requiredKeys: [] },
      ),
    );
    await fc.assert(
      fc.asyncProperty(
        chunked(
          fc.array(
            value.map((v) => frameOf(JSON.stringify(v) ?? 'null')),
            { minLength: 1, maxLength: 4 },
          ),
        ),
        run,
      ),
      { seed: 42, numRuns: 500, endOnFailure },
    );
  });

  test('requests with parameters of the wrong types and ranges', async () => {
    // Every message with a readable id is answered, with a result or an error.
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(request(initializeParams(modelDir, cacheDir)), { minLength: 1, maxLength: 3 }), async (bodies) => {
        const ids: string[] = [];
        const frames = bodies.map((b) => {
          const m = JSON.parse(b) as { id?: unknown };
          if (typeof m.id === 'number' || typeof m.id === 'string') ids.push((m.id = `fuzz-${++n}`));
          return frameOf(JSON.stringify(m));
        });
        await rt.writeChunks(frames);
        for (const r of await Promise.all(ids.map((i) => rt.next((m) => m.id === i && m.method === undefined, 0, CHECK_TIMEOUT_MS))))
          assert.ok(r.result !== undefined || r.error !== undefined, JSON.stringify(r));
        await check();
      }),
      { seed: 42, numRuns: 600, endOnFailure },
    );
  });

  test('summary', (t) => {
    t.diagnostic(
      `${cases} checks passed; RSS ${rssStart.toFixed(0)} MiB at the start, ${rssMax.toFixed(0)} MiB at most (bound +${RSS_BOUND_MIB} MiB)`,
    );
    assert.ok(cases > 2000);
  });
});
