// The pure parts of the heads, on hand-built numbers: the question-answering span search (ties,
// start after end, spans over the limit, top-k order, non-context tokens), the classifier's pooled
// token and scores per problem_type, pooling, the head fields of config.json, the wrong-head error,
// and the pair encoding's character offsets.

import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { parseOptConfig } from '../../runtime/src/config.js';
import { WrongModelTypeError } from '../../protocol/errors.js';
import { labelScores, pooledPositions } from '../../runtime/src/heads/classification.js';
import { parseHeadConfig, requireTask, tasksOf } from '../../runtime/src/heads/headConfig.js';
import { pool } from '../../runtime/src/heads/pooling.js';
import { QaEncoder, contextWindows } from '../../runtime/src/heads/qaEncoding.js';
import { EXCLUDED_LOGIT, searchSpans } from '../../runtime/src/heads/spanSearch.js';
import { writeOptTokenizerFiles } from '../fixtures/tokenizerFiles.js';
import { tempDir } from '../helpers/decoderHarness.js';

const softmax = (xs: number[]) => {
  const m = Math.max(...xs);
  const e = xs.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
};

/** Every allowed span scored the pipeline's way, sorted by score then (start, end): the oracle. */
function bruteForce(start: number[], end: number[], ok: boolean[], maxLen: number) {
  const ps = softmax(start.map((x, i) => (ok[i] ? x : EXCLUDED_LOGIT)));
  const pe = softmax(end.map((x, i) => (ok[i] ? x : EXCLUDED_LOGIT)));
  const all: { start: number; end: number; score: number }[] = [];
  for (let s = 0; s < start.length; s++)
    for (let e = s; e < start.length && e - s + 1 <= maxLen; e++)
      if (ok[s] && ok[e]) all.push({ start: s, end: e, score: ps[s]! * pe[e]! });
  return all.sort((a, b) => b.score - a.score || a.start - b.start || a.end - b.end);
}

describe('span search', () => {
  const all = (n: number) => Array<boolean>(n).fill(true);

  test('the best span is the best start and best end when they form a valid span; score is the product of softmaxes', () => {
    const start = [0, 1, 5, 0, 0, 0];
    const end = [0, 0, 0, 6, 1, 0];
    const [best] = searchSpans(start, end, all(6));
    assert.deepEqual([best!.start, best!.end], [2, 3]);
    assert.ok(Math.abs(best!.score - softmax(start)[2]! * softmax(end)[3]!) < 1e-15);
  });

  test('a start after the best end is never paired with it', () => {
    const start = [0, 0, 0, 0, 9, 0]; // best start at 4
    const end = [0, 9, 0, 0, 0, 1]; // best end at 1, before it
    const spans = searchSpans(start, end, all(6), { topK: 30 });
    assert.ok(spans.every((s) => s.start <= s.end));
    assert.deepEqual(spans, bruteForce(start, end, all(6), 15));
    assert.deepEqual([spans[0]!.start, spans[0]!.end], [4, 5]);
  });

  test('spans longer than maxAnswerLength are excluded (the limit counts tokens, end inclusive)', () => {
    const start = [0, 8, 0, 0, 0, 0, 0, 0];
    const end = [0, 0, 0, 0, 0, 0, 8, 0]; // 1..6 is 6 tokens
    const within = searchSpans(start, end, all(8), { maxAnswerLength: 6 });
    assert.deepEqual([within[0]!.start, within[0]!.end], [1, 6]);
    const over = searchSpans(start, end, all(8), { maxAnswerLength: 5, topK: 100 });
    assert.ok(over.every((s) => s.end - s.start + 1 <= 5));
    assert.ok(!over.some((s) => s.start === 1 && s.end === 6));
    assert.deepEqual(over, bruteForce(start, end, all(8), 5));
  });

  test('ties keep (start, end) order, as numpy argmax over the flattened matrix', () => {
    const flat = [1, 1, 1, 1];
    assert.deepEqual(
      searchSpans(flat, flat, all(4)).map((s) => [s.start, s.end]),
      [[0, 0]],
    );
    assert.deepEqual(
      searchSpans(flat, flat, all(4), { topK: 4 }).map((s) => [s.start, s.end]),
      [
        [0, 0],
        [0, 1],
        [0, 2],
        [0, 3],
      ],
    );
    // Two equal best spans elsewhere: the earlier start wins.
    const start = [0, 5, 0, 5, 0];
    const end = [0, 5, 0, 5, 0];
    assert.deepEqual(
      searchSpans(start, end, all(5), { topK: 2 }).map((s) => [s.start, s.end]),
      [
        [1, 1],
        [1, 3],
      ],
    );
  });

  test('top_k returns the k best, highest score first, equal to the exhaustive ranking', () => {
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 6 - 3;
    for (let trial = 0; trial < 20; trial++) {
      const n = 12 + trial;
      const start = Array.from({ length: n }, rand);
      const end = Array.from({ length: n }, rand);
      const ok = Array.from({ length: n }, (_, i) => i >= 4 && i < n - 1); // a question, then context, then padding
      const got = searchSpans(start, end, ok, { topK: 7, maxAnswerLength: 4 });
      const want = bruteForce(start, end, ok, 4).slice(0, 7);
      assert.equal(got.length, 7);
      got.forEach((g, i) => {
        assert.deepEqual([g.start, g.end], [want[i]!.start, want[i]!.end], `trial ${trial} rank ${i}`);
        assert.ok(Math.abs(g.score - want[i]!.score) < 1e-15);
      });
    }
  });

  test('tokens outside the context never start or end an answer, and do not share the softmax', () => {
    const start = [50, 50, 1, 2, 0];
    const end = [50, 50, 0, 3, 1];
    const ok = [false, false, true, true, true];
    const spans = searchSpans(start, end, ok, { topK: 10 });
    assert.ok(spans.every((s) => s.start >= 2 && s.end >= 2));
    const ps = softmax([1, 2, 0]),
      pe = softmax([0, 3, 1]);
    assert.ok(Math.abs(spans[0]!.score - ps[1]! * pe[1]!) < 1e-12, 'scores are probabilities over the context alone');
    assert.equal(spans.length, 6, 'fewer than top_k when fewer valid spans exist');
  });

  test('bad options and mismatched lengths are refused', () => {
    assert.throws(() => searchSpans([0], [0], [true], { maxAnswerLength: 0 }), /maxAnswerLength/);
    assert.throws(() => searchSpans([0], [0], [true], { topK: 1.5 }), /topK/);
    assert.throws(() => searchSpans([0, 1], [0], [true, true]), /one entry per token/);
  });
});

