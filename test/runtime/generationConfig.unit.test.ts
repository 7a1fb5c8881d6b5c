// resolveGenerationOptions: transformers' precedence (call > generation_config.json > GenerationConfig
// defaults, token ids from config.json), the prompt-dependent length rules, each validation error and
// the warnings transformers only logs.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { UsageError } from '../../protocol/errors.js';
import { type GenerationOptions, resolveGenerationOptions, resolveLengths } from '../../runtime/src/generation/generationConfig.js';

const OPT = { bos_token_id: 2, eos_token_id: 2, pad_token_id: 1, max_position_embeddings: 2048 };
const resolve = (user: Partial<GenerationOptions>, json?: Record<string, unknown>) => resolveGenerationOptions(user, json, OPT);

describe('precedence', () => {
  test("transformers' defaults and config.json's token ids", () => {
    const o = resolve({});
    assert.equal(o.max_length, 20);
    assert.equal(o.max_length_is_default, true);
    assert.equal(o.max_new_tokens, undefined);
    assert.equal(o.min_length, 0);
    assert.equal(o.min_new_tokens, undefined);
    assert.equal(o.do_sample, false);
    assert.equal(o.temperature, 1);
    assert.equal(o.top_k, 50);
    assert.equal(o.top_p, 1);
    assert.equal(o.typical_p, 1);
    assert.equal(o.repetition_penalty, 1);
    assert.equal(o.no_repeat_ngram_size, 0);
    assert.equal(o.num_return_sequences, 1);
    assert.deepEqual(o.eos_token_id, [2]);
    assert.equal(o.pad_token_id, 1);
    assert.equal(o.bos_token_id, 2);
    assert.deepEqual(o.stop_strings, []);
    assert.equal(o.seed, undefined);
    assert.equal(o.return_full_text, true);
    assert.deepEqual(o.warnings, []);
  });

  test('generation_config.json over defaults, call options over both; JSON null is unset', () => {
    const json = {
      do_sample: true,
      top_p: 0.9,
      top_k: null,
      temperature: 0.6,
      eos_token_id: [2, 50118],
      pad_token_id: 0,
      transformers_version: '4.27.0',
    };
    const a = resolve({}, json);
    assert.equal(a.do_sample, true);
    assert.equal(a.top_p, 0.9);
    assert.equal(a.top_k, 50);
    assert.equal(a.temperature, 0.6);
    assert.deepEqual(a.eos_token_id, [2, 50118]);
    assert.equal(a.pad_token_id, 0);
    const b = resolve({ top_p: 0.5, eos_token_id: 7, do_sample: false, temperature: 1 }, json);
    assert.equal(b.top_p, 0.5);
    assert.deepEqual(b.eos_token_id, [7]);
    assert.equal(b.do_sample, false);
    assert.equal(b.temperature, 1);
  });

  test('a single stop string becomes a list; seed and return_full_text pass through', () => {
    const o = resolve({ seed: 42, return_full_text: false }, { stop_strings: '\n\n' });
    assert.deepEqual(o.stop_strings, ['\n\n']);
    assert.equal(o.seed, 42);
    assert.equal(o.return_full_text, false);
  });
});

