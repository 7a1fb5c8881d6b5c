// The heads other than the causal LM against the naive float64 reference: the body's hidden states
// (last and every layer's), sequence-classification logits at the pooled token with left and right
// padding, question-answering start/end logits, in fp32 within 1e-4, and int8 within a loose bound.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { OptHeadModel } from '../../runtime/src/heads/headModel.js';
import type { GraphDtype } from '../../runtime/src/onnx/optGraph.js';
import { type Fixture, type FixtureOptions, writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { ids64, maxAbs, maxAbsDiff, tempDir } from '../helpers/decoderHarness.js';
import { naiveOptForward, naiveQuestionAnswering, naiveSequenceClassification, weightsFromMap } from '../reference/naiveOpt.js';

const TOL = 1e-4;
const tmp = tempDir('heads');
after(() => tmp.remove());
const cacheDir = join(tmp.path, 'cache');
let count = 0;
const fixture = (options: FixtureOptions) => writeOptCheckpoint(join(tmp.path, `model-${count++}`), { tokenizer: true, ...options });
const open = (f: Fixture, dtype: GraphDtype = 'fp32', allHiddenStates = false) =>
  OptHeadModel.load(f.dir, { dtype, device: 'cpu', threads: 1, cacheDir, allHiddenStates });

const naive = (f: Fixture, ids: number[][], mask?: number[][], hidden = false) =>
  naiveOptForward(f.config, weightsFromMap(f.weights), ids, mask, { skipLogits: true, outputHiddenStates: hidden });

const A = [2, 713, 16, 10, 1296, 9, 5, 1763, 4];
const B = [2, 31414, 232, 328];

for (const [name, options] of [
  ['125m-style', { preset: '125m-style' }],
  ['350m-style (post-LN, project_out to 16)', { preset: '350m-style' }],
] as [string, FixtureOptions][]) {
  describe(`OPTModel hidden states match the reference: ${name}`, () => {
    let f: Fixture;
    before(async () => {
      f = await fixture({ ...options, architecture: 'OPTModel', seed: 21 });
    });

    test('last_hidden_state and every layer, right-padded batch', async () => {
      const model = await open(f, 'fp32', true);
      const ids = [A, [...B, 1, 1, 1, 1, 1]];
      const mask = [A.map(() => 1), [...B.map(() => 1), 0, 0, 0, 0, 0]];
      const out = await model.body.forward({ inputIds: ids64(ids), attentionMask: ids64(mask), batch: 2 });
      const ref = naive(f, ids, mask, true);
      const e = f.config.word_embed_proj_dim;
      assert.equal(out.width, e);
      for (let r = 0; r < 2; r++) {
        for (let s = 0; s < ids[0]!.length; s++) {
          if (mask[r]![s] === 0) continue; // padded positions' states are not meaningful (HF's differ too)
          assert.ok(
            maxAbsDiff(out.lastHiddenState.subarray((r * 9 + s) * e, (r * 9 + s + 1) * e), ref.lastHiddenState[r]![s]!) < TOL,
            `row ${r} position ${s}`,
          );
        }
      }
      assert.equal(out.hiddenStates!.length, f.config.num_hidden_layers + 1);
      for (const [i, h] of out.hiddenStates!.entries()) {
        for (let s = 0; s < 9; s++) {
          const want = ref.hiddenStates![i]![0]![s]!;
          assert.equal(h.width, want.length, `layer ${i} width`);
          assert.ok(maxAbsDiff(h.data.subarray(s * h.width, (s + 1) * h.width), want) < TOL, `hidden_states.${i} position ${s}`);
        }
      }
      await model.dispose();
    });

    test('plain ONNX operators (--plain-ops) give the same last_hidden_state', async () => {
      const model = await OptHeadModel.load(f.dir, { dtype: 'fp32', device: 'cpu', threads: 1, cacheDir, fused: false });
      const out = await model.body.forward({ inputIds: ids64([A]), attentionMask: ids64([A.map(() => 1)]), batch: 1 });
      const ref = naive(f, [A]).lastHiddenState[0]!;
      const e = f.config.word_embed_proj_dim;
      ref.forEach((want, s) => assert.ok(maxAbsDiff(out.lastHiddenState.subarray(s * e, (s + 1) * e), want) < TOL, `position ${s}`));
      await model.dispose();
    });

    test('mean and last pooling ignore padding on either side', async () => {
      const model = await open(f);
      const [single] = await model.embed(['Hello there'], { pooling: 'mean' });
      const ids = await model.tokenizer.encode('Hello there');
      const ref = naive(f, [ids]).lastHiddenState[0]!;
      const e = f.config.word_embed_proj_dim;
      const mean = new Float64Array(e);
      for (const v of ref) for (let k = 0; k < e; k++) mean[k]! += v[k]! / ref.length;
      assert.ok(maxAbsDiff(single!.embedding, mean) < TOL);
      assert.equal(single!.tokens, ids.length);
      const [last] = await model.embed(['Hello there'], { pooling: 'last' });
      assert.ok(maxAbsDiff(last!.embedding, ref.at(-1)!) < TOL);
      // The same text in a right-padded batch (next to a longer one) pools to the same vector.
      const batch = await model.embed(['Hello there', 'a much longer text than the first one'], { pooling: 'mean' });
      assert.ok(maxAbsDiff(batch[0]!.embedding, single!.embedding) < TOL);
      // Left padding through the body directly, pooled by the same function.
      const { pool } = await import('../../runtime/src/heads/pooling.js');
      const padded = [1, 1, 1, ...ids];
      const mask = [0, 0, 0, ...ids.map(() => 1)];
      const out = await model.body.forward({ inputIds: ids64([padded]), attentionMask: ids64([mask]), batch: 1 });
      assert.ok(maxAbsDiff(pool(out.lastHiddenState, mask, 1, e, 'mean')[0]!, mean) < TOL, 'left-padded mean');
      assert.ok(maxAbsDiff(pool(out.lastHiddenState, mask, 1, e, 'last')[0]!, ref.at(-1)!) < TOL, 'left-padded last');
      await model.dispose();
    });
  });
}

describe('OPTForSequenceClassification', () => {
  let f: Fixture;
  before(async () => {
    f = await fixture({
      architecture: 'OPTForSequenceClassification',
      seed: 22,
      config: { num_labels: 3, id2label: { 0: 'neg', 1: 'neutral', 2: 'pos' } },
    });
  });

  test('logits at the last non-padding token, right- and left-padded rows, match the reference', async () => {
    const model = await open(f);
    const ids = [A, [...B, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, ...B]];
    const mask = ids.map((row, r) => row.map((_, s) => (r === 1 ? (s < B.length ? 1 : 0) : r === 2 ? (s >= 5 ? 1 : 0) : 1)));
    const logits = await model.classificationLogits({ inputIds: ids64(ids), attentionMask: ids64(mask), batch: 3 });
    const ref = naiveSequenceClassification(naive(f, ids, mask).lastHiddenState, ids, f.weights.get('score.weight')!, 3, 1);
    for (let r = 0; r < 3; r++) assert.ok(maxAbsDiff(logits.subarray(r * 3, r * 3 + 3), ref[r]!) < TOL, `row ${r}`);
    // Padding on either side does not change a row's logits.
    assert.ok(maxAbsDiff(logits.subarray(3, 6), logits.subarray(6, 9)) < TOL);
    await model.dispose();
  });

  test('classify: softmax over id2label, highest first, and a batch equals single texts', async () => {
    const model = await open(f);
    const [one] = await model.classify(['This movie was great']);
    assert.equal(one!.problemType, 'single_label_classification');
    assert.deepEqual(one!.labels.map((l) => l.label).sort(), ['neg', 'neutral', 'pos']);
    assert.ok(Math.abs(one!.labels.reduce((a, l) => a + l.score, 0) - 1) < 1e-9);
    assert.ok(one!.labels[0]!.score >= one!.labels[1]!.score && one!.labels[1]!.score >= one!.labels[2]!.score);
    const ids = await model.tokenizer.encode('This movie was great');
    const ref = naiveSequenceClassification(naive(f, [ids]).lastHiddenState, [ids], f.weights.get('score.weight')!, 3, 1)[0]!;
    assert.ok(maxAbsDiff(one!.logits, ref) < TOL);
    const both = await model.classify(['This movie was great', 'Bad']);
    assert.ok(maxAbsDiff(both[0]!.logits, one!.logits) < TOL, 'right padding in a batch leaves the row unchanged');
    await model.dispose();
  });

  test('int8 smoke: logits near the reference', async () => {
    const model = await open(f, 'int8');
    const logits = await model.classificationLogits({ inputIds: ids64([A]), attentionMask: ids64([A.map(() => 1)]), batch: 1 });
    const ref = naiveSequenceClassification(naive(f, [A]).lastHiddenState, [A], f.weights.get('score.weight')!, 3, 1)[0]!;
    assert.ok(maxAbsDiff(logits, ref) <= 0.1 * Math.max(1, maxAbs(ref)), `int8 error ${maxAbsDiff(logits, ref)}`);
    await model.dispose();
  });
});

describe('OPTForQuestionAnswering', () => {
  let f: Fixture;
  before(async () => {
    f = await fixture({ architecture: 'OPTForQuestionAnswering', seed: 23 });
  });

  test('start and end logits over every token match the reference', async () => {
    const model = await open(f);
    const out = await model.qaLogits({ inputIds: ids64([A]), attentionMask: ids64([A.map(() => 1)]), batch: 1 });
    const ref = naiveQuestionAnswering(
      naive(f, [A]).lastHiddenState,
      f.weights.get('qa_outputs.weight')!,
      f.weights.get('qa_outputs.bias')!,
    );
    assert.ok(maxAbsDiff(out.start, ref.start[0]!) < TOL);
    assert.ok(maxAbsDiff(out.end, ref.end[0]!) < TOL);
    await model.dispose();
  });

  test('answer: spans lie in the context, scores in order, offsets slice the context', async () => {
    const model = await open(f);
    const context = 'Naïve café 😀 is in Paris, France. It opened in 1999.';
    const r = await model.answer('Where is the café?', context, { topK: 4, maxAnswerLength: 3 });
    assert.equal(r.answers.length, 4);
    for (const [i, a] of r.answers.entries()) {
      assert.equal(context.slice(a.start, a.end), a.text);
      assert.ok(a.score > 0 && a.score <= 1);
      if (i > 0) assert.ok(a.score <= r.answers[i - 1]!.score);
    }
    await model.dispose();
  });

  test('a long context runs in overlapping windows; answers from every window are ranked together, as the pipeline does', async () => {
    const model = await open(f);
    const context = Array.from({ length: 30 }, (_, i) => `Note ${i}: the ferry leaves the harbour at ${i + 6} o'clock.`).join(' ');
    const question = 'When does the ferry leave?';
    const maxSeqLen = 64,
      docStride = 16,
      maxAnswerLength = 4,
      topK = 6;
    const r = await model.answer(question, context, { topK, maxSeqLen, docStride, maxAnswerLength });

    // Independently: the windows as Hugging Face tokenizers lays them out, the reference model's
    // logits on each, the pipeline's per-window softmax over context tokens, every valid span.
    const q = await model.tokenizer.encode(question, { addSpecialTokens: false });
    const c = await model.tokenizer.encode(context, { addSpecialTokens: false });
    const first = 1 + q.length,
      room = maxSeqLen - first;
    const expected: number[] = [];
    let windows = 0;
    for (let a = 0; ; a += room - docStride) {
      const b = Math.min(a + room, c.length);
      windows++;
      const ids = [2, ...q, ...c.slice(a, b)];
      const ref = naiveQuestionAnswering(
        naive(f, [ids]).lastHiddenState,
        f.weights.get('qa_outputs.weight')!,
        f.weights.get('qa_outputs.bias')!,
      );
      const probs = (logits: number[]) => {
        const x = logits.map((v, i) => (i >= first ? v : -10000));
        const m = Math.max(...x);
        const e = x.map((v) => Math.exp(v - m));
        const sum = e.reduce((n, v) => n + v, 0);
        return e.map((v) => v / sum);
      };
      const ps = probs(ref.start[0]!),
        pe = probs(ref.end[0]!);
      const spans: number[] = [];
      for (let s = first; s < ids.length; s++)
        for (let e = s; e < Math.min(ids.length, s + maxAnswerLength); e++) spans.push(ps[s]! * pe[e]!);
      expected.push(...spans.sort((x, y) => y - x).slice(0, topK));
      if (b === c.length) break;
    }
    expected.sort((x, y) => y - x);
    assert.ok(windows > 4, `the context spans ${windows} windows`);
    assert.equal(r.answers.length, topK);
    for (const [i, ans] of r.answers.entries()) {
      assert.ok(Math.abs(ans.score - expected[i]!) <= 1e-4 * expected[i]!, `answer ${i}: score ${ans.score} vs ${expected[i]}`);
      assert.equal(context.slice(ans.start, ans.end), ans.text);
    }
    await model.dispose();
  });

  test('int8 smoke: start/end logits near the reference', async () => {
    const model = await open(f, 'int8');
    const out = await model.qaLogits({ inputIds: ids64([A]), attentionMask: ids64([A.map(() => 1)]), batch: 1 });
    const ref = naiveQuestionAnswering(
      naive(f, [A]).lastHiddenState,
      f.weights.get('qa_outputs.weight')!,
      f.weights.get('qa_outputs.bias')!,
    );
    assert.ok(maxAbsDiff(out.start, ref.start[0]!) <= 0.1 * Math.max(1, maxAbs(ref.start[0]!)));
    await model.dispose();
  });
});
