// The logits processors and warpers against hand-computed rows (ties, no-op settings, edge lengths),
// against a direct transliteration of transformers' tensor code on random rows, the chain's order, and
// the per-step time of the usual sampling chain on an OPT-sized row.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { resolveGenerationOptions } from '../../runtime/src/generation/generationConfig.js';
import {
  applyMinP,
  applyNoRepeatNgram,
  applyRepetitionPenalty,
  applyTemperature,
  applyTopK,
  applyTopP,
  applyTypicalP,
  createLogitsScratch,
  type LogitsPlan,
  logitsPlan,
  processLogits,
  suppressEosBeforeMinLength,
  suppressEosBeforeMinNewTokens,
} from '../../runtime/src/generation/logitsProcessors.js';
import { createRng, type Rng } from '../../runtime/src/generation/sampling.js';

const NEG = -Infinity;
const f32 = (xs: number[]): Float32Array => Float32Array.from(xs);
const logs = (ps: number[]): Float32Array => Float32Array.from(ps.map(Math.log));
/** Ids whose score is still finite. */
const kept = (s: Float32Array): number[] => [...s.keys()].filter((i) => s[i] !== NEG);

const OFF: LogitsPlan = {
  repetitionPenalty: 1,
  noRepeatNgramSize: 0,
  minLength: 0,
  minNewTokens: 0,
  eosTokenIds: [],
  sample: true,
  temperature: 1,
  topK: 0,
  topP: 1,
  minP: 0,
  typicalP: 1,
};

describe('min-p', () => {
  /** MinPLogitsWarper as transformers writes it: float32 softmax, probs < min_p * max prob removed, the top token kept. */
  const reference = (scores: Float32Array, minP: number): Float32Array => {
    const out = Float32Array.from(scores);
    let max = -Infinity;
    for (const x of scores) max = Math.max(max, x);
    const e = Float32Array.from(scores, (x) => Math.exp(x - max));
    const sum = e.reduce((a, b) => a + b, 0);
    const probs = Float32Array.from(e, (x) => x / sum);
    const threshold = Math.fround(minP * Math.max(...probs));
    const top = scores.indexOf(max);
    for (let i = 0; i < out.length; i++) if (probs[i]! < threshold && i !== top) out[i] = NEG;
    return out;
  };

  test('keeps the tokens at least min_p times as likely as the most likely one', () => {
    const s = logs([0.5, 0.25, 0.1, 0.05, 0.1]);
    applyMinP(s, 0.19); // cut at 0.095: the 0.1s stay, 0.05 goes
    assert.deepEqual(kept(s), [0, 1, 2, 4]);
    const t = logs([0.5, 0.25, 0.1, 0.05, 0.1]);
    applyMinP(t, 0.21);
    assert.deepEqual(kept(t), [0, 1]);
  });

  test('0 is off, 1 keeps only the most likely token (and its ties), filtered tokens stay filtered', () => {
    const s = f32([1, 2, 3, NEG]);
    applyMinP(s, 0);
    assert.deepEqual(kept(s), [0, 1, 2]);
    const t = f32([3, 2, 3, 1]);
    applyMinP(t, 1);
    assert.deepEqual(kept(t), [0, 2]);
    const all = f32([NEG, NEG]);
    applyMinP(all, 0.5);
    assert.deepEqual(kept(all), []);
  });

  test("matches transformers' formulation on random rows, and runs after top-p in the plan", () => {
    const rng = createRng(5);
    for (let trial = 0; trial < 200; trial++) {
      const row = Float32Array.from({ length: 300 }, () => (rng.nextFloat() - 0.5) * 12);
      const minP = [0.01, 0.05, 0.1, 0.3, 0.9][trial % 5]!;
      const got = Float32Array.from(row);
      applyMinP(got, minP);
      assert.deepEqual(kept(got), kept(reference(row, minP)), `trial ${trial}`);
    }
    // top-p first: min-p's cut is relative to the best token, which top-p never removes, so the
    // order matters only through what top-p removed; both must hold.
    const row = logs([0.4, 0.3, 0.2, 0.06, 0.04]);
    const scratch = createLogitsScratch(row.length);
    processLogits(row, [], 0, { ...OFF, topP: 0.8, minP: 0.6 }, scratch);
    assert.deepEqual(kept(row), [0, 1]);
  });
});

