// `opt perplexity`'s method: the sliding-window bookkeeping of transformers' "Perplexity of
// fixed-length models" on hand cases, and the runtime's fp32 figure against the float64 reference
// forward pass on the same windows.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { loadOptModel } from '../runtime/src/model.js';
import { negativeLogLikelihood, perplexityOf, scoreTokens, slidingWindows } from '../runtime/src/perplexity.js';
import { writeOptCheckpoint } from './fixtures/optCheckpoint.js';
import { naiveLogits, tempDir } from './helpers/decoderHarness.js';

const tmp = tempDir('ppl');
after(() => tmp.remove());

/** Token indices each window scores, in order. */
const scored = (length: number, maxLength: number, stride: number) =>
  slidingWindows(length, maxLength, stride).flatMap((w) => Array.from({ length: w.end - w.scoredFrom }, (_, k) => w.scoredFrom + k));

describe('sliding windows', () => {
  test('stride = max_length: disjoint windows; the first token of each has no context in it and is not scored', () => {
    assert.deepEqual(slidingWindows(10, 4, 4), [{ begin: 0, end: 4, scoredFrom: 1 }, { begin: 4, end: 8, scoredFrom: 5 }, { begin: 8, end: 10, scoredFrom: 9 }]);
    assert.deepEqual(scored(10, 4, 4), [1, 2, 3, 5, 6, 7, 9]);
  });

  test('stride 1: each window after the first scores its last token', () => {
    assert.deepEqual(slidingWindows(6, 4, 1), [{ begin: 0, end: 4, scoredFrom: 1 }, { begin: 1, end: 5, scoredFrom: 4 }, { begin: 2, end: 6, scoredFrom: 5 }]);
  });

  test('a text shorter than a window, and a text of exactly one window, are one pass scoring all but BOS', () => {
    assert.deepEqual(slidingWindows(5, 8, 4), [{ begin: 0, end: 5, scoredFrom: 1 }]);
    assert.deepEqual(slidingWindows(8, 8, 4), [{ begin: 0, end: 8, scoredFrom: 1 }]);
    assert.deepEqual(slidingWindows(1, 8, 4), [], 'a lone BOS has nothing to score');
  });

  test('with stride < max_length every token but BOS is scored exactly once, with at least max_length - stride of context after the first window', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 2, max: 64 }), fc.integer({ min: 1, max: 64 }), (length, maxLength, strideSeed) => {
        const stride = 1 + (strideSeed % (maxLength - 1));
        assert.deepEqual(scored(length, maxLength, stride), Array.from({ length: length - 1 }, (_, i) => i + 1));
        for (const w of slidingWindows(length, maxLength, stride).slice(1)) assert.ok(w.scoredFrom - w.begin >= maxLength - stride);
      }),
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
    const ids = await model.tokenizer.encode('The sliding window moves over a text longer than one window, so the later windows score with the context of the earlier ones. '.repeat(2));
    assert.ok(ids.length > 48, `${ids.length} tokens`);
    for (const [maxLength, stride] of [[32, 16], [32, 32], [24, 1]] as const) {
      const ours = await scoreTokens(model.decoder, ids, { maxLength, stride });
      let nll = 0, n = 0;
      for (const w of slidingWindows(ids.length, maxLength, stride)) {
        const logits = naiveLogits(f, [ids.slice(w.begin, w.end)])[0]!;
        for (let j = w.scoredFrom; j < w.end; j++) {
          nll += negativeLogLikelihood(Float32Array.from(logits[j - 1 - w.begin]!), ids[j]!);
          n++;
        }
      }
      const reference = perplexityOf(nll, n);
      assert.equal(ours.tokens_scored, reference.tokens_scored);
      assert.ok(Math.abs(ours.perplexity / reference.perplexity - 1) < 1e-3, `max_length ${maxLength} stride ${stride}: ${ours.perplexity} vs ${reference.perplexity}`);
    }
  } finally {
    await model.dispose();
  }
});
