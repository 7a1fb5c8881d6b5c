// The local engine on its worker thread: results equal direct generation, streaming, cancellation
// within a step, inline supersession, priorities, the bounded queue, and refusal of a model that
// does not fit in memory.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseOptConfig } from '../../runtime/src/config.js';
import { type Engine } from '../../protocol/engine.js';
import { EngineBusyError, SupersededError } from '../../protocol/errors.js';
import { createLocalEngine } from '../../runtime/src/engine/localEngine.js';
import { generate } from '../../runtime/src/generation/generate.js';
import { estimateModelBytes } from '../../runtime/src/memory.js';
import { loadOptModel } from '../../runtime/src/model.js';
import { type Fixture, writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { tempDir } from '../helpers/decoderHarness.js';

const tmp = tempDir('engine');
after(() => tmp.remove());
const cacheDir = join(tmp.path, 'cache');

describe('local engine', () => {
  let f: Fixture;
  let engine: Engine;
  before(async () => {
    f = await writeOptCheckpoint(join(tmp.path, 'model'), { seed: 31, config: { max_position_embeddings: 512 } });
    engine = await createLocalEngine({ model: f.dir, dtype: 'fp32', cacheDir, queueLimit: 4 });
  });
  after(() => engine.dispose());

  test('a request returns what direct generation returns, streamed in deltas', async () => {
    const model = await loadOptModel(f.dir, { dtype: 'fp32', cacheDir });
    const [direct] = await generate(model, 'Hello engine', { max_new_tokens: 8, return_full_text: false });
    await model.dispose();
    let streamed = '';
    const r = await engine.generate(
      { prompt: 'Hello engine', options: { max_new_tokens: 8 }, priority: 'background' },
      (d) => (streamed += d),
    );
    assert.equal(r.text, direct!.text);
    assert.equal(streamed, r.text);
    assert.equal(r.completionTokens, 8);
    assert.equal(r.finishReason, 'length');
    assert.equal(engine.info().maxPositions, 512);
  });

  test('abort stops a generation within a step', async () => {
    const controller = new AbortController();
    let deltas = 0;
    const started = performance.now();
    const p = engine.generate(
      { prompt: 'Long one', options: { max_new_tokens: 400 }, priority: 'background' },
      () => {
        if (++deltas === 3) controller.abort();
      },
      controller.signal,
    );
    await assert.rejects(p, { name: 'AbortError' });
    assert.ok(deltas < 400 && performance.now() - started < 5000);
    const s = await engine.status();
    assert.equal(s.running, 0);
    // Deltas already posted by the worker may still arrive; the model itself stops at once.
    assert.ok(s.stepsAfterLastCancel !== undefined && s.stepsAfterLastCancel <= 1, `steps after cancel: ${s.stepsAfterLastCancel}`);
  });

  test('a newer inline request for the same document supersedes the older', async () => {
    const first = engine.generate({
      prompt: 'def f(x):',
      options: { max_new_tokens: 200 },
      priority: 'inline',
      documentId: 'file:///a.py',
    });
    const second = engine.generate({
      prompt: 'def f(x): return',
      options: { max_new_tokens: 4 },
      priority: 'inline',
      documentId: 'file:///a.py',
    });
    await assert.rejects(first, (e: Error) => e instanceof SupersededError);
    assert.equal((await second).completionTokens, 4);
  });

  test('an inline completion finishes while a long background generation runs', async () => {
    const order: string[] = [];
    const long = engine
      .generate({ prompt: 'Background', options: { max_new_tokens: 400, min_new_tokens: 400 }, priority: 'background' })
      .then(() => order.push('background'));
    await new Promise((r) => setTimeout(r, 50));
    const inline = await engine.generate({ prompt: 'Inline', options: { max_new_tokens: 3 }, priority: 'inline', documentId: 'doc' });
    order.push('inline');
    await long;
    assert.deepEqual(order, ['inline', 'background']);
    assert.ok(inline.timings.queuedMs < 1000, `queued ${inline.timings.queuedMs} ms`);
  });

  test('a full queue refuses with EngineBusyError', async () => {
    const ps = Array.from({ length: 6 }, (_, i) =>
      engine.generate({ prompt: `q${i}`, options: { max_new_tokens: 20 }, priority: 'background' }),
    );
    const settled = await Promise.allSettled(ps);
    const busy = settled.filter((s) => s.status === 'rejected' && (s.reason as Error) instanceof EngineBusyError);
    assert.equal(busy.length, 2);
    assert.equal(settled.filter((s) => s.status === 'fulfilled').length, 4);
  });

  test('a warm-up prefills a document so its first completion runs only the last token', async () => {
    const prompt = 'interface Point { x: number; y: number }\nexport function distance(a: Point, b: Point): number {\n  return Math.hypot(';
    const warm = await engine.generate({ prompt, options: { max_new_tokens: 8 }, priority: 'warm', documentId: 'warm.ts' });
    assert.deepEqual([warm.completionTokens, warm.text], [0, '']);
    assert.ok(warm.promptTokens > 20);
    const r = await engine.generate({ prompt, options: { max_new_tokens: 8 }, priority: 'inline', documentId: 'warm.ts' });
    assert.equal(r.reusedTokens, r.promptTokens - 1);
  });

  test('a warm-up waits for every other request, and any request or a newer warm-up cancels it', async () => {
    const order: string[] = [];
    const long = engine
      .generate({ prompt: 'Background work', options: { max_new_tokens: 60, min_new_tokens: 60 }, priority: 'background' })
      .then(() => order.push('background'));
    await new Promise((r) => setTimeout(r, 20));
    const warm = engine
      .generate({ prompt: 'waiting warm-up', options: {}, priority: 'warm', documentId: 'w1' })
      .then(() => order.push('warm'));
    await Promise.all([long, warm]);
    assert.deepEqual(order, ['background', 'warm']);

    const first = engine.generate({ prompt: 'first warm-up of a file', options: {}, priority: 'warm', documentId: 'w2' });
    const second = engine.generate({ prompt: 'second warm-up of another file', options: {}, priority: 'warm', documentId: 'w3' });
    const inline = engine.generate({ prompt: 'an inline request', options: { max_new_tokens: 2 }, priority: 'inline', documentId: 'w4' });
    await assert.rejects(first, (e: Error) => e instanceof SupersededError && /another prompt/.test(e.message));
    await assert.rejects(second, (e: Error) => e instanceof SupersededError && /a request replaced this warm-up/.test(e.message));
    assert.equal((await inline).completionTokens, 2);
  });

  test('typing reuses the prefix cache across requests', async () => {
    const line = 'const total = items.reduce((sum, item) => sum + item.price * item.quantity, 0);';
    let last;
    for (let i = 30; i <= line.length; i += 5)
      last = await engine.generate({ prompt: line.slice(0, i), options: { max_new_tokens: 2 }, priority: 'inline', documentId: 'doc2' });
    assert.ok(last!.reusedTokens >= last!.promptTokens - 3, `reused ${last!.reusedTokens}/${last!.promptTokens}`);
    assert.ok((await engine.status()).prefixCache.hits > 5);
  });
});

test('a model that does not fit in memory is refused before loading, with the figure', async () => {
  const f = await writeOptCheckpoint(join(tmp.path, 'small'), { seed: 2 });
  await assert.rejects(
    loadOptModel(f.dir, { dtype: 'int8', cacheDir, checkMemory: true, availableMemoryBytes: 100 * 2 ** 20 }),
    /needs about 0\.\d GiB of memory at int8, but only 0\.1 GiB is available/,
  );
  const opt13b = parseOptConfig({ hidden_size: 5120, num_hidden_layers: 40, num_attention_heads: 40, ffn_dim: 20480 });
  const gibs = (d: 'int8' | 'int4' | 'fp16') => estimateModelBytes(opt13b, d) / 2 ** 30;
  assert.ok(gibs('int8') > 13 && gibs('int8') < 16, `13b int8 ${gibs('int8')}`);
  assert.ok(gibs('int4') > 7 && gibs('int4') < 9.5, `13b int4 ${gibs('int4')}`);
  assert.ok(gibs('fp16') > 23 && gibs('fp16') < 26, `13b fp16 ${gibs('fp16')}`);
});

test('disposing the engine cancels its pending requests (AbortError), it does not fail them', async () => {
  const f = await writeOptCheckpoint(join(tmp.path, 'dispose'), { seed: 5, config: { max_position_embeddings: 512 } });
  const engine = await createLocalEngine({ model: f.dir, dtype: 'fp32', cacheDir });
  const running = engine.generate({ prompt: 'Long', options: { max_new_tokens: 400, min_new_tokens: 400 }, priority: 'background' });
  await new Promise((r) => setTimeout(r, 30));
  await engine.dispose();
  await assert.rejects(running, { name: 'AbortError' });
});