describe('min_p as an option', () => {
  const model = { bos_token_id: 2, eos_token_id: 2, pad_token_id: 1, max_position_embeddings: 2048 };
  test("unset by default (transformers' None), from the call or generation_config.json, in the plan", () => {
    assert.equal(resolveGenerationOptions({}, undefined, model).min_p, undefined);
    assert.equal(logitsPlan(resolveGenerationOptions({}, undefined, model), 3).minP, 0);
    assert.equal(resolveGenerationOptions({ do_sample: true }, { min_p: 0.05 }, model).min_p, 0.05);
    assert.equal(logitsPlan(resolveGenerationOptions({ do_sample: true, min_p: 0.1 }, { min_p: 0.05 }, model), 3).minP, 0.1);
  });
  test('out of [0, 1] is refused, naming the source; set for greedy decoding, a warning', () => {
    assert.throws(
      () => resolveGenerationOptions({ min_p: 1.5 }, undefined, model),
      /min_p must be a number in \[0, 1\] \(0 disables min-p\), got 1\.5/,
    );
    assert.throws(
      () => resolveGenerationOptions({}, { min_p: -0.1 }, model),
      /min_p must be .* got -0\.1 \(from generation_config\.json\)/,
    );
    assert.match(
      resolveGenerationOptions({ min_p: 0.1 }, undefined, model).warnings.join('\n'),
      /do_sample is false, so min_p=0\.1 has no effect/,
    );
  });
});

describe('repetition penalty', () => {
  test('divides positive and multiplies negative scores of ids present, prompt included', () => {
    const s = f32([2, -2, 0.5, -0.5, 1, 3, 0]);
    applyRepetitionPenalty(s, [0, 1, 3, 6], 2, createLogitsScratch(7));
    assert.deepEqual([...s], [1, -4, 0.5, -1, 1, 3, 0]);
  });

  test('repeated ids are penalised once', () => {
    const s = f32([4, -4, 1]);
    applyRepetitionPenalty(s, [1, 0, 1, 1, 0, 1], 2, createLogitsScratch(3));
    assert.deepEqual([...s], [2, -8, 1]);
    // The same scratch across steps: each call penalises once again.
    const scratch = createLogitsScratch(3);
    const t = f32([4, -4, 1]);
    applyRepetitionPenalty(t, [0, 0], 2, scratch);
    applyRepetitionPenalty(t, [0, 0], 2, scratch);
    assert.deepEqual([...t], [1, -4, 1]);
  });

  test('all-negative scores all move away from zero; -Infinity stays', () => {
    const s = f32([-1, -2, -3, NEG]);
    applyRepetitionPenalty(s, [0, 2, 3], 1.5, createLogitsScratch(4));
    assert.deepEqual([...s], [-1.5, -2, -4.5, NEG]);
  });

  test('penalty below 1 favours repeats; float32 arithmetic with the penalty in float32', () => {
    const s = f32([0.3, -0.3]);
    applyRepetitionPenalty(s, [0, 1], 0.7, createLogitsScratch(2));
    const p = Math.fround(0.7);
    assert.deepEqual([...s], [Math.fround(Math.fround(0.3) / p), Math.fround(Math.fround(-0.3) * p)]);
  });

  test('an id outside the vocabulary is a UsageError', () => {
    assert.throws(
      () => applyRepetitionPenalty(f32([1, 2]), [2], 1.2, createLogitsScratch(2)),
      /token id 2 is outside the vocabulary \(0\.\.1\)/,
    );
  });
});

