// Prefix KV-cache reuse: typing char by char re-runs only the changed tail, deleting reuses up to
// the edit, results equal generation without the cache, and the byte budget evicts LRU states.
// Also chunked prefill and left truncation of over-long prompts.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { OPT_SIZES } from '../../extension/src/models/optModels.js';
import { autoPrefixCacheBytes, contextKvBytes } from '../../protocol/memory.js';
import type { KvCache } from '../../runtime/src/decoder.js';
import { generate, generateStream } from '../../runtime/src/generation/generate.js';
import { PrefixCache } from '../../runtime/src/engine/prefixCache.js';
import { type OptModel, loadOptModel } from '../../runtime/src/model.js';
import type { Tensor } from '../../runtime/src/session.js';
import { writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { tempDir } from '../helpers/decoderHarness.js';

const tmp = tempDir('prefix');
after(() => tmp.remove());

describe('prefix cache', () => {
  let model: OptModel;
  before(async () => {
    const f = await writeOptCheckpoint(join(tmp.path, 'model'), { seed: 8, config: { max_position_embeddings: 256 } });
    model = await loadOptModel(f.dir, { dtype: 'fp32', cacheDir: join(tmp.path, 'cache') });
  });
  after(() => model.dispose());

  const greedy = { max_new_tokens: 4, return_full_text: false } as const;

  test('typing a line char by char prefills only the changed tokens, with unchanged results', async () => {
    const store = new PrefixCache(64 << 20);
    const line = 'function fibonacci(n) { return n < 2 ? n : fibonacci(n - 1) + fibonacci(n - 2); }';
    const prefilled: number[] = [];
    for (let i = 40; i <= line.length; i += 3) {
      const prompt = line.slice(0, i);
      const [cached] = await generate(model, prompt, { ...greedy, prefixStore: store });
      const [plain] = await generate(model, prompt, greedy);
      assert.deepEqual(cached!.tokenIds, plain!.tokenIds, `prompt of ${i} chars`);
      prefilled.push(cached!.promptTokens - cached!.reusedTokens);
    }
    // After the first request, each keystroke re-runs at most the last couple of tokens (BPE may re-merge the tail).
    assert.ok(prefilled[0]! > 10);
    for (const n of prefilled.slice(1)) assert.ok(n <= 3, `prefilled ${n} tokens: ${prefilled.join(',')}`);
    assert.ok(store.stats().hits >= prefilled.length - 1);
  });

  test('deleting a character reuses the state up to the edit', async () => {
    const store = new PrefixCache(64 << 20);
    const text = 'The quick brown fox jumps over the lazy dog and keeps running far away';
    await generate(model, text, { ...greedy, prefixStore: store });
    const edited = text.slice(0, 30) + text.slice(31);
    const [r] = await generate(model, edited, { ...greedy, prefixStore: store });
    const head = await model.tokenizer.encode(text.slice(0, 30));
    assert.ok(r!.reusedTokens >= head.length - 2, `reused ${r!.reusedTokens} of ${r!.promptTokens}`);
    assert.ok(r!.reusedTokens < r!.promptTokens - 5);
    const [plain] = await generate(model, edited, greedy);
    assert.deepEqual(r!.tokenIds, plain!.tokenIds);
  });

  test('the byte budget evicts the least recently used state', async () => {
    const one = new PrefixCache(64 << 20);
    await generate(model, 'first prompt here', { ...greedy, prefixStore: one });
    const perEntry = one.stats().bytes;
    const store = new PrefixCache(perEntry * 2 + 1);
    for (const p of ['alpha beta gamma', 'delta epsilon zeta', 'eta theta iota'])
      await generate(model, p, { ...greedy, prefixStore: store });
    assert.equal(store.stats().entries, 2);
    const [r] = await generate(model, 'alpha beta gamma delta', { ...greedy, prefixStore: store });
    assert.equal(r!.reusedTokens, 0, 'the oldest state was evicted');
    const [s] = await generate(model, 'eta theta iota kappa', { ...greedy, prefixStore: store });
    assert.ok(s!.reusedTokens > 2);
  });

  test('chunked prefill gives the same tokens', async () => {
    const prompt = 'A longer prompt that will be prefilled in several small chunks of a few tokens each.';
    const [whole] = await generate(model, prompt, greedy);
    const [chunked] = await generate(model, prompt, { ...greedy, prefillChunk: 5 });
    assert.deepEqual(chunked!.tokenIds, whole!.tokenIds);
  });

  test('an over-long prompt is truncated from the left when asked, keeping BOS', async () => {
    const long = Array(300).fill('word').join(' ');
    await assert.rejects(generate(model, long, greedy), /model has 256 positions/);
    const [r] = await generate(model, long, { ...greedy, truncate: 'left' });
    assert.equal(r!.truncated, true);
    const full = (await model.tokenizer.encode(long)).length;
    assert.ok(r!.promptTokens <= 256 - 4 && r!.promptTokens > 256 - 4 - 64, `${r!.promptTokens} prompt tokens`);
    assert.equal((full - r!.promptTokens) % 64, 0, 'dropped in whole granules');
    assert.equal(r!.tokenIds.length, 4);
  });
});

/** A stand-in state of `mib` MiB: the policy only reads the size of the storage. */
const state = (mib: number): KvCache => ({
  batch: 1,
  length: 1,
  capacity: 1,
  tensors: [{ data: { buffer: { byteLength: mib * 2 ** 20 } } } as unknown as Tensor],
});
const ids = (...xs: number[]) => xs;

describe('prefix cache policy', () => {
  test('a state larger than the whole budget is kept while it is the newest', () => {
    const store = new PrefixCache(256 << 20);
    store.put(ids(1, 2, 3), state(576)); // opt-1.3b at 1,500 tokens
    assert.deepEqual({ entries: store.stats().entries, mib: store.stats().bytes / 2 ** 20 }, { entries: 1, mib: 576 });
    assert.equal(store.take(ids(1, 2, 3, 4))?.tokens.length, 3);
  });

  test('at every OPT size up to 6.7b, the budget the runtime would pick on this machine keeps the document typed in and another', () => {
    for (const size of OPT_SIZES.filter((s) => ['125m', '350m', '1.3b', '2.7b', '6.7b'].includes(s.label))) {
      const mib = contextKvBytes(size.shape, 'int8', 1548) / 2 ** 20; // a 1,500-token prompt + 48 new tokens
      const store = new PrefixCache(autoPrefixCacheBytes(size.shape, 'int8', 1548, 22 * 2 ** 30));
      store.put(ids(5, 6), state(mib)); // a tab switched away from
      store.put(ids(7, 8, 9), state(mib));
      assert.equal(
        store.take(ids(7, 8, 9, 10))?.tokens.length,
        3,
        `${size.id}: one more character typed, a state of ${mib.toFixed(0)} MiB`,
      );
      assert.equal(store.take(ids(5, 6, 1))?.tokens.length, 2, `${size.id}: the other document's state`);
    }
  });

  test('older states leave, least recently used first, to make room; the newest never does', () => {
    const store = new PrefixCache(300 << 20);
    store.put(ids(1, 10), state(100));
    store.put(ids(2, 20), state(100));
    store.put(ids(3, 30), state(100));
    // Using the first makes the second the least recently used.
    const first = store.take(ids(1, 10, 11))!;
    store.put(first.tokens, first.cache);
    store.put(ids(4, 40), state(150)); // 450 MiB: the second leaves, then 350: the third
    assert.deepEqual([store.stats().entries, store.stats().bytes / 2 ** 20], [2, 250]);
    assert.equal(store.take(ids(2, 20, 21)), undefined, 'least recently used: evicted first');
    assert.equal(store.take(ids(3, 30, 31)), undefined, 'next least recently used: evicted');
    assert.ok(store.take(ids(1, 10, 12)) && store.take(ids(4, 40, 41)));
    const big = new PrefixCache(300 << 20);
    big.put(ids(1, 10), state(100));
    big.put(ids(2, 20), state(100));
    big.put(ids(3, 30), state(400)); // larger than the budget: every other state goes, this one stays
    assert.deepEqual([big.stats().entries, big.stats().bytes / 2 ** 20], [1, 400]);
    assert.ok(big.take(ids(3, 30, 1)));
  });

  test("making room for a request's new storage evicts the least recently used states first", () => {
    const store = new PrefixCache(300 << 20);
    store.put(ids(1, 10), state(100));
    store.put(ids(2, 20), state(100));
    store.makeRoom(150 << 20);
    assert.deepEqual([store.stats().entries, store.stats().bytes / 2 ** 20], [1, 100]);
    assert.equal(store.take(ids(1, 10, 11)), undefined, 'the older one went');
    store.makeRoom(1 << 30);
    assert.equal(store.stats().entries, 0);
  });

  test('a state that extends a stored one replaces it', () => {
    const store = new PrefixCache(1 << 30);
    store.put(ids(1, 2, 3), state(10));
    store.put(ids(1, 2, 3, 4, 5), state(10));
    assert.equal(store.stats().entries, 1);
  });

  test('a budget of 0 keeps nothing', () => {
    const store = new PrefixCache(0);
    store.put(ids(1, 2, 3), state(1));
    assert.equal(store.stats().entries, 0);
    assert.equal(store.take(ids(1, 2, 3)), undefined);
  });
});

describe('prefill-only (the warm-up)', () => {
  let model: OptModel;
  before(async () => {
    const f = await writeOptCheckpoint(join(tmp.path, 'warm-model'), { seed: 9, config: { max_position_embeddings: 256 } });
    model = await loadOptModel(f.dir, { dtype: 'fp32', cacheDir: join(tmp.path, 'cache') });
  });
  after(() => model.dispose());
  const prompt =
    'import { readFile } from "node:fs/promises";\nexport async function load(path: string) {\n  const text = await readFile(path, "utf8");\n';

  test('stores the prompt and generates nothing; the completion after it re-runs only the last token, with unchanged results', async () => {
    const store = new PrefixCache(64 << 20);
    const [warm] = await generate(model, prompt, { max_new_tokens: 4, return_full_text: false, prefixStore: store, prefillOnly: true });
    assert.deepEqual([warm!.tokenIds, warm!.text, warm!.finishReason], [[], '', 'length']);
    const [r] = await generate(model, prompt, { max_new_tokens: 4, return_full_text: false, prefixStore: store });
    assert.equal(r!.reusedTokens, r!.promptTokens - 1);
    const [plain] = await generate(model, prompt, { max_new_tokens: 4, return_full_text: false });
    assert.deepEqual(r!.tokenIds, plain!.tokenIds);
  });

  test('ended after two chunks, it keeps what it prefilled', async () => {
    const store = new PrefixCache(64 << 20);
    const stream = generateStream(model, prompt, { max_new_tokens: 4, prefixStore: store, prefillOnly: true, prefillChunk: 8 });
    assert.equal((await stream.next()).value?.type, 'prefill');
    assert.equal((await stream.next()).value?.type, 'prefill');
    await stream.return(undefined);
    const [r] = await generate(model, prompt, { max_new_tokens: 4, return_full_text: false, prefixStore: store });
    assert.equal(r!.reusedTokens, 16);
  });

  /** Counts the model passes `body` makes. */
  async function passes(body: () => Promise<unknown>): Promise<number> {
    const forward = model.decoder.forward.bind(model.decoder);
    let n = 0;
    model.decoder.forward = (x) => (n++, forward(x));
    try {
      await body();
    } finally {
      model.decoder.forward = forward;
    }
    return n;
  }

  test('without a store, or when the store already holds the prompt, nothing runs', async () => {
    assert.equal(await passes(() => generate(model, prompt, { max_new_tokens: 4, prefillOnly: true })), 0);
    const store = new PrefixCache(64 << 20);
    assert.ok((await passes(() => generate(model, prompt, { max_new_tokens: 4, prefixStore: store, prefillOnly: true }))) > 0);
    const earlier = prompt.slice(0, prompt.indexOf('export'));
    assert.equal(
      await passes(() => generate(model, earlier, { max_new_tokens: 4, prefixStore: store, prefillOnly: true })),
      0,
      'a cursor moved up',
    );
    const [r] = await generate(model, prompt, { max_new_tokens: 4, return_full_text: false, prefixStore: store });
    assert.equal(r!.reusedTokens, r!.promptTokens - 1, 'the state of the whole prompt is still there');
  });

  test('typing after a completion that ran to its end extends the state in place: its generated tail is not worth a copy', async () => {
    const store = new PrefixCache(64 << 20);
    const [first] = await generate(model, prompt, { max_new_tokens: 24, min_new_tokens: 24, return_full_text: false, prefixStore: store });
    assert.equal(first!.tokenIds.length, 24);
    const copies = await passes(async () => {
      const copy = model.decoder.copyPrefix.bind(model.decoder);
      let n = 0;
      model.decoder.copyPrefix = (...a) => (n++, copy(...a));
      try {
        await generate(model, `${prompt}x`, { max_new_tokens: 2, return_full_text: false, prefixStore: store });
      } finally {
        model.decoder.copyPrefix = copy;
      }
      assert.equal(n, 0, 'no copy');
    });
    assert.ok(copies > 0);
    assert.equal(store.stats().entries, 1);
  });

  test('a prompt that shares only the first lines of a stored state continues from a copy: both states stay', async () => {
    const store = new PrefixCache(64 << 20);
    const header = 'import { readFile } from "node:fs/promises";\n';
    const a = `${header}export async function load(path: string) {\n  const text = await readFile(path, "utf8");\n  return JSON.parse(text);\n}\n`;
    const b = `${header}export function size(bytes: number): string {\n  return bytes < 1024 ? \`\${bytes} B\` : \`\${(bytes / 1024).toFixed(1)} KiB\`;\n}\n`;
    await generate(model, a, { max_new_tokens: 1, prefixStore: store, prefillOnly: true });
    const [rb] = await generate(model, b, { max_new_tokens: 4, return_full_text: false, prefixStore: store });
    const headerTokens = (await model.tokenizer.encode(header)).length;
    assert.ok(rb!.reusedTokens >= headerTokens - 2 && rb!.reusedTokens < rb!.promptTokens - 10, `b reused ${rb!.reusedTokens}`);
    const [plain] = await generate(model, b, { max_new_tokens: 4, return_full_text: false });
    assert.deepEqual(rb!.tokenIds, plain!.tokenIds, 'continuing from the copy gives the same tokens');
    const [ra] = await generate(model, a, { max_new_tokens: 4, return_full_text: false, prefixStore: store });
    assert.equal(ra!.reusedTokens, ra!.promptTokens - 1, 'a kept its whole state');
    assert.equal(store.stats().entries, 2);
  });
});