describe('sequence classification', () => {
  test('the pooled token is the rightmost non-pad token, with left or right padding', () => {
    const pad = 1;
    const ids = [2, 5, 6, 1, 1, /* */ 1, 1, 2, 5, 6, /* */ 1, 1, 1, 1, 1, /* */ 2, 5, 1, 6, 1];
    assert.deepEqual(pooledPositions(ids, 4, pad), [2, 4, 0, 3]);
    assert.deepEqual(pooledPositions(BigInt64Array.from(ids.slice(0, 5), BigInt), 1, pad), [2]);
  });

  test('without a pad id: the last position for one row, a clear refusal for a batch (as transformers)', () => {
    assert.deepEqual(pooledPositions([2, 5, 6], 1, null), [2]);
    assert.throws(() => pooledPositions([2, 5, 6, 2, 5, 6], 2, null), /pad_token_id to null.*batch of 2.*one text at a time/);
  });

  test('scores per problem_type: softmax, sigmoid, raw; sorted highest first with the labels', () => {
    const labels = ['a', 'b', 'c'];
    const single = labelScores([1, 3, 2], 'single_label_classification', labels);
    assert.deepEqual(
      single.map((l) => l.label),
      ['b', 'c', 'a'],
    );
    const p = softmax([1, 3, 2]);
    assert.ok(Math.abs(single[0]!.score - p[1]!) < 1e-12);
    const multi = labelScores([0, 2, -1], 'multi_label_classification', labels);
    assert.deepEqual(
      multi.map((l) => [l.label, +l.score.toFixed(6)]),
      [
        ['b', +(1 / (1 + Math.exp(-2))).toFixed(6)],
        ['a', 0.5],
        ['c', +(1 / (1 + Math.exp(1))).toFixed(6)],
      ],
    );
    assert.deepEqual(labelScores([2.5], 'regression', ['LABEL_0']), [{ label: 'LABEL_0', score: 2.5 }]);
    assert.deepEqual(
      labelScores([1, 1], 'single_label_classification', ['x', 'y']).map((l) => l.label),
      ['x', 'y'],
      'ties keep id order',
    );
  });
});