describe('no-repeat n-gram', () => {
  const row = (): Float32Array => new Float32Array(10).fill(1);

  test('bans the token that would complete an n-gram already seen', () => {
    const s = row();
    applyNoRepeatNgram(s, [5, 6, 7, 5, 6], 3); // [5 6] was followed by 7
    assert.deepEqual(kept(s), [0, 1, 2, 3, 4, 5, 6, 8, 9]);
  });

  test('bigrams: every successor of the last token', () => {
    const s = row();
    applyNoRepeatNgram(s, [1, 2, 1, 3, 1], 2);
    assert.deepEqual(kept(s), [0, 1, 4, 5, 6, 7, 8, 9]);
  });

  test('size 1 bans every token seen', () => {
    const s = row();
    applyNoRepeatNgram(s, [4, 4, 9], 1);
    assert.deepEqual(kept(s), [0, 1, 2, 3, 5, 6, 7, 8]);
  });

  test('n larger than (or equal to) the sequence bans nothing', () => {
    for (const [tokens, n] of [
      [[1, 2], 3],
      [[1, 2, 3], 3],
      [[], 1],
    ] as const) {
      const s = row();
      applyNoRepeatNgram(s, tokens, n);
      assert.equal(kept(s).length, 10, `${tokens} n=${n}`);
    }
  });
});

describe('min length / min new tokens', () => {
  test('every EOS id is banned while too short, none after; ids outside the row are ignored', () => {
    const s = f32([1, 1, 1, 1, 1]);
    suppressEosBeforeMinLength(s, 5, 6, [2, 4, 99]);
    assert.deepEqual(kept(s), [0, 1, 3]);
    const t = f32([1, 1, 1, 1, 1]);
    suppressEosBeforeMinLength(t, 6, 6, [2, 4]);
    assert.deepEqual(kept(t), [0, 1, 2, 3, 4]);
  });

  test('min_new_tokens counts generated tokens only', () => {
    const s = f32([1, 1, 1, 1, 1]);
    suppressEosBeforeMinNewTokens(s, 1, 2, [2, 4]);
    assert.deepEqual(kept(s), [0, 1, 3]);
    const t = f32([1, 1, 1, 1, 1]);
    suppressEosBeforeMinNewTokens(t, 2, 2, [2, 4]);
    assert.deepEqual(kept(t), [0, 1, 2, 3, 4]);
  });
});

describe('temperature', () => {
  test('divides by the temperature in float32', () => {
    const s = f32([1, -2, 0.5, NEG]);
    applyTemperature(s, 0.5);
    assert.deepEqual([...s], [2, -4, 1, NEG]);
    const t = f32([1.3, -0.1]);
    applyTemperature(t, 0.7);
    assert.deepEqual([...t], [Math.fround(Math.fround(1.3) / Math.fround(0.7)), Math.fround(Math.fround(-0.1) / Math.fround(0.7))]);
  });
});

describe('top-k', () => {
  test('keeps the k largest', () => {
    const s = f32([0.1, 0.5, 0.3, 0.9, 0.7]);
    applyTopK(s, 3, createLogitsScratch(5));
    assert.deepEqual(kept(s), [1, 3, 4]);
  });

  test('ties with the k-th value are all kept (scores < kth are removed)', () => {
    const s = f32([1, 3, 3, 2, 3, 0]);
    applyTopK(s, 2, createLogitsScratch(6));
    assert.deepEqual(kept(s), [1, 2, 4]);
    const t = f32([5, 4, 4, 1]);
    applyTopK(t, 2, createLogitsScratch(4));
    assert.deepEqual(kept(t), [0, 1, 2]);
  });

  test('k >= vocab and k = 0 are no-ops; a -Infinity k-th value removes nothing', () => {
    for (const k of [0, 6, 100]) {
      const s = f32([1, 2, 3, 4, 5, 6]);
      applyTopK(s, k, createLogitsScratch(6));
      assert.equal(kept(s).length, 6);
    }
    const s = f32([NEG, 1, NEG]);
    applyTopK(s, 2, createLogitsScratch(3));
    assert.deepEqual(kept(s), [1]);
  });
});