describe('lengths', () => {
  test('default max_length means 20 new tokens, capped at max_position_embeddings', () => {
    assert.deepEqual(resolveLengths(resolve({}), 7), { maxLength: 27, maxNewTokens: 20, minLength: 0, warnings: [] });
    assert.equal(resolveLengths(resolve({}), 2040).maxLength, 2048);
    // generation_config.json repeating the default is still the default.
    assert.equal(resolveLengths(resolve({}, { max_length: 20 }), 7).maxLength, 27);
  });

  test('an explicit max_length is a total', () => {
    assert.equal(resolveLengths(resolve({ max_length: 30 }), 7).maxLength, 30);
    assert.equal(resolveLengths(resolve({ max_length: 20 }), 7).maxLength, 20);
    assert.equal(resolveLengths(resolve({}, { max_length: 50 }), 7).maxLength, 50);
  });

  test('max_new_tokens overrides max_length, with a warning when both are set', () => {
    const o = resolve({ max_new_tokens: 5, max_length: 100 });
    assert.match(o.warnings.join(), /max_new_tokens takes precedence/);
    assert.deepEqual(resolveLengths(o, 7), { maxLength: 12, maxNewTokens: 5, minLength: 0, warnings: [] });
    // from generation_config.json too, as transformers merges it before the override
    assert.equal(resolveLengths(resolve({ max_length: 100 }, { max_new_tokens: 3 }), 7).maxLength, 10);
  });

  test('min_new_tokens becomes a total min length; unfeasible and too-long lengths warn', () => {
    assert.equal(resolveLengths(resolve({ min_new_tokens: 4, min_length: 100 }), 7).minLength, 11);
    assert.equal(resolveLengths(resolve({ min_length: 9 }), 7).minLength, 9);
    assert.match(resolveLengths(resolve({ max_new_tokens: 2, min_new_tokens: 5 }), 7).warnings.join(), /exceeds max_length/);
    assert.match(resolveLengths(resolve({ max_new_tokens: 100 }), 2000).warnings.join(), /exceeds the model's 2048 positions/);
  });

  test('a prompt that already reaches max_length is an error', () => {
    assert.throws(
      () => resolveLengths(resolve({ max_length: 10 }), 10),
      (e: unknown) => e instanceof UsageError && /prompt has 10 tokens but max_length is 10/.test(e.message),
    );
    assert.throws(() => resolveLengths(resolve({}), 2048), /max_length is 2048/);
  });
});

describe('validation', () => {
  const bad: [string, Partial<GenerationOptions>, Record<string, unknown> | undefined, RegExp][] = [
    [
      'zero temperature when sampling',
      { do_sample: true, temperature: 0 },
      undefined,
      /temperature must be a strictly positive number when sampling \(do_sample=true\), got 0; for greedy decoding set do_sample=false/,
    ],
    [
      'negative temperature when sampling',
      { temperature: -1 },
      { do_sample: true },
      /temperature must be a strictly positive number when sampling .* got -1/,
    ],
    ['temperature from the json', {}, { do_sample: true, temperature: 0 }, /got 0 \(from generation_config\.json\)/],
    ['NaN temperature', { temperature: NaN }, undefined, /temperature must be a finite number, got NaN/],
    ['top_p 0', { top_p: 0 }, undefined, /top_p must be in \(0, 1\] \(1 disables top-p\), got 0/],
    ['top_p above 1', { top_p: 1.5 }, undefined, /top_p must be in \(0, 1\].*got 1\.5/],
    ['negative top_p', { top_p: -0.1 }, undefined, /top_p must be in \(0, 1\]/],
    ['negative top_k', { top_k: -1 }, undefined, /top_k must be a non-negative integer \(0 disables top-k\), got -1/],
    ['fractional top_k', { top_k: 2.5 }, undefined, /top_k must be a non-negative integer/],
    ['top_k as a string', { top_k: 'ten' as unknown as number }, undefined, /top_k must be a non-negative integer .*got "ten"/],
    ['typical_p 0', { typical_p: 0 }, undefined, /typical_p must be in \(0, 1\] \(1 disables typical-p\), got 0/],
    ['typical_p above 1', { typical_p: 1.1 }, undefined, /typical_p must be in \(0, 1\]/],
    ['repetition_penalty 0', { repetition_penalty: 0 }, undefined, /repetition_penalty must be a strictly positive number .*got 0/],
    ['negative repetition_penalty', { repetition_penalty: -1.2 }, undefined, /repetition_penalty must be a strictly positive number/],
    [
      'num_return_sequences with greedy',
      { num_return_sequences: 2 },
      undefined,
      /num_return_sequences=2 needs sampling: greedy decoding returns a single sequence; set do_sample=true or num_return_sequences=1/,
    ],
    [
      'num_return_sequences 0',
      { num_return_sequences: 0, do_sample: true },
      undefined,
      /num_return_sequences must be a positive integer, got 0/,
    ],
    ['max_new_tokens 0', { max_new_tokens: 0 }, undefined, /max_new_tokens must be a positive integer \(at least 1\), got 0/],
    ['negative min_new_tokens', { min_new_tokens: -1 }, undefined, /min_new_tokens must be a non-negative integer, got -1/],
    ['negative no_repeat_ngram_size', { no_repeat_ngram_size: -2 }, undefined, /no_repeat_ngram_size must be a non-negative integer/],
    [
      'negative eos id',
      { eos_token_id: [2, -1] },
      undefined,
      /eos_token_id must be a non-negative integer token id or a list of them, got \[2,-1\]/,
    ],
    ['non-boolean do_sample', {}, { do_sample: 'yes' }, /do_sample must be true or false, got "yes" \(from generation_config\.json\)/],
    ['empty stop string', { stop_strings: [''] }, undefined, /stop_strings must be a list of non-empty strings/],
    ['unsafe seed', { seed: 2 ** 60 }, undefined, /seed must be an integer between/],
  ];
  for (const [name, user, json, message] of bad) {
    test(name, () => {
      assert.throws(
        () => resolve(user, json),
        (e: unknown) => e instanceof UsageError && message.test(e.message),
      );
    });
  }

  test('num_return_sequences > 1 is fine when sampling', () => {
    assert.equal(resolve({ num_return_sequences: 3, do_sample: true }).num_return_sequences, 3);
  });

  test('sampling flags with greedy decoding only warn, as transformers does', () => {
    const o = resolve({ temperature: 0, top_p: 0.9, top_k: 10 });
    assert.equal(o.do_sample, false);
    assert.equal(o.warnings.length, 3);
    assert.match(o.warnings.join('\n'), /do_sample is false, so temperature=0 has no effect/);
    assert.match(o.warnings.join('\n'), /top_p=0\.9/);
    assert.match(o.warnings.join('\n'), /top_k=10/);
  });
});