describe('head fields of config.json', () => {
  const parse = (raw: Record<string, unknown>) =>
    parseHeadConfig(raw, parseOptConfig({ model_type: 'opt', architectures: ['OPTForSequenceClassification'], ...raw }));

  test('id2label names labels in id order; LABEL_i by default; label2id follows', () => {
    assert.deepEqual(parse({}).labels, ['LABEL_0', 'LABEL_1']);
    const c = parse({ id2label: { 1: 'POSITIVE', 0: 'NEGATIVE' }, label2id: { NEGATIVE: 0, POSITIVE: 1 } });
    assert.deepEqual(c.labels, ['NEGATIVE', 'POSITIVE']);
    assert.deepEqual(c.label2id, { NEGATIVE: 0, POSITIVE: 1 });
    assert.deepEqual(parse({ num_labels: 3 }).label2id, { LABEL_0: 0, LABEL_1: 1, LABEL_2: 2 });
  });

  test('problem_type as given, else regression for one label and single-label otherwise', () => {
    assert.equal(parse({}).problemType, 'single_label_classification');
    assert.equal(parse({ num_labels: 1 }).problemType, 'regression');
    assert.equal(parse({ num_labels: 4, problem_type: 'multi_label_classification' }).problemType, 'multi_label_classification');
    assert.throws(() => parse({ problem_type: 'ranking' }), /unknown problem_type "ranking".*single_label_classification/);
  });

  test('pad_token_id: the config default 1, or null when config.json says null', () => {
    assert.equal(parse({}).padTokenId, 1);
    assert.equal(parse({ pad_token_id: 0 }).padTokenId, 0);
    assert.equal(parse({ pad_token_id: null }).padTokenId, null);
  });

  test('tasks per architecture, and the wrong-head error names both architectures', () => {
    assert.deepEqual(tasksOf('OPTForCausalLM'), ['generate', 'embed']);
    assert.deepEqual(tasksOf('OPTForSequenceClassification'), ['classify', 'embed']);
    assert.deepEqual(tasksOf('OPTForQuestionAnswering'), ['answer', 'embed']);
    assert.deepEqual(tasksOf('OPTModel'), ['embed']);
    assert.doesNotThrow(() => requireTask('OPTModel', 'embed', 'dir'));
    assert.throws(
      () => requireTask('OPTForCausalLM', 'classify', '/m'),
      (e: unknown) =>
        e instanceof WrongModelTypeError &&
        /\/m holds an OPTForCausalLM checkpoint.*needs an OPTForSequenceClassification checkpoint/.test(e.message),
    );
    assert.throws(
      () => requireTask('OPTModel', 'answer', '/m'),
      /OPTModel checkpoint, which has no question-answering head.*OPTForQuestionAnswering/,
    );
    assert.throws(
      () => requireTask('OPTForQuestionAnswering', 'generate', '/m'),
      /no language-model head: text generation needs an OPTForCausalLM/,
    );
  });
});

test('pooling: mean over real tokens and the last real token, padding on either side', () => {
  // [B=2, S=3, W=2]: row 0 right-padded, row 1 left-padded.
  const states = Float32Array.from([1, 2, 3, 4, 100, 100, /* */ 100, 100, 5, 6, 7, 8]);
  const mask = [1, 1, 0, 0, 1, 1];
  assert.deepEqual(
    pool(states, mask, 2, 2, 'mean').map((v) => Array.from(v)),
    [
      [2, 3],
      [6, 7],
    ],
  );
  assert.deepEqual(
    pool(states, mask, 2, 2, 'last').map((v) => Array.from(v)),
    [
      [3, 4],
      [7, 8],
    ],
  );
  assert.deepEqual(Array.from(pool(states.subarray(0, 2), [0], 1, 2, 'mean')[0]!), [0, 0], 'no tokens: zeros, not NaN');
});