describe('top-p', () => {
  // probabilities 0.1 0.2 0.3 0.4; ascending cumulative 0.1 0.3 0.6 1.0
  test('keeps the smallest most-probable set reaching top_p', () => {
    const a = logs([0.1, 0.2, 0.3, 0.4]);
    applyTopP(a, 0.65, createLogitsScratch(4)); // removes cumulative <= 0.35: 0.1, 0.2
    assert.deepEqual(kept(a), [2, 3]);
    const b = logs([0.1, 0.2, 0.3, 0.4]);
    applyTopP(b, 0.75, createLogitsScratch(4)); // removes cumulative <= 0.25: 0.1
    assert.deepEqual(kept(b), [1, 2, 3]);
    const c = logs([0.3, 0.4, 0.2, 0.1]); // order in the row does not matter
    applyTopP(c, 0.65, createLogitsScratch(4));
    assert.deepEqual(kept(c), [0, 1]);
  });

  test('top_p = 1 is a no-op, even for tokens whose probability underflows', () => {
    const s = f32([0, -200, -1000, 3]);
    applyTopP(s, 1, createLogitsScratch(4));
    assert.deepEqual([...s], [0, -200, -1000, 3]);
  });

  test('a tiny top_p keeps exactly one token, also when the maximum is tied', () => {
    const s = logs([0.1, 0.2, 0.3, 0.4]);
    applyTopP(s, 1e-9, createLogitsScratch(4));
    assert.deepEqual(kept(s), [3]);
    // Ties ordered as a stable ascending sort: the lower id counts as less probable.
    const t = f32([2, 5, 1, 5]);
    applyTopP(t, 1e-9, createLogitsScratch(4));
    assert.deepEqual(kept(t), [3]);
  });

  test('ignores tokens already filtered', () => {
    const s = f32([NEG, Math.log(0.5), NEG, Math.log(0.3), Math.log(0.2)]);
    applyTopP(s, 0.6, createLogitsScratch(5));
    assert.deepEqual(kept(s), [1, 3]);
  });

  test('rows wider than the histogram (32 logits) and rows needing most tokens', () => {
    const wide = new Float32Array(1000);
    for (let i = 0; i < 1000; i++) wide[i] = -i / 20; // 50 logits wide: the last bin takes the tail
    const want = refTopP(wide, 0.9999999);
    applyTopP(wide, 0.9999999, createLogitsScratch(1000));
    assert.deepEqual(kept(wide), want);
    const flat = new Float32Array(1000).fill(0.25);
    flat[10] = 1;
    const wantFlat = refTopP(flat, 0.99);
    applyTopP(flat, 0.99, createLogitsScratch(1000));
    assert.deepEqual(kept(flat), wantFlat);
    // All tied but one: the tied tokens dropped are the lowest ids.
    const tied = wantFlat.filter((i) => i !== 10);
    assert.ok(tied.length > 700 && tied.length < 999);
    assert.deepEqual(
      tied,
      Array.from({ length: tied.length }, (_, i) => 1000 - tied.length + i),
    );
  });

  test('a scratch smaller than the row is a UsageError', () => {
    assert.throws(() => applyTopP(f32([1, 2, 3]), 0.5, createLogitsScratch(2)), /scratch was made for 2 tokens but the row has 3/);
  });
});

describe('typical-p', () => {
  // p = .5 .25 .125 .125: entropy 1.75 ln2; |-log p - H| = 1.05, .25, 1.25, 1.25 (× ln2)
  // most typical first: id1 (cum .25), id0 (.75), id2 (.875), id3 (1)
  const row = (): Float32Array => logs([0.5, 0.25, 0.125, 0.125]);
  const cases: [number, number[]][] = [
    [0.2, [1]], // the most probable token is dropped: it is less typical
    [0.5, [0, 1]],
    [0.8, [0, 1, 2, 3]], // id2 reaches the mass; id3 ties with it and is kept
    [0.9, [0, 1, 2, 3]],
    [1, [0, 1, 2, 3]],
  ];
  for (const [mass, want] of cases) {
    test(`mass ${mass} keeps ${want}`, () => {
      const s = row();
      applyTypicalP(s, mass, createLogitsScratch(4));
      assert.deepEqual(kept(s), want);
    });
  }
});

// ---- transformers' tensor code, transliterated on float64 arrays (full sorts, no shortcuts) ----

/** Stable ascending order of ids by value. */
const ascending = (v: ArrayLike<number>): number[] => [...Array(v.length).keys()].sort((a, b) => v[a]! - v[b]! || a - b);
const fin = (x: number): number => (x === NEG ? 0 : x);

