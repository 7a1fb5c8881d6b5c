// The editor side of the classification and question-answering heads without an editor: what
// each feature needs and how a wrong model is named, scores as the user reads them, the label
// list, and the mapping of an answer's offsets (into the \n text the model saw) back to the
// selection as the document holds it — multi-line, CRLF, surrogate pairs, blank edges, bad spans.
// Then the local engine against the real runtime process: a head the loaded model lacks is refused
// with WrongModelTypeError before anything is sent, and the model's tasks reach the editor.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { EngineUnavailableError, WrongModelTypeError } from '../../extension/src/engines/completionEngine.js';
import { LocalRuntimeEngine } from '../../extension/src/engines/localRuntimeEngine.js';
import { answerSummary, classificationView, formatScore, formatValue } from '../../extension/src/heads/headResults.js';
import { TASK_ARCHITECTURE, modelKind, shortModelName, tasksOf, wrongModelMessage } from '../../extension/src/heads/modelTasks.js';
import { cleanSpan, spanInDocument, toModelText } from '../../extension/src/heads/textSpans.js';
import { memoryLogger } from '../../extension/src/logger.js';
import { RuntimeSupervisor } from '../../extension/src/runtimeSupervisor.js';
import { writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { tempDir } from '../helpers/decoderHarness.js';
import { sourceLaunch } from '../helpers/runtimeProcess.js';

/** What VS Code's offsetAt/getText see: the document text as stored (CRLF kept). */
function docWithSelection(doc: string, selected: string): { selectionStart: number; original: string } {
  const selectionStart = doc.indexOf(selected);
  assert.ok(selectionStart >= 0);
  return { selectionStart, original: selected };
}

/** A span the model would return: offsets of `answer` in the model text. */
function modelSpan(modelText: string, answer: string, from = 0): [number, number] {
  const s = modelText.indexOf(answer, from);
  assert.ok(s >= 0, `${JSON.stringify(answer)} in ${JSON.stringify(modelText)}`);
  return [s, s + answer.length];
}

describe('model tasks', () => {
  test('each feature names the checkpoint type it needs', () => {
    assert.equal(TASK_ARCHITECTURE.classify, 'OPTForSequenceClassification');
    assert.equal(TASK_ARCHITECTURE.answer, 'OPTForQuestionAnswering');
    assert.equal(TASK_ARCHITECTURE.generate, 'OPTForCausalLM');
    const lm = { architecture: 'OPTForCausalLM', tasks: ['generate', 'embed'] as const };
    assert.equal(
      wrongModelMessage('classify', 'facebook/opt-125m', { ...lm, tasks: [...lm.tasks] }),
      'Classifying text needs an OPTForSequenceClassification checkpoint; opt-125m is an OPTForCausalLM (an OPT language model).',
    );
    assert.equal(
      wrongModelMessage('generate', '/models/sst2-opt/', { architecture: 'OPTForSequenceClassification', tasks: ['classify', 'embed'] }),
      'Completing and generating text needs an OPTForCausalLM checkpoint; sst2-opt is an OPTForSequenceClassification (an OPT classifier).',
    );
    assert.match(
      wrongModelMessage('answer', 'x', undefined),
      /^Answering questions needs an OPTForQuestionAnswering checkpoint; x has no such head\.$/,
    );
  });

  test('what the model is, from its tasks', () => {
    assert.equal(modelKind({ tasks: ['generate', 'embed'] }), 'OPT language model');
    assert.equal(modelKind({ tasks: ['classify', 'embed'] }), 'OPT classifier');
    assert.equal(modelKind({ tasks: ['answer', 'embed'] }), 'OPT question answering');
    assert.equal(modelKind({ tasks: ['embed'] }), 'OPT base model');
    assert.deepEqual(tasksOf({ tasks: undefined as never }), ['generate'], 'a runtime without tasks could only generate');
    assert.equal(tasksOf(undefined), undefined);
    assert.equal(shortModelName('facebook/opt-125m'), 'opt-125m');
    assert.equal(shortModelName('C:\\models\\opt\\'), 'opt');
  });
});

describe('scores', () => {
  test('probabilities as percentages that never round to a misleading 0% or 100%', () => {
    assert.equal(formatScore(0.973), '97.3%');
    assert.equal(formatScore(0.5), '50.0%');
    assert.equal(formatScore(1), '100.0%');
    assert.equal(formatScore(0), '0.0%');
    assert.equal(formatScore(0.0004), '<0.1%');
    assert.equal(formatScore(0.0005), '0.1%');
    assert.equal(formatScore(0.99951), '>99.9%');
    assert.equal(formatScore(0.9994), '99.9%');
    assert.equal(formatScore(Number.NaN), 'NaN');
  });

  test('regression values raw, four significant digits', () => {
    assert.equal(formatScore(0.734219, 'regression'), '0.7342');
    assert.equal(formatScore(-12.5, 'regression'), '-12.5');
    assert.equal(formatScore(3, 'regression'), '3');
    assert.equal(formatValue(0), '0');
    assert.equal(formatValue(1.5e-7), '1.500e-7');
    assert.equal(formatValue(2.5e9), '2.500e+9');
  });

  test('single-label: every label best first, the best one predicted', () => {
    const v = classificationView({
      problemType: 'single_label_classification',
      labels: [
        { label: 'NEGATIVE', score: 0.1 },
        { label: 'POSITIVE', score: 0.85 },
        { label: 'NEUTRAL', score: 0.05 },
      ],
    });
    assert.equal(v.summary, 'POSITIVE 85.0%');
    assert.deepEqual(
      v.rows.map((r) => [r.label, r.text, r.predicted]),
      [
        ['POSITIVE', '85.0%', true],
        ['NEGATIVE', '10.0%', false],
        ['NEUTRAL', '5.0%', false],
      ],
    );
  });

  test("ties keep the runtime's order (the first is the prediction, as argmax)", () => {
    const v = classificationView({
      problemType: 'single_label_classification',
      labels: [
        { label: 'B', score: 0.5 },
        { label: 'A', score: 0.5 },
      ],
    });
    assert.deepEqual(
      v.rows.map((r) => r.label),
      ['B', 'A'],
    );
    assert.equal(v.summary, 'B 50.0%');
  });

  test('multi-label: every label at 50% or more applies; none is said plainly', () => {
    const v = classificationView({
      problemType: 'multi_label_classification',
      labels: [
        { label: 'toxic', score: 0.2 },
        { label: 'sports', score: 0.9 },
        { label: 'news', score: 0.5 },
      ],
    });
    assert.equal(v.summary, 'sports 90.0%, news 50.0%');
    assert.deepEqual(
      v.rows.map((r) => r.predicted),
      [true, true, false],
    );
    const none = classificationView({
      problemType: 'multi_label_classification',
      labels: [
        { label: 'a', score: 0.2 },
        { label: 'b', score: 0.3 },
      ],
    });
    assert.equal(none.summary, 'no label reaches 50% (highest: b 30.0%)');
  });

  test('regression: the value', () => {
    const v = classificationView({ problemType: 'regression', labels: [{ label: 'LABEL_0', score: 3.14159 }] });
    assert.equal(v.summary, 'LABEL_0 = 3.142');
    assert.equal(classificationView({ problemType: 'regression', labels: [] }).summary, 'no labels');
  });

  test('answer summary: trimmed, quoted, long answers shortened, 1-based line', () => {
    assert.equal(answerSummary({ text: ' Paris', score: 0.8312 }, 2), '"Paris" (score 83.1%, line 3)');
    assert.equal(answerSummary({ text: 'Paris and\r\n  Lyon', score: 0.5 }, 0), '"Paris and Lyon" (score 50.0%, line 1)');
    const long = answerSummary({ text: 'x'.repeat(100), score: 0.1 }, 0);
    assert.match(long, /^"x{77}…" \(score 10\.0%, line 1\)$/);
  });
});

describe('answer offsets → document', () => {
  test('LF text is sent as is and offsets map one to one', () => {
    const m = toModelText('The capital of France is Paris.\nIt is big.');
    assert.equal(m.text, 'The capital of France is Paris.\nIt is big.');
    for (const o of [0, 10, 31, 32, 42]) assert.equal(m.toSource(o), o);
  });

  test('CRLF: sent with \\n, spans map back past the dropped \\r, also across lines', () => {
    const doc = 'Title\r\nThe capital of France\r\nis Paris.\r\nIt is big.\r\n';
    const { selectionStart, original } = docWithSelection(doc, 'The capital of France\r\nis Paris.\r\nIt is big.');
    const m = toModelText(original);
    assert.equal(m.text, 'The capital of France\nis Paris.\nIt is big.');
    // One line (second of the selection).
    const [s, e] = modelSpan(m.text, 'Paris');
    const span = spanInDocument(m, selectionStart, s, e)!;
    assert.equal(doc.slice(span.start, span.end), 'Paris');
    // Across the line break: the document's span keeps its \r\n.
    const [s2, e2] = modelSpan(m.text, 'France\nis Paris');
    const span2 = spanInDocument(m, selectionStart, s2, e2)!;
    assert.equal(doc.slice(span2.start, span2.end), 'France\r\nis Paris');
    // Ending right before a line break: the \r is not included.
    const [s3, e3] = modelSpan(m.text, 'is Paris.');
    const span3 = spanInDocument(m, selectionStart, s3, e3)!;
    assert.equal(doc.slice(span3.start, span3.end), 'is Paris.');
    // The last line.
    const [s4, e4] = modelSpan(m.text, 'big');
    assert.equal(doc.slice(...(Object.values(spanInDocument(m, selectionStart, s4, e4)!) as [number, number])), 'big');
  });

  test('every span of a CRLF text maps to the same text with \\r\\n', () => {
    const source = 'a\r\nbc\r\n\r\nd e\r\nf';
    const m = toModelText(source);
    for (let s = 0; s <= m.text.length; s++) {
      for (let e = s; e <= m.text.length; e++) {
        const mapped = source.slice(m.toSource(s), m.toSource(e));
        assert.equal(mapped.replace(/\r\n/g, '\n'), m.text.slice(s, e), `[${s}, ${e})`);
        assert.ok(!mapped.endsWith('\r'), `[${s}, ${e}) ends inside a line break`);
      }
    }
  });

  test('a leading space of the answer token (BPE) and surrounding blanks are not highlighted', () => {
    const m = toModelText('It is in Paris, France.');
    const [s, e] = modelSpan(m.text, ' Paris');
    assert.deepEqual(cleanSpan(m.text, s, e), { start: s + 1, end: e });
    const span = spanInDocument(m, 100, s, e)!;
    assert.deepEqual(span, { start: 100 + s + 1, end: 100 + e });
    assert.deepEqual(cleanSpan('a \n b', 1, 5), { start: 4, end: 5 });
    assert.equal(cleanSpan('a \n b', 1, 4), undefined, 'only blanks');
  });

  test('UTF-16 offsets: astral characters before the answer count as two units, as in VS Code', () => {
    const doc = 'x\r\n🙂 Émile lives in Lyon';
    const { selectionStart, original } = docWithSelection(doc, '🙂 Émile lives in Lyon');
    const m = toModelText(original);
    const [s, e] = modelSpan(m.text, 'Lyon');
    const span = spanInDocument(m, selectionStart, s, e)!;
    assert.equal(doc.slice(span.start, span.end), 'Lyon');
  });

  test('spans that are empty, blank, reversed, fractional or outside the text are no answer', () => {
    const m = toModelText('abc def');
    assert.equal(spanInDocument(m, 0, 2, 2), undefined);
    assert.equal(spanInDocument(m, 0, 3, 4), undefined, 'only a space');
    assert.equal(spanInDocument(m, 0, 5, 2), undefined);
    assert.equal(spanInDocument(m, 0, -1, 2), undefined);
    assert.equal(spanInDocument(m, 0, 4, 8), undefined);
    assert.equal(spanInDocument(m, 0, 0.5, 2), undefined);
    assert.deepEqual(spanInDocument(m, 0, 4, 7), { start: 4, end: 7 });
  });
});

describe('local engine and model heads (real runtime process)', { timeout: 180_000 }, () => {
  const tmp = tempDir('ext-heads');
  const launch = sourceLaunch;
  let supervisor: RuntimeSupervisor | undefined;
  after(async () => {
    await supervisor?.dispose();
    tmp.remove();
  });

  test('a causal LM reports its tasks; classify and answer are refused naming the checkpoint type, before anything is sent', async () => {
    const dir = (await writeOptCheckpoint(join(tmp.path, 'lm'), { seed: 3, tokenizer: true, config: { max_position_embeddings: 128 } }))
      .dir;
    supervisor = new RuntimeSupervisor({
      launch,
      init: () => ({ model: dir, dtype: 'fp32', cacheDir: join(tmp.path, 'cache') }),
      log: memoryLogger(),
    });
    const engine = new LocalRuntimeEngine(supervisor);
    await assert.rejects(engine.classify({ text: 'great movie' }), (e: unknown) => {
      assert.ok(e instanceof WrongModelTypeError, String(e));
      assert.equal(e.task, 'classify');
      assert.equal(e.architecture, 'OPTForCausalLM');
      assert.match(e.message, /needs an OPTForSequenceClassification checkpoint; lm is an OPTForCausalLM \(an OPT language model\)/);
      return true;
    });
    const s = supervisor.state;
    assert.equal(s.kind, 'ready');
    assert.ok(s.kind === 'ready' && s.info.tasks.includes('generate'), 'the runtime says the model generates');
    await assert.rejects(
      engine.answer({ question: 'Who?', context: 'Ann.' }),
      (e: unknown) => e instanceof WrongModelTypeError && /OPTForQuestionAnswering/.test(e.message),
    );
    // The runtime keeps serving text.
    const r = await engine.run({ kind: 'generate', prompt: 'Hello', options: { max_new_tokens: 2 } });
    assert.equal(r.completionTokens, 2);
  });

  test("a classifier and a QA model (the fixture generator's heads) answer through the engine; text requests are refused", async () => {
    await supervisor?.dispose();
    let model = '';
    supervisor = new RuntimeSupervisor({
      launch,
      init: () => ({ model, dtype: 'fp32', cacheDir: join(tmp.path, 'cache') }),
      log: memoryLogger(),
    });
    const engine = new LocalRuntimeEngine(supervisor);
    model = (
      await writeOptCheckpoint(join(tmp.path, 'cls'), {
        architecture: 'OPTForSequenceClassification',
        seed: 5,
        tokenizer: true,
        config: { id2label: { 0: 'NEGATIVE', 1: 'POSITIVE' }, label2id: { NEGATIVE: 0, POSITIVE: 1 } },
      })
    ).dir;
    const c = await engine.classify({ text: 'what a great day' });
    assert.equal(c.problemType, 'single_label_classification');
    assert.deepEqual(c.labels.map((l) => l.label).sort(), ['NEGATIVE', 'POSITIVE']);
    assert.ok(Math.abs(c.labels[0]!.score + c.labels[1]!.score - 1) < 1e-9 && c.labels[0]!.score >= c.labels[1]!.score);
    const s = supervisor.state;
    assert.ok(
      s.kind === 'ready' &&
        s.info.architecture === 'OPTForSequenceClassification' &&
        s.info.tasks.includes('classify') &&
        !s.info.tasks.includes('generate'),
      JSON.stringify(s),
    );
    for (const kind of ['complete', 'generate', 'rewrite'] as const) {
      await assert.rejects(
        engine.run({ kind, prompt: 'Hello', documentId: 'd', options: { max_new_tokens: 2 } }),
        (e: unknown) =>
          e instanceof WrongModelTypeError &&
          e.task === 'generate' &&
          /needs an OPTForCausalLM checkpoint; cls is an OPTForSequenceClassification \(an OPT classifier\)/.test(e.message),
        kind,
      );
    }
    await assert.rejects(engine.answer({ question: 'Who?', context: 'Ann.' }), WrongModelTypeError);

    model = (await writeOptCheckpoint(join(tmp.path, 'qa'), { architecture: 'OPTForQuestionAnswering', seed: 6, tokenizer: true })).dir;
    await supervisor.restart('another model');
    const context = 'Ann lives in Paris.\nBob lives in Rome.';
    const a = await engine.answer({ question: 'Where does Bob live?', context: toModelText(context).text });
    assert.ok(a.answers.length >= 1);
    const best = a.answers[0]!;
    assert.equal(best.text, context.slice(best.start, best.end), 'offsets into the context as sent');
    assert.ok(best.score > 0 && best.score <= 1);
    // An abort before sending is a cancellation, not an error.
    await assert.rejects(engine.classify({ text: 'x' }, AbortSignal.abort()), (e: unknown) => (e as Error).name === 'CancelledError');
  });
});

describe('runtime supervisor: stop while a request waits', { timeout: 120_000 }, () => {
  const tmp = tempDir('ext-stop');
  const launch = sourceLaunch;
  after(() => tmp.remove());

  // Seen end to end: the debug state (engine status) asked for the connection while "Stop Runtime"
  // was stopping the process; the state still said ready, the request waited, and nothing ever
  // answered it.
  test('a ready() that arrives while stop() is stopping the process is rejected, not left waiting', async () => {
    const dir = (await writeOptCheckpoint(join(tmp.path, 'lm'), { seed: 4, tokenizer: true, config: { max_position_embeddings: 64 } })).dir;
    const supervisor = new RuntimeSupervisor({
      launch,
      init: () => ({ model: dir, dtype: 'fp32', cacheDir: join(tmp.path, 'cache') }),
      log: memoryLogger(),
    });
    try {
      await supervisor.ready();
      const stopping = supervisor.stop();
      assert.equal(supervisor.state.kind, 'ready', 'the state changes only once the process is gone');
      const late = supervisor.ready();
      const outcome = await Promise.race([
        late.then(
          () => 'resolved',
          (e: unknown) => (e instanceof EngineUnavailableError ? 'rejected' : String(e)),
        ),
        new Promise((r) => setTimeout(() => r('still waiting'), 15_000)),
      ]);
      await stopping;
      assert.equal(outcome, 'rejected');
      assert.equal(supervisor.state.kind, 'stopped');
    } finally {
      await supervisor.dispose();
    }
  });
});
