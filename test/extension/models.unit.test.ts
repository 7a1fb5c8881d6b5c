// The extension's model table and settings logic: the memory the picker shows is where the
// runtime's check before loading draws the line, for every size and precision, parameter counts match the
// published sizes, and settings turn into sampling options and per-language switches as documented.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseOptConfig } from '../../runtime/src/config.js';
import { planLoad, resolveDtype as runtimeResolveDtype } from '../../runtime/src/model.js';
import {
  MODEL_DTYPES,
  OPT_SIZES,
  formatBytes,
  formatParams,
  knownSize,
  memoryLine,
  modelNeedBytes,
  parameterCount,
  resolveDtype,
  suggestedAssistant,
} from '../../extension/src/models/optModels.js';
import { languageEnabled, samplingFromSettings } from '../../extension/src/settings.js';

describe('OPT sizes and memory', () => {
  test('the figure the picker shows is where the runtime refuses a load, KV cache and a hand-set prefix cache included', () => {
    for (const size of OPT_SIZES) {
      const config = parseOptConfig({ model_type: 'opt', ...size.shape });
      for (const dtype of MODEL_DTYPES) {
        for (const sizing of [{ contextTokens: 816 }, { contextTokens: 2048, prefixCacheBytes: 512 * 2 ** 20 }]) {
          const need = modelNeedBytes(size.shape, dtype, sizing);
          const load = (availableMemoryBytes: number) =>
            planLoad(config, { dtype, device: 'cpu', checkMemory: true, ...sizing, availableMemoryBytes });
          assert.doesNotThrow(() => load(need), `${size.id} ${dtype} fits in exactly its figure`);
          assert.throws(() => load(need - 1), /needs about/, `${size.id} ${dtype} refused one byte short`);
        }
      }
    }
  });

  test('parameter counts match the published sizes (arXiv 2205.01068)', () => {
    const published: Record<string, number> = {
      '125m': 125.2e6,
      '350m': 331.2e6,
      '1.3b': 1.316e9,
      '2.7b': 2.652e9,
      '6.7b': 6.659e9,
      '13b': 12.85e9,
      '30b': 29.97e9,
      '66b': 65.72e9,
    };
    for (const size of OPT_SIZES) {
      const n = parameterCount(size.shape);
      assert.ok(Math.abs(n / published[size.label]! - 1) < 0.005, `${size.id}: ${n} vs ${published[size.label]}`);
    }
    assert.equal(formatParams(parameterCount(OPT_SIZES[0]!.shape)), '125M');
    assert.equal(formatParams(parameterCount(OPT_SIZES[2]!.shape)), '1.3B');
    assert.equal(formatParams(parameterCount(OPT_SIZES[7]!.shape)), '66B');
  });

  test('bigger models and wider precisions need more memory; 66b at fp16 does not fit 64 GiB', () => {
    for (const dtype of MODEL_DTYPES) {
      const bytes = OPT_SIZES.map((s) => modelNeedBytes(s.shape, dtype, { contextTokens: 816 }));
      assert.deepEqual(
        [...bytes].sort((a, b) => a - b),
        bytes,
        dtype,
      );
    }
    const big = OPT_SIZES.find((s) => s.label === '66b')!;
    assert.ok(modelNeedBytes(big.shape, 'int4', { contextTokens: 816 }) < modelNeedBytes(big.shape, 'int8', { contextTokens: 816 }));
    // 66b: 4.5 MiB of float32 KV per token adds 3.7 GiB at the editor's 816-token context (fp16: half).
    assert.match(
      memoryLine(big.shape, 64 * 2 ** 30, { contextTokens: 816 }),
      /int4 44 GiB · int8 69 GiB \(too big\) · fp16 125 GiB \(too big\)/,
    );
    assert.doesNotMatch(memoryLine(OPT_SIZES[0]!.shape, 64 * 2 ** 30, { contextTokens: 816 }), /too big/);
  });

  test('auto precision resolves as the runtime resolves it', () => {
    for (const device of ['cpu', 'webgpu', 'cuda'] as const) {
      for (const dtype of ['auto', 'fp32', 'fp16', 'int8', 'int4'] as const)
        assert.equal(resolveDtype(dtype, device), runtimeResolveDtype(dtype, device), `${dtype} on ${device}`);
    }
    assert.equal(resolveDtype('auto', 'auto'), 'int8', 'device auto is the CPU');
  });

  test('a model id or folder names its size when it can', () => {
    assert.equal(knownSize('facebook/opt-1.3b')?.label, '1.3b');
    assert.equal(knownSize('/models/opt-125m')?.label, '125m');
    assert.equal(knownSize('C:\\models\\OPT-350M\\')?.label, '350m');
    assert.equal(knownSize('facebook/opt-iml-1.3b'), undefined);
    assert.equal(knownSize('/models/mine'), undefined);
  });

  test('byte formatting', () => {
    assert.equal(formatBytes(512 * 2 ** 20), '512 MiB');
    assert.equal(formatBytes(1.5 * 2 ** 30), '1.5 GiB');
    assert.equal(formatBytes(123.4 * 2 ** 30), '123 GiB');
  });
});

