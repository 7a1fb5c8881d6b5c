// A bounded load test of `opt serve` on loopback: rounds of concurrent streaming clients against a
// small engine queue. Every request must end (a complete stream or a clean 429), the engine must end
// idle, memory must not grow between identical rounds, and closing mid-stream must not hang.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Engine, EngineStatus } from '../../protocol/engine.js';
import { createLocalEngine } from '../../runtime/src/engine/localEngine.js';
import { type OpenAiServer, startOpenAiServer } from '../../runtime/src/server/openaiServer.js';
import { writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { tempDir } from '../helpers/decoderHarness.js';

const tmp = tempDir('openai-load');
after(() => tmp.remove());

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Virtual users, each sending REQUESTS_PER_CLIENT streaming requests one after another. */
const CLIENTS = 64;
const REQUESTS_PER_CLIENT = 3;
/** A refused request is retried after a short random pause (not Retry-After's 1 s, to keep the test short), this many times at most. */
const MAX_RETRIES = 40;
const QUEUE_LIMIT = 6;
const MAX_TOKENS = 16;
const REQUEST_TIMEOUT_MS = 15_000;
const MiB = 1 << 20;
/** Growth allowed over identical rounds (after a warm-up round and a GC). */
const RSS_TOLERANCE = 64 * MiB;
const HEAP_TOLERANCE = 8 * MiB;

type Outcome =
  | { kind: 'ok'; ms: number; text: string; prompt: number }
  | { kind: 'refused'; ms: number; retryAfter: string | null }
  | { kind: 'error' | 'timeout'; ms: number; detail: string };

const prompts = Array.from({ length: 8 }, (_, i) => `Load test prompt number ${i}:`);

async function streamOnce(url: string, i: number): Promise<Outcome> {
  const start = performance.now();
  const prompt = i % prompts.length;
  try {
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: prompts[prompt], max_tokens: MAX_TOKENS, min_tokens: MAX_TOKENS, temperature: 0, stream: true }),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const body = await res.text();
    const ms = performance.now() - start;
    if (res.status === 429) return { kind: 'refused', ms, retryAfter: res.headers.get('retry-after') };
    if (res.status !== 200) return { kind: 'error', ms, detail: `HTTP ${res.status}: ${body.slice(0, 200)}` };
    if (!body.endsWith('data: [DONE]\n\n')) return { kind: 'error', ms, detail: `incomplete stream: ${body.slice(-200)}` };
    const chunks = body
      .split('\n\n')
      .slice(0, -2)
      .map((f) => JSON.parse(f.slice('data: '.length)) as { choices: { text: string; finish_reason: string | null }[] });
    if (chunks.at(-1)?.choices[0]?.finish_reason !== 'length') return { kind: 'error', ms, detail: 'no final chunk' };
    return { kind: 'ok', ms, text: chunks.map((c) => c.choices[0]!.text).join(''), prompt };
  } catch (err) {
    const e = err as Error;
    return { kind: e.name === 'TimeoutError' ? 'timeout' : 'error', ms: performance.now() - start, detail: `${e.name}: ${e.message}` };
  }
}

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};

function memory() {
  gc();
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed };
}

const mib = (b: number) => `${(b / MiB).toFixed(1)} MiB`;

