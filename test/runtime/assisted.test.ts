// Assisted generation: the trained draft (test/fixtures/trained/opt-draft) drafting for the trained
// target. The text is the target's own, greedy and seeded-sampled, with every schedule and through
// stop strings, EOS and the length limit; fewer target passes than tokens; an assistant with
// another tokenizer is refused with the reason.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { UsageError } from '../../protocol/errors.js';
import { createLocalEngine } from '../../runtime/src/engine/localEngine.js';
import { DraftStateStore } from '../../runtime/src/generation/assistant.js';
import { type GenerateParams, generate } from '../../runtime/src/generation/generate.js';
import { type OptModel, loadOptModel } from '../../runtime/src/model.js';
import { writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { tempDir } from '../helpers/decoderHarness.js';

const tmp = tempDir('assisted');
after(() => tmp.remove());
const cacheDir = join(tmp.path, 'cache');
const TRAINED = join(import.meta.dirname, '..', 'fixtures', 'trained');

describe('assisted generation with the trained draft', () => {
  let target: OptModel;
  let draft: OptModel;
  before(async () => {
    target = await loadOptModel(join(TRAINED, 'opt-target'), { dtype: 'fp32', cacheDir });
    draft = await loadOptModel(join(TRAINED, 'opt-draft'), { dtype: 'fp32', cacheDir });
  });
  after(async () => {
    await target?.dispose();
    await draft?.dispose();
  });

  const PROMPTS = [
    'def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef mul(a, b):\n',
    'import os\nimport sys\n\nclass Lock:\n    def __init__(self):\n        self._waiters = None\n',
    'The museum opened in the spring, and the first visitors',
  ];

  async function same(prompt: string, params: GenerateParams, what: string): Promise<{ passes: number; tokens: number; accepted: number }> {
    const [plain] = await generate(target, prompt, params);
    const [assisted] = await generate(target, prompt, { ...params, assistantModel: draft });
    assert.deepEqual(assisted!.tokenIds, plain!.tokenIds, `${what}: ${JSON.stringify(prompt.slice(-30))}`);
    assert.equal(assisted!.text, plain!.text, what);
    assert.equal(assisted!.finishReason, plain!.finishReason, what);
    const s = assisted!.speculation!;
    return { passes: s.passes, tokens: assisted!.tokenIds.length, accepted: s.accepted };
  }

  test("the text is the target's own: greedy, seeded samples, both schedules, stops and lengths", async () => {
    let passes = 0;
    let tokens = 0;
    let accepted = 0;
    for (const prompt of PROMPTS) {
      const r = await same(prompt, { max_new_tokens: 40 }, 'greedy');
      passes += r.passes;
      tokens += r.tokens;
      accepted += r.accepted;
      await same(prompt, { max_new_tokens: 40, num_assistant_tokens_schedule: 'heuristic' }, 'heuristic schedule');
      await same(prompt, { max_new_tokens: 40, num_assistant_tokens: 3, assistant_confidence_threshold: 0 }, '3 tokens, no threshold');
      await same(prompt, { max_new_tokens: 9 }, 'max_new_tokens mid-round');
      await same(prompt, { max_new_tokens: 30, stop_strings: ['\n'] }, 'stop string');
      await same(prompt, { max_new_tokens: 30, repetition_penalty: 1.3, no_repeat_ngram_size: 3 }, 'penalties');
      for (const seed of [4, 5]) {
        // Speculative sampling draws differently from plain sampling (its distribution is the test
        // below): a seed still replays the same text.
        const params = { max_new_tokens: 30, do_sample: true, top_k: 30, seed, assistantModel: draft };
        const [a] = await generate(target, prompt, params);
        const [b] = await generate(target, prompt, params);
        assert.deepEqual(a!.tokenIds, b!.tokenIds, `sampled, seed ${seed}`);
        assert.ok(a!.speculation!.proposed > 0);
      }
    }
    assert.ok(accepted > 0, "the draft guessed some of the target's tokens");
    assert.ok(passes < tokens, `${passes} target passes for ${tokens} tokens`);
  });

  test("sampled with the assistant, a later token follows the target's own distribution (two-sample chi-square)", async () => {
    // Tokens 2 to 4 are the first round's three drafts, kept or replaced: the marginal of token 4
    // over many seeds must match plain sampling's.
    const prompt = PROMPTS[2]!;
    const params = {
      max_new_tokens: 4,
      do_sample: true,
      top_k: 8,
      temperature: 1.5,
      num_assistant_tokens: 3,
      assistant_confidence_threshold: 0,
    };
    const counts = [new Map<number, number>(), new Map<number, number>()];
    const N = 500;
    for (let seed = 1; seed <= N; seed++) {
      for (const [k, extra] of [{}, { assistantModel: draft }].entries()) {
        const [row] = await generate(target, prompt, { ...params, ...extra, seed: seed + k * 100_000 });
        const t = row!.tokenIds[3]!;
        counts[k]!.set(t, (counts[k]!.get(t) ?? 0) + 1);
      }
    }
    // Pool tokens seen fewer than 10 times in both runs together into one category.
    const ids = [...new Set([...counts[0]!.keys(), ...counts[1]!.keys()])];
    const big = ids.filter((t) => (counts[0]!.get(t) ?? 0) + (counts[1]!.get(t) ?? 0) >= 10);
    const cat = (m: Map<number, number>) => [
      ...big.map((t) => m.get(t) ?? 0),
      [...m].filter(([t]) => !big.includes(t)).reduce((n, [, c]) => n + c, 0),
    ];
    const [a, b] = [cat(counts[0]!), cat(counts[1]!)];
    let chi = 0;
    for (let i = 0; i < a.length; i++) {
      const total = a[i]! + b[i]!;
      if (total === 0) continue;
      const e = total / 2; // equal sample sizes
      chi += (a[i]! - e) ** 2 / e + (b[i]! - e) ** 2 / e;
    }
    const df = a.filter((x, i) => x + b[i]! > 0).length - 1;
    // The 0.999 quantile of chi-square (Wilson-Hilferty).
    const z = 3.09;
    const critical = df * (1 - 2 / (9 * df) + z * Math.sqrt(2 / (9 * df))) ** 3;
    assert.ok(df >= 2, `enough categories to compare (${df + 1})`);
    assert.ok(chi < critical, `chi-square ${chi.toFixed(1)} with ${df} degrees of freedom (0.999 quantile ${critical.toFixed(1)})`);
  });

  test('the draft keeps its state between requests: typing on reads only the new text, with the same results', async () => {
    const store = new DraftStateStore(draft);
    let prompt = PROMPTS[1]!;
    for (const typed of ['', '        self._', 'locked = False\n', '    def locked(self):\n']) {
      prompt += typed;
      const [plain] = await generate(target, prompt, { max_new_tokens: 16 });
      const [kept] = await generate(target, prompt, { max_new_tokens: 16, assistantModel: draft, assistantStore: store });
      assert.deepEqual(kept!.tokenIds, plain!.tokenIds, JSON.stringify(typed));
    }
    assert.equal(store.hits, 3, "every request after the first found the draft's state");
    const promptTokens = (await target.tokenizer.encode(PROMPTS[1]!)).length;
    assert.ok(store.reusedTokens >= 3 * promptTokens, `${store.reusedTokens} tokens not read again`);
    store.clear();
  });

  test('an assistant with another tokenizer is refused, naming the difference; lookup and an assistant together too', async () => {
    const other = await writeOptCheckpoint(join(tmp.path, 'gpt2-vocab'), { seed: 5 });
    const stranger = await loadOptModel(other.dir, { dtype: 'fp32', cacheDir });
    try {
      await assert.rejects(
        generate(target, 'x = 1', { max_new_tokens: 4, assistantModel: stranger }),
        (e: Error) => e instanceof UsageError && /tokenizers differ \(vocabularies of \d+ and \d+ tokens\)/.test(e.message),
      );
    } finally {
      await stranger.dispose();
    }
    await assert.rejects(
      generate(target, 'x = 1', { max_new_tokens: 4, assistantModel: draft, prompt_lookup_num_tokens: 3 }),
      /choose one/,
    );
  });

  test('the runtime loads an assistant beside the model: the same completions, drafted; prompt lookup requests use lookup', async () => {
    const base = { dtype: 'int8' as const, device: 'cpu' as const, cacheDir, contextTokens: 512 };
    const plain = await createLocalEngine({ ...base, model: join(TRAINED, 'opt-target') });
    const drafted = await createLocalEngine({ ...base, model: join(TRAINED, 'opt-target'), assistantModel: join(TRAINED, 'opt-draft') });
    try {
      assert.equal(plain.info().assistant, undefined);
      assert.deepEqual(drafted.info().assistant, { modelId: join(TRAINED, 'opt-draft'), dir: join(TRAINED, 'opt-draft'), dtype: 'int8' });
      for (const prompt of PROMPTS) {
        const request = { prompt, options: { max_new_tokens: 24 }, priority: 'interactive' as const };
        const a = await plain.generate(request);
        const b = await drafted.generate(request);
        assert.equal(b.text, a.text, prompt);
        assert.equal(a.speculation, undefined);
        assert.ok(b.speculation && b.speculation.proposed > 0, 'the assistant drafted');
        const c = await drafted.generate({ ...request, options: { ...request.options, prompt_lookup_num_tokens: 4 } });
        assert.equal(c.text, a.text);
      }
    } finally {
      await plain.dispose();
      await drafted.dispose();
    }
  });

  test('an assistant with another tokenizer fails the load, naming the difference', async () => {
    const other = await writeOptCheckpoint(join(tmp.path, 'gpt2-vocab-engine'), { seed: 6 });
    await assert.rejects(
      createLocalEngine({ model: join(TRAINED, 'opt-target'), dtype: 'int8', device: 'cpu', cacheDir, assistantModel: other.dir }),
      /tokenizers differ \(vocabularies of 12264 and \d+ tokens\)/,
    );
  });
});