function refTopK(s: Float32Array, k: number): number[] {
  const kth = [...s].sort((a, b) => b - a)[Math.min(k, s.length) - 1]!;
  return kept(s).filter((i) => !(s[i]! < kth));
}

function refTopP(s: Float32Array, topP: number): number[] {
  const order = ascending(s);
  const max = Math.max(...s);
  const e = order.map((i) => (s[i] === NEG ? 0 : Math.exp(s[i]! - max)));
  const z = e.reduce((a, b) => a + b, 0);
  let cum = 0;
  const remove = new Set<number>();
  order.forEach((id, j) => {
    cum += e[j]! / z;
    if (cum <= 1 - topP && j < order.length - 1) remove.add(id);
  });
  return kept(s).filter((i) => !remove.has(i));
}

function refTypical(s: Float32Array, mass: number): number[] {
  const max = Math.max(...s);
  const z = [...s].reduce((a, x) => a + fin(Math.exp(x - max)), 0);
  const logp = [...s].map((x) => x - max - Math.log(z));
  const ent = -logp.reduce((a, l) => a + (l === NEG ? 0 : Math.exp(l) * l), 0);
  const shifted = logp.map((l) => Math.abs(-l - ent));
  const order = ascending(shifted);
  let cum = 0;
  let lastInd = 0;
  for (const id of order) if ((cum += Math.exp(logp[id]!)) < mass) lastInd++;
  lastInd = Math.min(lastInd, s.length - 1);
  const threshold = shifted[order[lastInd]!]!;
  return kept(s).filter((i) => i === order[0] || !(shifted[i]! > threshold));
}

function gaussianRow(rng: Rng, n: number, scale: number, quantum = 0): Float32Array {
  const s = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const g = Math.sqrt(-2 * Math.log(1 - rng.nextFloat())) * Math.cos(2 * Math.PI * rng.nextFloat());
    s[i] = quantum ? Math.round((g * scale) / quantum) * quantum : g * scale;
  }
  return s;
}

describe('warpers match transformers on random rows', () => {
  const rng = createRng(2024);
  const scratch = createLogitsScratch(3000);
  const rows = (): Float32Array[] => [
    gaussianRow(rng, 50, 1),
    gaussianRow(rng, 3000, 3),
    gaussianRow(rng, 500, 1, 0.25), // many ties
    gaussianRow(rng, 200, 10),
  ];

  test('top-k', () => {
    for (let r = 0; r < 30; r++) {
      for (const s of rows()) {
        const k = 1 + Math.floor(rng.nextFloat() * 80);
        const want = refTopK(s, k);
        applyTopK(s, k, scratch);
        assert.deepEqual(kept(s), want, `k=${k}`);
      }
    }
  });

  test('top-p, alone and after top-k', () => {
    for (let r = 0; r < 30; r++) {
      for (const s of rows()) {
        if (r % 2) applyTopK(s, 1 + Math.floor(rng.nextFloat() * 60), scratch);
        const p = rng.nextFloat();
        const want = refTopP(s, p);
        applyTopP(s, p, scratch);
        assert.deepEqual(kept(s), want, `top_p=${p}`);
      }
    }
  });

  test('typical-p, alone and after top-k', () => {
    for (let r = 0; r < 30; r++) {
      for (const s of rows()) {
        if (r % 2) applyTopK(s, 1 + Math.floor(rng.nextFloat() * 60), scratch);
        const mass = rng.nextFloat();
        const want = refTypical(s, mass);
        applyTypicalP(s, mass, scratch);
        assert.deepEqual(kept(s), want, `typical_p=${mass}`);
      }
    }
  });
});

