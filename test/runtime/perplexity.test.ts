// `opt perplexity`'s method: the sliding-window bookkeeping of transformers' "Perplexity of
// fixed-length models" on hand cases, and the runtime's fp32 figure against the float64 reference
// forward pass on the same windows.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { loadOptModel } from '../../runtime/src/model.js';
import { negativeLogLikelihood, perplexityOf, scoreTokens, slidingWindows } from '../../runtime/src/perplexity.js';
import { writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { naiveLogits, tempDir } from '../helpers/decoderHarness.js';

const tmp = tempDir('ppl');
after(() => tmp.remove());

/** Token indices each window scores, in order. */
const scored = (length: number, maxLength: number, stride: number) =>
  slidingWindows(length, maxLength, stride).flatMap((w) => Array.from({ length: w.end - w.scoredFrom }, (_, k) => w.scoredFrom + k));

describe('sliding windows', () => {
  test('stride = max_length: disjoint windows; the first token of each has no context in it and is not scored', () => {
    assert.deepEqual(slidingWindows(10, 4, 4), [
      { begin: 0, end: 4, scoredFrom: 1 },
      { begin: 4, end: 8, scoredFrom: 5 },
      { begin: 8, end: 10, scoredFrom: 9 },
    ]);
    assert.deepEqual(scored(10, 4, 4), [1, 2, 3, 5, 6, 7, 9]);
  });

  test('stride 1: each window after the first scores its last token', () => {
    assert.deepEqual(slidingWindows(6, 4, 1), [
      { begin: 0, end: 4, scoredFrom: 1 },
      { begin: 1, end: 5, scoredFrom: 4 },
      { begin: 2, end: 6, scoredFrom: 5 },
    ]);
  });

  test('a text shorter than a window, and a text of exactly one window, are one pass scoring all but BOS', () => {
    assert.deepEqual(slidingWindows(5, 8, 4), [{ begin: 0, end: 5, scoredFrom: 1 }]);
    assert.deepEqual(slidingWindows(8, 8, 4), [{ begin: 0, end: 8, scoredFrom: 1 }]);
    assert.deepEqual(slidingWindows(1, 8, 4), [], 'a lone BOS has nothing to score');
  });

  test('with stride < max_length every token but BOS is scored exactly once, with at least max_length - stride of context after the first window', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 2, max: 64 }),
        fc.integer({ min: 1, max: 64 }),
        (length, maxLength, strideSeed) => {
          const stride = 1 + (strideSeed % (maxLength - 1));
          assert.deepEqual(
            scored(length, maxLength, stride),
            Array.from({ length: length - 1 }, (_, i) => i + 1),
          );
          for (const w of slidingWindows(length, maxLength, stride).slice(1)) assert.ok(w.scoredFrom - w.begin >= maxLength - stride);
        },
      ),
      { seed: 42, numRuns: 300 },
    );
  });

  test('a stride longer than the window, or a window under 2 tokens, is refused', () => {
    assert.throws(() => slidingWindows(10, 4, 5), /stride must be an integer from 1 to max_length \(4\)/);
    assert.throws(() => slidingWindows(10, 1, 1), /max_length must be an integer >= 2/);
  });

  test('the negative log-likelihood of a row', () => {
    const row = Float32Array.of(1, 2, 3);
    const lse = Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3));
    assert.ok(Math.abs(negativeLogLikelihood(row, 0) - (lse - 1)) < 1e-12);
    assert.equal(perplexityOf(Math.log(4) * 3, 3).perplexity.toFixed(9), (4).toFixed(9));
  });
});

test('the runtime fp32 perplexity equals the float64 reference on the same windows within 0.1 %', async () => {
  const f = await writeOptCheckpoint(join(tmp.path, 'model'), { seed: 12, config: { max_position_embeddings: 64 } });
  const model = await loadOptModel(f.dir, { dtype: 'fp32', cacheDir: join(tmp.path, 'cache') });
  try {
    const ids = await model.tokenizer.encode(
      'The sliding window moves over a text longer than one window, so the later windows score with the context of the earlier ones. '.repeat(
        2,
      ),
    );
    assert.ok(ids.length > 48, `${ids.length} tokens`);
    for (const [maxLength, stride] of [
      [32, 16],
      [32, 32],
      [24, 1],
    ] as const) {
      const ours = await scoreTokens(model.decoder, ids, { maxLength, stride });
      let nll = 0,
        n = 0;
      for (const w of slidingWindows(ids.length, maxLength, stride)) {
        const logits = naiveLogits(f, [ids.slice(w.begin, w.end)])[0]!;
        for (let j = w.scoredFrom; j < w.end; j++) {
          nll += negativeLogLikelihood(Float32Array.from(logits[j - 1 - w.begin]!), ids[j]!);
          n++;
        }
      }
      const reference = perplexityOf(nll, n);
      assert.equal(ours.tokens_scored, reference.tokens_scored);
      assert.ok(
        Math.abs(ours.perplexity / reference.perplexity - 1) < 1e-3,
        `max_length ${maxLength} stride ${stride}: ${ours.perplexity} vs ${reference.perplexity}`,
      );
    }
  } finally {
    await model.dispose();
  }
});

