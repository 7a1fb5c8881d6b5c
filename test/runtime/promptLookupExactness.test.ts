// Prompt lookup's exactness: with lookup, generation picks the same tokens (greedy) and the same
// seeded samples as without it, on random and trained fixtures, through EOS, stop strings, the
// length limit and the processors that change the target's choice, in fewer model passes.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type GenerateParams, generate } from '../../runtime/src/generation/generate.js';
import { type OptModel, loadOptModel } from '../../runtime/src/model.js';
import { writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { tempDir } from '../helpers/decoderHarness.js';

const tmp = tempDir('prompt-lookup');
after(() => tmp.remove());
const cacheDir = join(tmp.path, 'cache');

describe('generation with prompt lookup is generation without it, in fewer passes', () => {
  const models: Record<string, OptModel> = {};
  before(async () => {
    const random = await writeOptCheckpoint(join(tmp.path, 'random'), { seed: 33 });
    models.random = await loadOptModel(random.dir, { dtype: 'fp32', cacheDir });
    models.trained = await loadOptModel(join(import.meta.dirname, '..', 'fixtures', 'trained', 'opt-target'), { dtype: 'int8', cacheDir });
  });
  after(async () => {
    for (const m of Object.values(models)) await m.dispose();
  });

  const CODE = [
    'def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef mul(a, b):\n',
    'import os\nimport sys\nimport os\n',
    'The cat sat on the mat. The cat sat on the',
    'x = 1\ny = 2\nx = 1\ny = 2\nx = 1\n',
    'for i in range(10):\n    print(i)\nfor j in range(10):\n    print(',
  ];

  async function same(model: OptModel, prompt: string, params: GenerateParams, what: string): Promise<{ passes: number; tokens: number }> {
    const [plain] = await generate(model, prompt, params);
    const [fast] = await generate(model, prompt, { ...params, prompt_lookup_num_tokens: 5 });
    assert.deepEqual(fast!.tokenIds, plain!.tokenIds, `${what}: ${JSON.stringify(prompt.slice(-30))}`);
    assert.equal(fast!.text, plain!.text, what);
    assert.equal(fast!.finishReason, plain!.finishReason, what);
    assert.ok(fast!.speculation, 'the result reports the passes');
    return { passes: fast!.speculation!.passes, tokens: fast!.tokenIds.length };
  }

  for (const name of ['random', 'trained']) {
    test(`${name}: greedy, sampled with a seed, with penalties, stop strings and lengths`, async () => {
      const model = models[name]!;
      let passes = 0;
      let tokens = 0;
      for (const prompt of CODE) {
        const r = await same(model, prompt, { max_new_tokens: 40 }, 'greedy');
        passes += r.passes;
        tokens += r.tokens;
        await same(model, prompt, { max_new_tokens: 7 }, 'max_new_tokens mid-candidate');
        await same(model, prompt, { max_new_tokens: 30, repetition_penalty: 1.3 }, 'repetition penalty');
        await same(model, prompt, { max_new_tokens: 30, no_repeat_ngram_size: 3 }, 'no-repeat-ngram');
        await same(model, prompt, { max_new_tokens: 30, stop_strings: ['\n\n', ')'] }, 'stop strings');
        await same(model, prompt, { max_new_tokens: 30, min_new_tokens: 20 }, 'min_new_tokens (EOS suppressed)');
        for (const seed of [1, 2, 3]) {
          await same(model, prompt, { max_new_tokens: 30, do_sample: true, temperature: 0.7, top_k: 20, seed }, `sampled, seed ${seed}`);
        }
      }
      assert.ok(passes <= tokens, `${name}: ${passes} passes for ${tokens} tokens`);
      if (name === 'trained') assert.ok(passes < tokens, `trained: repeated code is copied (${passes} passes for ${tokens} tokens)`);
    });
  }

  test('EOS inside a candidate run ends the text there, as plain decoding does', async () => {
    const model = models.random!;
    // Every token is "end of sequence" for this call: generation stops at the first, candidates or not.
    const eosIds = Array.from({ length: model.tokenizer.vocabSize }, (_, i) => i);
    for (const prompt of CODE) await same(model, prompt, { max_new_tokens: 20, eos_token_id: eosIds }, 'every token EOS');
    // A single EOS id that the prompt repeats: lookup proposes up to it and never past it.
    const ids = await model.tokenizer.encode(CODE[1]!);
    await same(model, CODE[1]!, { max_new_tokens: 30, eos_token_id: ids[3]! }, 'an EOS id inside the repeated text');
  });

  test('batches and warm-ups decode as before; a batch says once that lookup is off', async () => {
    const model = models.random!;
    const warnings: string[] = [];
    const rows = await generate(model, [CODE[0]!, CODE[2]!], {
      max_new_tokens: 10,
      prompt_lookup_num_tokens: 4,
      onWarning: (w) => warnings.push(w),
    });
    const plain = await generate(model, [CODE[0]!, CODE[2]!], { max_new_tokens: 10 });
    assert.deepEqual(
      rows.map((r) => r.tokenIds),
      plain.map((r) => r.tokenIds),
    );
    assert.deepEqual(warnings.filter((w) => /prompt lookup/.test(w)).length, 1);
    assert.equal(rows[0]!.speculation, undefined);
  });
});