describe('the chain', () => {
  test('temperature runs before top-p: sharpening shrinks the kept set', () => {
    // p = .5 .3 .2, top_p .6: alone keeps {0, 1}; at temperature .5, p ∝ p² = .658 .237 .105 keeps {0}.
    const s = logs([0.5, 0.3, 0.2]);
    processLogits(s, [], 0, { ...OFF, temperature: 0.5, topP: 0.6 }, createLogitsScratch(3));
    assert.deepEqual(kept(s), [0]);
    const wrongOrder = logs([0.5, 0.3, 0.2]);
    applyTopP(wrongOrder, 0.6, createLogitsScratch(3));
    applyTemperature(wrongOrder, 0.5);
    assert.deepEqual(kept(wrongOrder), [0, 1]);
  });

  test('top-k runs before top-p: top-p sees the renormalised top-k mass', () => {
    // p = .4 .3 .2 .1; top-k 2 then top-p .5: .571 .429 keeps {0}; top-p first would keep {0, 1}.
    const s = logs([0.4, 0.3, 0.2, 0.1]);
    processLogits(s, [], 0, { ...OFF, topK: 2, topP: 0.5 }, createLogitsScratch(4));
    assert.deepEqual(kept(s), [0]);
  });

  test('greedy plans skip every warper but still penalise repeats and hold back EOS', () => {
    const o = resolveGenerationOptions(
      { do_sample: false, repetition_penalty: 2, min_new_tokens: 2 },
      { top_k: 1, top_p: 0.1 },
      { bos_token_id: 2, eos_token_id: 2, pad_token_id: 1, max_position_embeddings: 2048 },
    );
    const plan = logitsPlan(o, 3);
    assert.equal(plan.minLength, 5);
    const s = f32([1, 2, 3, 4, -1]);
    processLogits(s, [0, 4, 4, 1], 1, plan, createLogitsScratch(5));
    assert.deepEqual([...s], [0.5, 1, NEG, 4, -2]);
  });

  test('the full chain equals the processors applied one by one', () => {
    const rng = createRng(7);
    const vocab = 50265;
    const plan: LogitsPlan = {
      ...OFF,
      repetitionPenalty: 1.2,
      noRepeatNgramSize: 3,
      minLength: 12,
      minNewTokens: 2,
      eosTokenIds: [2],
      temperature: 0.8,
      topK: 50,
      topP: 0.95,
      typicalP: 0.9,
    };
    const tokens = Array.from({ length: 10 }, () => Math.floor(rng.nextFloat() * vocab));
    const row = gaussianRow(rng, vocab, 4);
    const a = row.slice();
    processLogits(a, tokens, 1, plan, createLogitsScratch(vocab));
    const b = row.slice();
    const scratch = createLogitsScratch(vocab);
    applyRepetitionPenalty(b, tokens, 1.2, scratch);
    applyNoRepeatNgram(b, tokens, 3);
    suppressEosBeforeMinLength(b, tokens.length, 12, [2]);
    suppressEosBeforeMinNewTokens(b, 1, 2, [2]);
    applyTemperature(b, 0.8);
    applyTopK(b, 50, scratch);
    applyTopP(b, 0.95, scratch);
    applyTypicalP(b, 0.9, scratch);
    assert.deepEqual(a, b);
    assert.ok(kept(a).length >= 1 && kept(a).length <= 50);
  });

  test('per-step time: temperature + top-k 50 + top-p 0.95 + repetition penalty 1.2 on 50,265 tokens', (t) => {
    const vocab = 50265;
    const rng = createRng(11);
    const plan: LogitsPlan = { ...OFF, repetitionPenalty: 1.2, temperature: 0.7, topK: 50, topP: 0.95 };
    const scratch = createLogitsScratch(vocab);
    const source = gaussianRow(rng, vocab, 3);
    const tokens = Array.from({ length: 512 }, () => Math.floor(rng.nextFloat() * vocab));
    const row = new Float32Array(vocab);
    const run = (steps: number): number => {
      const start = process.hrtime.bigint();
      for (let i = 0; i < steps; i++) {
        row.set(source);
        processLogits(row, tokens, i, plan, scratch);
      }
      return Number(process.hrtime.bigint() - start) / 1e6 / steps;
    };
    run(200); // warm-up (JIT)
    assert.ok(kept(row).length >= 1 && kept(row).length <= 50);
    const copy = (): number => {
      const start = process.hrtime.bigint();
      for (let i = 0; i < 500; i++) row.set(source);
      return Number(process.hrtime.bigint() - start) / 1e6 / 500;
    };
    const ms = run(500) - copy();
    t.diagnostic(`chain: ${ms.toFixed(3)} ms per step (${vocab} tokens, 512-token context)`);
  });
});