describe('the assistant the model picker offers', () => {
  test('facebook/opt-125m for released OPTs of 1.3b and more; nothing for the small ones or other checkpoints', () => {
    assert.deepEqual(
      OPT_SIZES.map((s) => [s.label, suggestedAssistant(s.id)]),
      [
        ['125m', undefined],
        ['350m', undefined],
        ['1.3b', 'facebook/opt-125m'],
        ['2.7b', 'facebook/opt-125m'],
        ['6.7b', 'facebook/opt-125m'],
        ['13b', 'facebook/opt-125m'],
        ['30b', 'facebook/opt-125m'],
        ['66b', 'facebook/opt-125m'],
      ],
    );
    assert.equal(suggestedAssistant(' facebook/opt-6.7b '), 'facebook/opt-125m');
    assert.equal(suggestedAssistant('/models/my-opt-13b'), undefined);
    assert.equal(suggestedAssistant('someone/opt-1.3b-finetuned'), undefined);
  });
});

describe('settings', () => {
  test('generation settings become Hugging Face sampling options; temperature 0 is greedy', () => {
    const base: Record<string, unknown> = { temperature: 0.8, topP: 0.95, topK: 50, repetitionPenalty: 1.1, maxNewTokens: 128, seed: null };
    // The settings as config.ts reads them (optComplete.generation.<name>); a setting the map lacks reads as unset.
    const from = (g: Record<string, unknown>) => samplingFromSettings((key) => g[key.slice('generation.'.length)]);
    assert.deepEqual(from(base), {
      max_new_tokens: 128,
      repetition_penalty: 1.1,
      do_sample: true,
      temperature: 0.8,
      top_p: 0.95,
      top_k: 50,
    });
    assert.deepEqual(from({ ...base, temperature: 0 }), { max_new_tokens: 128, repetition_penalty: 1.1, do_sample: false });
    assert.deepEqual(from({ ...base, topP: 1, topK: 0, repetitionPenalty: 1, seed: 7 }), {
      max_new_tokens: 128,
      do_sample: true,
      temperature: 0.8,
      seed: 7,
    });
  });

  test('per-language switch: own entry, then "*", then on', () => {
    assert.equal(languageEnabled({ '*': true, plaintext: false }, 'plaintext'), false);
    assert.equal(languageEnabled({ '*': false, markdown: true }, 'markdown'), true);
    assert.equal(languageEnabled({ '*': false }, 'python'), false);
    assert.equal(languageEnabled({}, 'python'), true);
    assert.equal(languageEnabled(undefined, 'python'), true);
    assert.equal(languageEnabled({ python: 'yes' }, 'python'), true, 'non-boolean entries are ignored');
  });
});
