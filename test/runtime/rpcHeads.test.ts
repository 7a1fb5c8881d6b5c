// The heads other than generation through the real runtime process: initialize reports each
// checkpoint's architecture and tasks; opt/classify, opt/answer and opt/embed answer with the
// reference's numbers; a request the head cannot serve gets WrongModelType naming what is needed;
// a head request does not wait behind a long background generation.

import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type MessageConnection,
  ResponseError,
  StreamMessageReader,
  StreamMessageWriter,
  createMessageConnection,
} from 'vscode-jsonrpc/node';
import {
  Answer,
  Classify,
  Complete,
  Embed,
  Generate,
  Initialize,
  PartialResult,
  PROTOCOL_VERSION,
  RuntimeErrorCodes,
} from '../../protocol/protocol.js';
import { OptTokenizer } from '../../runtime/src/tokenizer/optTokenizer.js';
import { type Fixture, writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { maxAbsDiff, tempDir } from '../helpers/decoderHarness.js';
import { naiveOptForward, naiveSequenceClassification, weightsFromMap } from '../reference/naiveOpt.js';

const tmp = tempDir('rpc-heads');
after(() => tmp.remove());
const cacheDir = join(tmp.path, 'cache');

const wrongModel = (pattern: RegExp) => (e: unknown) =>
  e instanceof ResponseError && e.code === RuntimeErrorCodes.WrongModelType && pattern.test(e.message);

describe('classify, answer and embed over JSON-RPC', { timeout: 120_000 }, () => {
  let child: ChildProcessWithoutNullStreams;
  let rpc: MessageConnection;
  const fx: Record<string, Fixture> = {};
  const init = (f: Fixture) =>
    rpc.sendRequest(Initialize, { protocolVersion: PROTOCOL_VERSION, model: f.dir, dtype: 'fp32', device: 'cpu', cacheDir });

  before(async () => {
    fx.lm = await writeOptCheckpoint(join(tmp.path, 'lm'), { seed: 51, config: { max_position_embeddings: 512 } });
    fx.cls = await writeOptCheckpoint(join(tmp.path, 'cls'), {
      seed: 52,
      architecture: 'OPTForSequenceClassification',
      config: { id2label: { 0: 'NEGATIVE', 1: 'POSITIVE' } },
    });
    fx.qa = await writeOptCheckpoint(join(tmp.path, 'qa'), { seed: 53, architecture: 'OPTForQuestionAnswering' });
    fx.base = await writeOptCheckpoint(join(tmp.path, 'base'), { seed: 54, architecture: 'OPTModel' });
    child = spawn(process.execPath, ['--import', 'tsx', 'runtime/src/cli.ts', 'rpc'], { stdio: 'pipe' });
    child.stderr.resume();
    rpc = createMessageConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin));
    rpc.listen();
  });
  after(async () => {
    rpc.dispose();
    child.stdin.end();
    await new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once('exit', resolve)));
  });

  test('a sequence classifier: tasks, label scores with the reference logits, and no generation', async () => {
    const { info } = await init(fx.cls!);
    assert.equal(info.architecture, 'OPTForSequenceClassification');
    assert.deepEqual(info.tasks, ['classify', 'embed']);
    const r = await rpc.sendRequest(Classify, { text: 'What a wonderful day' });
    assert.equal(r.problemType, 'single_label_classification');
    assert.deepEqual(r.labels.map((l) => l.label).sort(), ['NEGATIVE', 'POSITIVE']);
    const ids = await (await OptTokenizer.fromDir(fx.cls!.dir)).encode('What a wonderful day');
    const hidden = naiveOptForward(fx.cls!.config, weightsFromMap(fx.cls!.weights), [ids], undefined, { skipLogits: true }).lastHiddenState;
    assert.ok(maxAbsDiff(r.logits, naiveSequenceClassification(hidden, [ids], fx.cls!.weights.get('score.weight')!, 2, 1)[0]!) < 1e-4);
    const e = await rpc.sendRequest(Embed, { text: 'What a wonderful day', pooling: 'last' });
    assert.equal(e.tokens, ids.length);
    assert.ok(maxAbsDiff(e.embedding, hidden[0]!.at(-1)!) < 1e-4, "last pooling is the pooled token's state");
    await assert.rejects(
      rpc.sendRequest(Answer, { question: 'q', context: 'c' }),
      wrongModel(/OPTForSequenceClassification checkpoint.*needs an OPTForQuestionAnswering checkpoint/),
    );
    await assert.rejects(
      rpc.sendRequest(Generate, { prompt: 'Hi', options: { max_new_tokens: 2 } }),
      wrongModel(/no language-model head: text generation needs an OPTForCausalLM/),
    );
    await assert.rejects(rpc.sendRequest(Complete, { documentId: 'a', prefix: 'Hi', suffix: '' }), wrongModel(/OPTForCausalLM/));
  });

  test('a question-answering model: answers in the context with character offsets', async () => {
    const { info } = await init(fx.qa!);
    assert.deepEqual(info.tasks, ['answer', 'embed']);
    const context = 'The tower was finished in 1889 in Paris.';
    const r = await rpc.sendRequest(Answer, { question: 'When was it finished?', context, topK: 3, maxAnswerLength: 4 });
    assert.equal(r.answers.length, 3);
    for (const a of r.answers) assert.equal(context.slice(a.start, a.end), a.text);
    assert.ok(r.answers[0]!.score >= r.answers[1]!.score && r.answers[1]!.score >= r.answers[2]!.score);
    await assert.rejects(rpc.sendRequest(Answer, { question: 'q', context, topK: 0 }), /`topK` must be an integer >= 1/);
    await assert.rejects(rpc.sendRequest(Classify, { text: 'x' }), wrongModel(/needs an OPTForSequenceClassification checkpoint/));
  });

  test('OPTModel embeds, and refuses the heads it lacks', async () => {
    const { info } = await init(fx.base!);
    assert.equal(info.architecture, 'OPTModel');
    assert.deepEqual(info.tasks, ['embed']);
    const e = await rpc.sendRequest(Embed, { text: 'Some text to embed' });
    assert.equal(e.embedding.length, fx.base!.config.word_embed_proj_dim);
    await assert.rejects(rpc.sendRequest(Classify, { text: 'x' }), wrongModel(/OPTModel checkpoint/));
    await assert.rejects(rpc.sendRequest(Embed, { text: 'x', pooling: 'max' as never }), /`pooling` must be "mean" or "last"/);
  });

  test('a causal LM generates and embeds; an embed request does not wait for a long background generation', async () => {
    const { info } = await init(fx.lm!);
    assert.deepEqual(info.tasks, ['generate', 'embed']);
    const first = await rpc.sendRequest(Embed, { text: 'hello' }); // the first embed opens the body graph
    assert.equal(first.embedding.length, fx.lm!.config.word_embed_proj_dim);
    let generationDone = false,
      partials = 0;
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    const sub = rpc.onProgress(PartialResult, 'long', () => {
      if (++partials === 1) started();
    });
    const long = rpc
      .sendRequest(Generate, {
        prompt: 'Once upon a time',
        options: { max_new_tokens: 480, min_new_tokens: 480 },
        partialResultToken: 'long',
      })
      .then((r) => ((generationDone = true), r));
    await running;
    const e = await rpc.sendRequest(Embed, { text: 'hello' });
    assert.equal(generationDone, false, `the embedding came back while the generation was running (after ${partials} of 480 tokens)`);
    assert.ok(maxAbsDiff(e.embedding, first.embedding) < 1e-6);
    assert.equal((await long).completionTokens, 480);
    sub.dispose();
    await assert.rejects(
      rpc.sendRequest(Classify, { text: 'x' }),
      wrongModel(/OPTForCausalLM checkpoint, which has no sequence-classification head/),
    );
  });
});
