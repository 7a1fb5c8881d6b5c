// `opt classify`, `opt answer` and `opt embed` as a user runs them (a real child process): JSON on
// stdout equal to the reference, every problem_type, pooling choices and all layers, and exit code 2
// with a message naming the architecture when the checkpoint lacks the head.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { OptTokenizer } from '../../runtime/src/tokenizer/optTokenizer.js';
import { type Fixture, type FixtureOptions, writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { maxAbsDiff, tempDir } from '../helpers/decoderHarness.js';
import { naiveOptForward, naiveSequenceClassification, weightsFromMap } from '../reference/naiveOpt.js';

const tmp = tempDir('cli-heads');
after(() => tmp.remove());
const cacheDir = join(tmp.path, 'cache');
const opt = (...args: string[]) => {
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', 'runtime/src/cli.ts', ...args, '--cache-dir', cacheDir, '--dtype', 'fp32', '--device', 'cpu'],
    { encoding: 'utf8', maxBuffer: 64 << 20 },
  );
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, json: () => JSON.parse(r.stdout) as unknown };
};
const hiddenOf = async (f: Fixture, text: string) => {
  const ids = await (await OptTokenizer.fromDir(f.dir)).encode(text);
  return {
    ids,
    out: naiveOptForward(f.config, weightsFromMap(f.weights), [ids], undefined, { skipLogits: true, outputHiddenStates: true }),
  };
};

interface Classified {
  problemType: string;
  labels: { label: string; score: number }[];
  logits: number[];
}