describe('opt serve under load', () => {
  let engine: Engine;
  let server: OpenAiServer;
  const expected: string[] = [];

  before(async () => {
    const f = await writeOptCheckpoint(join(tmp.path, 'model'), { tokenizer: true, seed: 43, config: { max_position_embeddings: 2048 } });
    engine = await createLocalEngine({
      model: f.dir,
      dtype: 'fp32',
      cacheDir: join(tmp.path, 'cache'),
      queueLimit: QUEUE_LIMIT,
      prefixCacheBytes: 8 * MiB,
    });
    server = await startOpenAiServer(engine, { port: 0 });
    for (const p of prompts)
      expected.push(
        (
          await engine.generate({
            prompt: p,
            options: { max_new_tokens: MAX_TOKENS, min_new_tokens: MAX_TOKENS, do_sample: false },
            priority: 'background',
          })
        ).text,
      );
  });
  after(async () => {
    await server.close();
    await engine.dispose();
  });

  async function round(t: { diagnostic(m: string): void }, name: string) {
    const started = performance.now();
    const attempts: Outcome[] = [];
    const ends: { outcome: Outcome; totalMs: number }[] = [];
    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, c) => {
        for (let k = 0; k < REQUESTS_PER_CLIENT; k++) {
          const begun = performance.now();
          for (let attempt = 0; ; attempt++) {
            const outcome = await streamOnce(server.url, c * REQUESTS_PER_CLIENT + k);
            attempts.push(outcome);
            if (outcome.kind !== 'refused' || attempt === MAX_RETRIES) {
              ends.push({ outcome, totalMs: performance.now() - begun });
              break;
            }
            await new Promise((r) => setTimeout(r, 25 + Math.random() * 50));
          }
        }
      }),
    );
    const wallMs = performance.now() - started;
    const ok = attempts.filter((o) => o.kind === 'ok');
    const refused = attempts.filter((o) => o.kind === 'refused');
    const failed = attempts.filter((o) => o.kind === 'error' || o.kind === 'timeout');
    assert.deepEqual(failed, [], 'every request ends with a complete stream or a 429');
    assert.equal(ends.length, CLIENTS * REQUESTS_PER_CLIENT);
    assert.ok(refused.length > 0, 'the small queue refuses some');
    assert.ok(ok.length >= (CLIENTS * REQUESTS_PER_CLIENT) / 2, `${ok.length} served`);
    for (const r of refused) assert.equal(r.retryAfter, '1');
    for (const o of ok) assert.equal(o.text, expected[o.prompt], 'a stream under load carries the same greedy text');
    const status = await engine.status();
    assert.equal(status.running, 0);
    assert.deepEqual(status.queued, { inline: 0, interactive: 0, background: 0, warm: 0 });
    const okMs = ok.map((o) => o.ms);
    const refusedMs = refused.map((o) => o.ms);
    const endMs = ends.filter((e) => e.outcome.kind === 'ok').map((e) => e.totalMs);
    const gaveUp = ends.filter((e) => e.outcome.kind === 'refused').length;
    const f = (xs: number[]) => `p50 ${percentile(xs, 50).toFixed(0)} ms, p95 ${percentile(xs, 95).toFixed(0)} ms`;
    t.diagnostic(
      `${name}: ${CLIENTS} clients × ${REQUESTS_PER_CLIENT} streaming requests in ${wallMs.toFixed(0)} ms: ${attempts.length} HTTP requests, ` +
        `${ok.length} complete streams (${f(okMs)}; with retries ${f(endMs)}), ${refused.length} refused with 429 (${f(refusedMs)}), ${gaveUp} given up after ${MAX_RETRIES} retries`,
    );
    return { status, memory: memory() };
  }

  test('identical rounds of concurrent streams: each ends cleanly, the engine ends idle, memory stays flat', async (t) => {
    await round(t, 'warm-up');
    const before = memory();
    const first = await round(t, 'round 1');
    const second = await round(t, 'round 2');
    const cache = (s: EngineStatus) => `${s.prefixCache.entries} entries, ${mib(s.prefixCache.bytes)}`;
    t.diagnostic(
      `memory: before ${mib(before.rss)} RSS / ${mib(before.heapUsed)} heap; after round 1 ${mib(first.memory.rss)} / ${mib(first.memory.heapUsed)}; ` +
        `after round 2 ${mib(second.memory.rss)} / ${mib(second.memory.heapUsed)}; prefix cache ${cache(first.status)} → ${cache(second.status)}`,
    );
    // RSS (onnxruntime's arenas on the worker, sockets) moves by ±35 MiB from round to round here,
    // so round 2 is held to the highest earlier figure plus the tolerance; the JS heap is steadier.
    const rssGrowth = second.memory.rss - Math.max(before.rss, first.memory.rss);
    assert.ok(rssGrowth < RSS_TOLERANCE, `RSS grew ${mib(rssGrowth)} over identical rounds (tolerance ${mib(RSS_TOLERANCE)})`);
    const heapGrowth = second.memory.heapUsed - Math.max(before.heapUsed, first.memory.heapUsed);
    assert.ok(heapGrowth < HEAP_TOLERANCE, `heap grew ${mib(heapGrowth)} over identical rounds (tolerance ${mib(HEAP_TOLERANCE)})`);
    assert.ok(second.status.prefixCache.bytes <= 8 * MiB && second.status.prefixCache.entries <= prompts.length, cache(second.status));
  });

  test('closing the server mid-stream ends every stream, leaves the engine idle, and stops listening', async (t) => {
    const victim = await startOpenAiServer(engine, { port: 0 });
    const long = (signal: AbortSignal) =>
      fetch(`${victim.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'never ends', max_tokens: 1900, min_tokens: 1900, temperature: 0, stream: true }),
        signal,
      }).then(
        async (res) => ({ status: res.status, body: await res.text() }),
        (e: Error) => ({ status: 0, body: e.message }),
      );
    const streams = Array.from({ length: QUEUE_LIMIT }, () => long(AbortSignal.timeout(REQUEST_TIMEOUT_MS)));
    await new Promise((r) => setTimeout(r, 150)); // all of them are streaming by now
    const closing = performance.now();
    await victim.close();
    const closeMs = performance.now() - closing;
    const ends = await Promise.all(streams);
    const endedMs = performance.now() - closing;
    for (const e of ends) {
      assert.equal(e.status, 200);
      assert.match(e.body, /"code":"shutting_down"[\s\S]*data: \[DONE\]\n\n$/);
    }
    await assert.rejects(fetch(`${victim.url}/health`), /fetch failed/);
    const s = await engine.status();
    assert.equal(s.running, 0);
    assert.deepEqual(s.queued, { inline: 0, interactive: 0, background: 0, warm: 0 });
    t.diagnostic(
      `close() took ${closeMs.toFixed(0)} ms with ${QUEUE_LIMIT} streams running; all ended ${endedMs.toFixed(0)} ms after it began`,
    );
    assert.ok(closeMs < 2000);
  });
});
