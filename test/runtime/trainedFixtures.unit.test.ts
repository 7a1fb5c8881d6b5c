// The trained fixtures (test/fixtures/trained/README.md): laid out as Hugging Face publishes
// facebook/opt-*, and run by the runtime with the numbers PyTorch trained them with: the float32
// NLL train.py recorded for the held-out stream's first 256 tokens is what the runtime's fp32 graph
// gives for the same tokens, within 0.1 %.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadOptModel } from '../../runtime/src/model.js';
import { scoreTokens } from '../../runtime/src/perplexity.js';
import { tempDir } from '../helpers/decoderHarness.js';

const TRAINED = new URL('../fixtures/trained/', import.meta.url).pathname;
const MODELS = ['opt-target', 'opt-draft'] as const;
const tmp = tempDir('trained');
after(() => tmp.remove());

interface TrainingLog {
  parameters: number;
  final: { loss: number; heldout_loss: number; tokens: number };
  check: { ids: number[]; nll_sum: number; tokens_scored: number };
}
const read = (model: string, file: string) => readFileSync(join(TRAINED, model, file), 'utf8');
const log = (model: string) => JSON.parse(read(model, 'training_log.json')) as TrainingLog;

describe('trained fixtures', { timeout: 120_000 }, () => {
  test("each is an OPTForCausalLM in the Hugging Face layout, with OPT's specials first", () => {
    for (const m of MODELS) {
      const config = JSON.parse(read(m, 'config.json'));
      assert.deepEqual(
        [config.architectures, config.model_type, config.torch_dtype, config.max_position_embeddings],
        [['OPTForCausalLM'], 'opt', 'float16', 2048],
        m,
      );
      const vocab = JSON.parse(read(m, 'vocab.json')) as Record<string, number>;
      assert.deepEqual([vocab['<s>'], vocab['<pad>'], vocab['</s>'], vocab['<unk>']], [0, 1, 2, 3]);
      assert.ok(config.vocab_size >= Object.keys(vocab).length && config.vocab_size % 64 === 0);
      assert.ok(read(m, 'heldout.txt').split('\n').length > 20, 'the held-out files are listed beside the model');
    }
  });

  for (const m of MODELS) {
    test(`${m}: the runtime's fp32 NLL on the recorded tokens equals PyTorch's within 0.1 %`, async () => {
      const { check } = log(m);
      const model = await loadOptModel(join(TRAINED, m), { dtype: 'fp32', cacheDir: join(tmp.path, 'cache') });
      try {
        const r = await scoreTokens(model.decoder, check.ids, { maxLength: check.ids.length, stride: check.ids.length });
        assert.equal(r.tokens_scored, check.tokens_scored);
        assert.ok(Math.abs(r.nll_sum / check.nll_sum - 1) < 1e-3, `runtime ${r.nll_sum} vs torch ${check.nll_sum}`);
      } finally {
        await model.dispose();
      }
    });
  }

  test("the draft shares the target's tokenizer and held-out files byte for byte (it can propose tokens for it)", () => {
    for (const file of ['vocab.json', 'merges.txt', 'heldout.txt', 'special_tokens_map.json', 'tokenizer_config.json']) {
      assert.equal(read('opt-draft', file), read('opt-target', file), file);
    }
    const [draft, target] = (['opt-draft', 'opt-target'] as const).map((m) => JSON.parse(read(m, 'config.json')));
    assert.equal(draft.vocab_size, target.vocab_size);
    assert.ok(
      draft.num_hidden_layers * draft.hidden_size < target.num_hidden_layers * target.hidden_size,
      'the draft is the smaller model',
    );
  });

  test('training took: held-out loss far below chance', () => {
    for (const m of MODELS) {
      const vocab = JSON.parse(read(m, 'config.json')).vocab_size as number;
      const loss = log(m).final.heldout_loss;
      assert.ok(loss < Math.log(vocab) / 2, `${m}: held-out loss ${loss} nats vs chance ${Math.log(vocab).toFixed(2)}`);
    }
  });
});
