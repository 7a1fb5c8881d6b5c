// The generation loop end to end on fixture models: greedy decoding equals the naive reference's
// argmax loop (alone and inside left-padded batches), seeded sampling is reproducible, streaming
// text adds up, stop strings spanning tokens, EOS, cancellation, and the vocabulary bound.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generate, generateStream, textGenerationPipeline } from '../../runtime/src/generation/generate.js';
import { type OptModel, loadOptModel } from '../../runtime/src/model.js';
import { type Fixture, writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { writeSafetensors } from '../fixtures/safetensorsWriter.js';
import { argmax, naiveLogits, tempDir } from '../helpers/decoderHarness.js';
import { expectedShapes } from '../reference/naiveOpt.js';

const tmp = tempDir('generate');
after(() => tmp.remove());
const cacheDir = join(tmp.path, 'cache');

/** Greedy continuation by the naive reference: full forward pass per token. */
function naiveGreedy(f: Fixture, ids: number[], steps: number, vocab: number): number[] {
  const seq = [...ids];
  for (let s = 0; s < steps; s++) seq.push(argmax(naiveLogits(f, [seq])[0]!.at(-1)!.subarray(0, vocab)));
  return seq.slice(ids.length);
}

describe('generate', () => {
  let f: Fixture;
  let model: OptModel;
  before(async () => {
    f = await writeOptCheckpoint(join(tmp.path, 'model'), { seed: 21 });
    model = await loadOptModel(f.dir, { dtype: 'fp32', cacheDir });
  });
  after(() => model.dispose());

  test('greedy tokens equal the reference argmax loop', async () => {
    const prompt = 'The quick brown fox';
    const ids = await model.tokenizer.encode(prompt);
    const [row] = await generate(model, prompt, { max_new_tokens: 8 });
    assert.deepEqual(row!.tokenIds, naiveGreedy(f, ids, 8, model.tokenizer.vocabSize));
    assert.equal(row!.finishReason, 'length');
    assert.equal(row!.text, prompt + model.tokenizer.decode(row!.tokenIds, { skipSpecialTokens: true }));
  });

  test('a prompt gives the same greedy tokens alone and in a left-padded batch', async () => {
    const prompts = ['Hi', 'A much longer prompt, with several more tokens in it', 'Hello there'];
    const batch = await generate(model, prompts, { max_new_tokens: 6 });
    for (const [i, p] of prompts.entries()) {
      const [alone] = await generate(model, p, { max_new_tokens: 6 });
      assert.deepEqual(batch[i]!.tokenIds, alone!.tokenIds, `prompt ${i}`);
    }
  });

  test('seeded sampling is reproducible; num_return_sequences expands each prompt', async () => {
    const opts = {
      do_sample: true,
      top_p: 0.95,
      temperature: 0.8,
      repetition_penalty: 1.2,
      max_new_tokens: 10,
      seed: 42,
      num_return_sequences: 3,
    } as const;
    const a = await generate(model, ['Once upon a time', 'def main('], opts);
    const b = await generate(model, ['Once upon a time', 'def main('], opts);
    assert.equal(a.length, 6);
    assert.deepEqual(
      a.map((r) => r.prompt),
      [0, 0, 0, 1, 1, 1],
    );
    assert.deepEqual(
      a.map((r) => r.tokenIds),
      b.map((r) => r.tokenIds),
    );
    const c = await generate(model, ['Once upon a time', 'def main('], { ...opts, seed: 43 });
    assert.notDeepEqual(
      a.map((r) => r.tokenIds),
      c.map((r) => r.tokenIds),
    );
  });

  test('streamed text adds up to the result and to the decoded tokens', async () => {
    // (That a chunk never splits a UTF-8 character is the stream decoder's contract, tested with the tokenizer.)
    let streamed = '';
    let done;
    for await (const e of generateStream(model, 'Emoji: 🧑‍💻', { max_new_tokens: 12, do_sample: true, seed: 3, return_full_text: false })) {
      if (e.type === 'token') streamed += e.text;
      else if (e.type === 'done') done = e.result;
    }
    assert.ok(done);
    assert.equal(streamed, done.text);
    assert.equal(streamed, model.tokenizer.decode(done.tokenIds, { skipSpecialTokens: true }));
  });

  test('a stop string spanning tokens ends generation right after it', async () => {
    const [free] = await generate(model, 'Stop test', { max_new_tokens: 12, return_full_text: false });
    const pieces = free!.tokenIds.map((id) => model.tokenizer.decode([id]));
    // A stop string made of the end of token 2 and the start of token 3 (so it spans a boundary).
    const stop = pieces[2]!.slice(-2) + pieces[3]!.slice(0, 2);
    const [stopped] = await generate(model, 'Stop test', { max_new_tokens: 12, return_full_text: false, stop_strings: [stop] });
    assert.equal(stopped!.finishReason, 'stop');
    assert.ok(stopped!.text.endsWith(stop), `"${stopped!.text}" ends with "${stop}"`);
    assert.ok(free!.text.startsWith(stopped!.text));
    assert.equal(stopped!.text.indexOf(stop), stopped!.text.length - stop.length);
  });

  test('EOS ends a row and is kept in its token ids', async () => {
    const [free] = await generate(model, 'Ends', { max_new_tokens: 6 });
    const eos = free!.tokenIds[2]!;
    const [row] = await generate(model, 'Ends', { max_new_tokens: 6, eos_token_id: eos });
    assert.equal(row!.finishReason, 'eos');
    assert.deepEqual(row!.tokenIds, free!.tokenIds.slice(0, free!.tokenIds.indexOf(eos) + 1));
  });

  test('an abort stops generation within one decode step', async () => {
    const controller = new AbortController();
    let tokens = 0;
    const stream = generateStream(model, 'Cancel me', { max_new_tokens: 40, signal: controller.signal });
    await assert.rejects(
      async () => {
        for await (const e of stream) {
          if (e.type === 'token' && ++tokens === 3) controller.abort();
        }
      },
      { name: 'AbortError' },
    );
    assert.equal(tokens, 3, 'no token after the abort');
  });

  test('pipeline helper returns generated_text per prompt', async () => {
    const out = await textGenerationPipeline(model)(['a', 'b'], { max_new_tokens: 3 });
    assert.equal(out.length, 2);
    assert.ok(out[0]![0]!.generated_text.startsWith('a'));
  });

  test('bad options are refused with the valid range', async () => {
    await assert.rejects(generate(model, 'x', { do_sample: true, temperature: -1 }), /temperature/);
    await assert.rejects(generate(model, 'x', { do_sample: true, top_p: 1.5 }), /top_p/);
    await assert.rejects(generate(model, Array(80).fill('word').join(' '), { max_new_tokens: 1 }), /model has 64 positions/);
  });
});

test('logit rows past the tokenizer vocabulary are never produced', async () => {
  // An untied lm_head whose 7 rows past the 50,265 tokens are huge: unmasked, argmax would pick them.
  const f = await writeOptCheckpoint(join(tmp.path, 'rogue'), { lmHead: 'untied', seed: 4 });
  const head = f.weights.get('lm_head.weight')!;
  const proj = f.config.word_embed_proj_dim;
  for (let v = 50265; v < f.config.vocab_size; v++) head.fill(5, v * proj, (v + 1) * proj);
  const shapes = expectedShapes(f.config);
  await writeSafetensors(
    join(f.dir, 'model.safetensors'),
    [...f.weights].map(([name, data]) => ({
      name,
      dtype: 'F32',
      shape: shapes.get(name)!,
      data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    })),
  );
  const model = await loadOptModel(f.dir, { dtype: 'fp32', cacheDir });
  const rows = await generate(model, ['x', 'y y'], { max_new_tokens: 5 });
  const sampled = await generate(model, 'z', { max_new_tokens: 5, do_sample: true, seed: 1, top_k: 0 });
  for (const r of [...rows, ...sampled]) for (const id of r.tokenIds) assert.ok(id < 50265, `token ${id}`);
  await model.dispose();
});