describe('opt classify / answer / embed', () => {
  const fx: Record<string, Fixture> = {};
  let count = 0;
  const make = async (name: string, o: FixtureOptions) => (fx[name] = await writeOptCheckpoint(join(tmp.path, `m${count++}`), o));
  before(async () => {
    await make('single', {
      seed: 61,
      architecture: 'OPTForSequenceClassification',
      config: { num_labels: 3, id2label: { 0: 'red', 1: 'green', 2: 'blue' } },
    });
    await make('multi', {
      seed: 62,
      architecture: 'OPTForSequenceClassification',
      config: { num_labels: 2, problem_type: 'multi_label_classification' },
    });
    await make('regression', { seed: 63, architecture: 'OPTForSequenceClassification', config: { num_labels: 1 } });
    await make('nopad', { seed: 64, architecture: 'OPTForSequenceClassification', config: { pad_token_id: null } });
    await make('qa', { seed: 65, architecture: 'OPTForQuestionAnswering' });
    await make('base', { seed: 66, architecture: 'OPTModel', preset: '350m-style' });
    await make('lm', { seed: 67 });
  });

  test('classify: softmax over id2label with the reference logits; several texts print an array', async () => {
    const text = 'The sky is clear today';
    const r = opt('classify', '--model', fx.single!.dir, text);
    assert.equal(r.code, 0, r.stderr);
    const one = r.json() as Classified;
    assert.equal(one.problemType, 'single_label_classification');
    assert.deepEqual(one.labels.map((l) => l.label).sort(), ['blue', 'green', 'red']);
    const { ids, out } = await hiddenOf(fx.single!, text);
    assert.ok(
      maxAbsDiff(one.logits, naiveSequenceClassification(out.lastHiddenState, [ids], fx.single!.weights.get('score.weight')!, 3, 1)[0]!) <
        1e-4,
    );
    const many = opt('classify', '--model', fx.single!.dir, text, 'short').json() as Classified[];
    assert.equal(many.length, 2);
    assert.ok(maxAbsDiff(many[0]!.logits, one.logits) < 1e-4, 'a right-padded row pools its own last token');
  });

  test('classify: multi-label → sigmoid per label, regression (one label) → the raw logit', () => {
    const multi = opt('classify', '--model', fx.multi!.dir, 'anything').json() as Classified;
    assert.equal(multi.problemType, 'multi_label_classification');
    for (const l of multi.labels) assert.ok(Math.abs(l.score - 1 / (1 + Math.exp(-multi.logits[Number(l.label.slice(6))]!))) < 1e-12);
    const reg = opt('classify', '--model', fx.regression!.dir, 'anything').json() as Classified;
    assert.equal(reg.problemType, 'regression');
    assert.deepEqual(reg.labels, [{ label: 'LABEL_0', score: reg.logits[0] }]);
  });

  test('classify without a pad token: one text works, a batch is refused as transformers does', () => {
    assert.equal(opt('classify', '--model', fx.nopad!.dir, 'one').code, 0);
    const r = opt('classify', '--model', fx.nopad!.dir, 'one', 'two');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /pad_token_id to null.*classify one text at a time/);
  });

  test('answer: top-k spans, best first, whose offsets slice the context', () => {
    const context = 'Marie Curie was born in Warsaw in 1867 and died in 1934.';
    const r = opt(
      'answer',
      '--model',
      fx.qa!.dir,
      '--question',
      'Where was she born?',
      '--context',
      context,
      '--top-k',
      '3',
      '--max-answer-length',
      '5',
    );
    assert.equal(r.code, 0, r.stderr);
    const { answers } = r.json() as { answers: { text: string; start: number; end: number; score: number }[] };
    assert.equal(answers.length, 3);
    for (const a of answers) assert.equal(context.slice(a.start, a.end), a.text);
    assert.ok(answers[0]!.score >= answers[1]!.score && answers[1]!.score >= answers[2]!.score);
  });

  test('answer: a context longer than --max-seq-len is read in windows and still answered', () => {
    const context = Array.from({ length: 20 }, (_, i) => `Marie visited city number ${i} in spring.`).join(' ');
    const windowed = opt(
      'answer',
      '--model',
      fx.qa!.dir,
      '--question',
      'Where?',
      '--context',
      context,
      '--max-seq-len',
      '32',
      '--doc-stride',
      '8',
    );
    assert.equal(windowed.code, 0, windowed.stderr);
    const { answers } = windowed.json() as { answers: { text: string; start: number; end: number }[] };
    assert.equal(answers.length, 1);
    assert.equal(context.slice(answers[0]!.start, answers[0]!.end), answers[0]!.text);
    const tooLong = opt(
      'answer',
      '--model',
      fx.qa!.dir,
      '--question',
      'Where did she go? '.repeat(8),
      '--context',
      context,
      '--max-seq-len',
      '32',
    );
    assert.equal(tooLong.code, 2);
    assert.match(tooLong.stderr, /ask a shorter question/);
  });

  test('embed: mean and last pooling equal the reference; --all-layers gives every hidden state (350m-style widths)', async () => {
    const text = 'Embed this sentence';
    const { ids, out } = await hiddenOf(fx.base!, text);
    const last = out.lastHiddenState[0]!;
    const mean = (rows: Float64Array[]) => rows[0]!.map((_, k) => rows.reduce((a, r) => a + r[k]!, 0) / rows.length);
    const m = opt('embed', '--model', fx.base!.dir, text).json() as { pooling: string; embedding: number[]; tokens: number };
    assert.equal(m.pooling, 'mean');
    assert.equal(m.tokens, ids.length);
    assert.ok(maxAbsDiff(m.embedding, mean(last)) < 1e-4);
    const l = opt('embed', '--model', fx.base!.dir, text, '--pooling', 'last').json() as { embedding: number[] };
    assert.ok(maxAbsDiff(l.embedding, last.at(-1)!) < 1e-4);
    const all = opt('embed', '--model', fx.base!.dir, text, '--all-layers').json() as { layers: number[][]; embedding: number[] };
    assert.equal(all.layers.length, fx.base!.config.num_hidden_layers + 1);
    all.layers.forEach((layer, i) => assert.ok(maxAbsDiff(layer, mean(out.hiddenStates![i]![0]!)) < 1e-4, `layer ${i}`));
    assert.deepEqual(
      all.layers.map((x) => x.length),
      [32, 32, 16],
      'inner states are hidden_size wide, the last word_embed_proj_dim',
    );
    // A causal LM embeds too (its body, without the lm_head).
    assert.equal(opt('embed', '--model', fx.lm!.dir, text).code, 0);
  });

  test('a checkpoint without the head, or bad input: exit code 2 and a message saying what is needed', () => {
    const cases: [string[], RegExp][] = [
      [
        ['classify', '--model', fx.qa!.dir, 'x'],
        /holds an OPTForQuestionAnswering checkpoint, which has no sequence-classification head.*needs an OPTForSequenceClassification checkpoint/,
      ],
      [['classify', '--model', fx.lm!.dir, 'x'], /holds an OPTForCausalLM checkpoint.*OPTForSequenceClassification/],
      [
        ['answer', '--model', fx.single!.dir, '--question', 'q', '--context', 'c'],
        /holds an OPTForSequenceClassification checkpoint, which has no question-answering head.*OPTForQuestionAnswering/,
      ],
      [['answer', '--model', fx.base!.dir, '--question', 'q', '--context', 'c'], /OPTModel checkpoint.*OPTForQuestionAnswering/],
      [
        ['generate', '--model', fx.single!.dir, 'Hi'],
        /OPTForSequenceClassification checkpoint, which has no language-model head: text generation needs OPTForCausalLM/,
      ],
      [['classify', '--model', fx.single!.dir], /classify needs a text/],
      [['answer', '--model', fx.qa!.dir, '--question', 'q'], /answer needs --question "…" and --context "…"/],
      [
        ['answer', '--model', fx.qa!.dir, '--question', 'q', '--context', 'c', '--max-answer-length', '0'],
        /--max-answer-length must be an integer >= 1/,
      ],
      [['answer', '--model', fx.qa!.dir, '--question', ' ', '--context', 'c'], /question is empty/],
      [['embed', '--model', fx.base!.dir, 'x', '--pooling', 'max'], /--pooling must be one of mean, last/],
    ];
    for (const [args, message] of cases) {
      const r = opt(...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /at .*\.ts:\d+/, 'no stack trace for bad input');
    }
  });
});