describe('opt perplexity', { timeout: 120_000 }, () => {
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'runtime/src/cli.ts', 'perplexity', ...args], { encoding: 'utf8' });

  test('prints each file and the total as JSON, the same figures as the library', async () => {
    const f = await writeOptCheckpoint(join(tmp.path, 'cli-model'), { seed: 13, config: { max_position_embeddings: 64 } });
    const a = join(tmp.path, 'a.txt'),
      b = join(tmp.path, 'b.txt');
    writeFileSync(a, 'def add(a, b):\n    return a + b\n\n'.repeat(6));
    writeFileSync(b, 'Plain prose, in one line.');
    const cache = join(tmp.path, 'cache');
    const r = cli('--model', f.dir, '--dtype', 'fp32', '--cache-dir', cache, '--max-length', '32', '--stride', '16', a, b);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.deepEqual([out.max_length, out.stride, out.dtype, out.files.map((x: { file: string }) => x.file)], [32, 16, 'fp32', [a, b]]);
    const model = await loadOptModel(f.dir, { dtype: 'fp32', cacheDir: cache });
    try {
      const ids = await model.tokenizer.encode('def add(a, b):\n    return a + b\n\n'.repeat(6));
      const own = await scoreTokens(model.decoder, ids, { maxLength: 32, stride: 16 });
      assert.equal(out.files[0].tokens_scored, own.tokens_scored);
      assert.ok(Math.abs(out.files[0].nll_sum - own.nll_sum) < 1e-6 * own.nll_sum);
    } finally {
      await model.dispose();
    }
    assert.equal(out.tokens_scored, out.files[0].tokens_scored + out.files[1].tokens_scored);
    assert.ok(
      Math.abs(out.perplexity - Math.exp((out.files[0].nll_sum + out.files[1].nll_sum) / out.tokens_scored)) < 1e-9 * out.perplexity,
    );
    const defaults = JSON.parse(cli('--model', f.dir, '--dtype', 'fp32', '--cache-dir', cache, b).stdout);
    assert.deepEqual([defaults.max_length, defaults.stride], [64, 32], 'min(1024, positions), and half of it');
  });

  test('an empty file, a file that is not UTF-8, a missing file and a model without a language-model head are clear errors', async () => {
    const f = await writeOptCheckpoint(join(tmp.path, 'err-model'), { seed: 14, config: { max_position_embeddings: 64 } });
    const empty = join(tmp.path, 'empty.txt'),
      binary = join(tmp.path, 'binary.txt');
    writeFileSync(empty, '');
    writeFileSync(binary, Buffer.from([0x66, 0xff, 0xfe, 0x00, 0x80]));
    const expectError = (r: ReturnType<typeof cli>, message: RegExp) => {
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    };
    expectError(cli('--model', f.dir, empty), /empty\.txt is empty: there is nothing to score/);
    expectError(cli('--model', f.dir, binary), /binary\.txt is not UTF-8 text/);
    expectError(cli('--model', f.dir, join(tmp.path, 'nope.txt')), /nope\.txt: no such file/);
    expectError(cli('--model', f.dir), /perplexity needs a text file/);
    expectError(cli('--model', f.dir, tmp.path), /is a folder: pass text files/);
    if (process.platform !== 'win32') {
      const fifo = join(tmp.path, 'fifo');
      spawnSync('mkfifo', [fifo]);
      expectError(cli('--model', f.dir, fifo), /fifo is not a regular file/); // refused, not waited on
    }
    const text = join(tmp.path, 'ok.txt');
    writeFileSync(text, 'some text');
    expectError(cli('--model', f.dir, '--max-length', '65', text), /--max-length 65 is more than the model's 64 positions/);
    expectError(cli('--model', f.dir, '--max-length', '8', '--stride', '9', text), /stride must be an integer from 1 to max_length \(8\)/);
    const classifier = await writeOptCheckpoint(join(tmp.path, 'classifier'), { seed: 15, architecture: 'OPTForSequenceClassification' });
    expectError(cli('--model', classifier.dir, text), /OPTForSequenceClassification checkpoint, which has no language-model head/);
  });
});