describe('question and context encoding', () => {
  const tmp = tempDir('qa-encoding');
  after(() => tmp.remove());

  test('BOS + question + context, no separator; only context tokens are candidates; offsets in UTF-16 over whole words', async () => {
    const dir = join(tmp.path, 'tok');
    await mkdir(dir, { recursive: true });
    await writeOptTokenizerFiles(dir);
    const qa = await QaEncoder.fromDir(dir);
    const { OptTokenizer } = await import('../../runtime/src/tokenizer/optTokenizer.js');
    const tok = await OptTokenizer.fromDir(dir);
    const question = 'Where is it?';
    const context = 'Naïve café 😀 is in Paris, France.';
    const enc = await qa.encode(question, context);
    const q = await tok.encode(question, { addSpecialTokens: false });
    const c = await tok.encode(context, { addSpecialTokens: false });
    assert.deepEqual(enc.ids, [2, ...q, ...c]);
    assert.deepEqual(enc.candidate, [false, ...q.map(() => false), ...c.map(() => true)]);
    const first = 1 + q.length;
    const token = (piece: string) => first + c.findIndex((id) => tok.idToToken(id) === piece);
    const paris = token('ĠParis');
    assert.deepEqual(
      enc.charSpan(paris, paris),
      { start: context.indexOf(' Paris'), end: context.indexOf(' Paris') + 6 },
      'after the emoji (2 UTF-16 units, 1 code point)',
    );
    assert.equal(context.slice(enc.charSpan(paris, paris + 2).start, enc.charSpan(paris, paris + 2).end), ' Paris, France');
    // A token inside a word widens to the whole word (align_to_words): "Na" + "ïve" → "Naïve".
    assert.deepEqual(enc.charSpan(first + 1, first + 1), { start: 0, end: 5 });
    await assert.rejects(qa.encode('  ', context), /question is empty/);
    await assert.rejects(qa.encode(question, ''), /context is empty/);
  });

  test('a long context in windows: BOS + question + a slice of the context each, offsets into the whole context', async () => {
    const dir = join(tmp.path, 'tok');
    const qa = await QaEncoder.fromDir(dir);
    const { OptTokenizer } = await import('../../runtime/src/tokenizer/optTokenizer.js');
    const tok = await OptTokenizer.fromDir(dir);
    const question = 'Who?';
    const context = Array.from({ length: 12 }, (_, i) => `Alice met Bob number ${i}.`).join(' ');
    const q = await tok.encode(question, { addSpecialTokens: false });
    const c = await tok.encode(context, { addSpecialTokens: false });
    const maxSeqLen = 1 + q.length + 20,
      docStride = 5;
    const windows = await qa.encodeWindows(question, context, { maxSeqLen, docStride });
    const ranges = contextWindows(c.length, 20, 5);
    assert.equal(windows.length, ranges.length);
    for (const [k, w] of windows.entries()) {
      const [a, b] = ranges[k]!;
      assert.deepEqual(w.ids, [2, ...q, ...c.slice(a, b)]);
      assert.ok(w.ids.length <= maxSeqLen);
      assert.deepEqual(w.candidate, [false, ...q.map(() => false), ...c.slice(a, b).map(() => true)]);
    }
    // The last window's last token is the context's final ".".
    const last = windows.at(-1)!;
    assert.deepEqual(last.charSpan(last.ids.length - 1, last.ids.length - 1), { start: context.length - 1, end: context.length });
    // The same word seen from two overlapping windows maps to the same characters.
    const [a2] = ranges[1]!;
    const shared = ranges[0]![1] - 1; // the first window's last context token, also in the second
    assert.deepEqual(
      windows[0]!.charSpan(1 + q.length + shared, 1 + q.length + shared),
      windows[1]!.charSpan(1 + q.length + shared - a2, 1 + q.length + shared - a2),
    );
    await assert.rejects(
      qa.encodeWindows('a long question '.repeat(10), context, { maxSeqLen: 20, docStride: 5 }),
      /ask a shorter question/,
    );
  });

  test('window ranges: every context token covered, consecutive windows overlapping by the stride', () => {
    assert.deepEqual(contextWindows(3, 4, 1), [[0, 3]]);
    assert.deepEqual(contextWindows(4, 4, 1), [[0, 4]]);
    assert.deepEqual(contextWindows(10, 4, 1), [
      [0, 4],
      [3, 7],
      [6, 10],
    ]);
    assert.deepEqual(contextWindows(8, 4, 2), [
      [0, 4],
      [2, 6],
      [4, 8],
    ]);
    assert.deepEqual(contextWindows(9, 4, 2), [
      [0, 4],
      [2, 6],
      [4, 8],
      [6, 9],
    ]);
    assert.throws(() => contextWindows(9, 4, 4), /stride \(4\) must be smaller/);
    assert.throws(() => contextWindows(9, 0, 0), /no room/);
  });
});
