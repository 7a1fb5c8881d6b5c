// Speculative sampling's step (Leviathan et al.): a draft token x ~ q kept with probability
// min(1, p(x)/q(x)), else a draw from max(0, p - q), yields tokens distributed as p, whatever q.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createRng } from '../../runtime/src/generation/sampling.js';
import { acceptDraft, sampleFrom, sampleResidual, softmaxInto } from '../../runtime/src/generation/speculativeSampling.js';

const probs = (xs: number[]) => Float64Array.from(xs.map((x) => x / xs.reduce((a, b) => a + b, 0)));

/** Goodness of fit of counts to p (chi-square statistic). */
const chiSquare = (counts: number[], p: Float64Array, n: number) => counts.reduce((s, c, i) => s + (c - n * p[i]!) ** 2 / (n * p[i]!), 0);

describe('speculative sampling', () => {
  for (const [name, p, q] of [
    ['a draft close to the target', probs([5, 3, 1, 1]), probs([4, 4, 1, 1])],
    ['a draft that favours the wrong token', probs([1, 6, 2, 1]), probs([7, 1, 1, 1])],
    ['a draft missing a token the target likes', probs([2, 2, 3, 3]), probs([5, 5, 0, 0.0001])],
  ] as const) {
    test(`the kept-or-replaced token is distributed as the target's: ${name} (chi-square, 40,000 draws)`, () => {
      const rng = createRng(11);
      const n = 40_000;
      const counts = [0, 0, 0, 0];
      let kept = 0;
      for (let i = 0; i < n; i++) {
        const x = sampleFrom(q, rng);
        const keep = acceptDraft(p, q, x, rng);
        if (keep) kept++;
        counts[keep ? x : sampleResidual(p, q, rng)]!++;
      }
      // 16.27 is the 0.999 quantile of chi-square with 3 degrees of freedom.
      const fit = chiSquare(counts, p, n);
      assert.ok(fit < 16.27, `chi-square ${fit.toFixed(2)} against p (kept ${kept} of ${n})`);
      // And not against q, unless q is p.
      assert.ok(chiSquare(counts, q.map((x) => Math.max(x, 1e-9)) as Float64Array, n) > 100);
    });
  }

  test('identical distributions keep every draft; the residual of equal rows falls back to p', () => {
    const p = probs([1, 2, 3]);
    const rng = createRng(3);
    for (let i = 0; i < 1000; i++) assert.equal(acceptDraft(p, p, sampleFrom(p, rng), rng), true);
    const x = sampleResidual(p, p, rng);
    assert.ok(x >= 0 && x < 3);
    assert.equal(acceptDraft(p, probs([1, 0, 1]), 1, rng), false, 'a token the draft gave no mass is never kept');
  });

  test('softmax of processed scores: -Infinity is probability 0', () => {
    const out = softmaxInto(Float32Array.of(0, Math.log(3), -Infinity), new Float64Array(3));
    assert.deepEqual(
      [...out].map((x) => Math.round(x * 1000) / 1000),
      [0.25, 0.75, 0],
    );
  });
});
