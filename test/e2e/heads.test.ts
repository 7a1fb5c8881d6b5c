// End-to-end tests of the classification and question-answering commands in real VS Code
// (code-server + headless Chromium, see harness.ts) on fixture checkpoints with those heads
// (scriptedHeads.ts: the fixture generator's OPTForSequenceClassification and
// OPTForQuestionAnswering checkpoints with weights that make the outcome known), and of what a
// model without the needed head does: the status bar says what the model is, ghost text stays
// quiet, and each command names the checkpoint type it needs and offers the model picker.
// Everything the UI shows is compared with a direct `opt classify` / `opt answer` CLI run of the
// runtime from source on the same checkpoint and precision.
//
// Prerequisites: `bash scripts/e2e-setup.sh`. Environment as extension.test.ts (OPT_E2E_DTYPE,
// OPT_E2E_VSIX, OPT_E2E_KEEP, OPT_E2E_CACHE).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import type { AnswerResult, ClassifyResult } from '../../protocol/protocol.js';
import { Commands } from '../../extension/src/commandIds.js';
import { formatScore } from '../../extension/src/heads/headResults.js';
import { writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { type Pos, REPO_ROOT, VsCodeSession, ensureVsix, findPrereqs, step, waitFor } from './harness.js';
import { E2E_DTYPE, EXTENSION_ID, label } from './manifest.js';
import { writeScriptedClassifier, writeScriptedQa } from './scriptedHeads.js';

const run = promisify(execFile);

const DTYPE = E2E_DTYPE;

// What optComplete.debug.state returns (the parts read here).
interface DebugState {
  runtime: { state: string; pid?: number; detail: { kind: string; info?: { architecture?: string; tasks?: string[]; modelId?: string } } };
  statusBar: { kind: string; text: string };
  inline: { counters: Record<string, number> };
  heads: {
    tasks?: string[];
    classify?: { status: string; labels?: ClassifyResult['labels']; problemType?: string; summary?: string; message?: string };
    answer?: {
      status: string;
      question?: string;
      answer?: AnswerResult['answers'][number];
      highlighted?: { start: Pos; end: Pos; text: string };
      summary?: string;
      message?: string;
    };
    highlighted?: { uri: string; start: Pos; end: Pos };
  };
}

const REVIEWS = 'The service was great\nThe soup was awful\n';
// CRLF on purpose: the answer's offsets (into the \n text the model sees) must land on the same characters.
const MUSEUMS = 'Museums\r\nThe museums of Paris and\r\nLyon are old.\r\nThe end.\r\n';
const QUESTION = 'Which cities have old museums?';

describe(`classification and question answering in VS Code (code-server, ${DTYPE})`, { timeout: 900_000 }, () => {
  let session: VsCodeSession;
  let work = '';
  const models = { classifier: '', qa: '', lm: '' };
  let cacheDir = '';

  const state = () => session.executeCommand<DebugState>(Commands.debugState);

  const part = (name: string, body: () => Promise<void>) => step(session, state, name, body);

  /** The runtime from source (as `npm run opt --`), printing JSON: what the UI must show. */
  async function cli<T>(...args: string[]): Promise<T> {
    const { stdout } = await run(
      process.execPath,
      ['--import', 'tsx', 'runtime/src/cli.ts', ...args, '--dtype', DTYPE, '--device', 'cpu', '--cache-dir', cacheDir],
      { cwd: REPO_ROOT, timeout: 120_000, maxBuffer: 16 << 20 },
    );
    return JSON.parse(stdout) as T;
  }

  /** Switches optComplete.model (the settings change restarts the runtime) and waits for that model to be ready. */
  async function useModel(dir: string, architecture: string): Promise<DebugState> {
    await session.bridge('updateConfig', { section: 'optComplete', key: 'model', value: dir });
    return waitFor(
      `${architecture} ${dir} to be ready`,
      async () => {
        const s = await state();
        return s.runtime.state === 'ready' && s.runtime.detail.info?.modelId === dir && s.runtime.detail.info.architecture === architecture
          ? s
          : undefined;
      },
      180_000,
      250,
    );
  }

  /** A visible notification toast containing `text`. */
  const toast = (text: string) => session.page.locator('.notifications-toasts .notification-toast', { hasText: text }).first();
  const clearNotifications = () => session.executeCommand('notifications.clearAll');

  /** The palette closes once the command runs; a command that asked for input would keep the widget open. */
  async function noInputBox(what: string): Promise<void> {
    const widget = session.page.locator('.quick-input-widget');
    await widget.waitFor({ state: 'hidden', timeout: 5_000 }).catch(() => undefined);
    await sleep(500);
    assert.equal(await widget.isVisible(), false, what);
  }

  /** The quick pick's rows as [label, description], once `count` rows show. */
  async function quickPickRows(count: number): Promise<[string, string][]> {
    const rows = session.page.locator('.quick-input-widget .quick-input-list .monaco-list-row');
    await waitFor(`${count} quick pick rows`, async () => (await rows.count()) === count, 30_000, 100);
    const out: [string, string][] = [];
    for (let i = 0; i < count; i++) {
      const row = rows.nth(i);
      const name = (await row.locator('.label-name').first().innerText()).replace(/\u00a0/g, ' ').trim();
      const description = (
        await row
          .locator('.label-description')
          .first()
          .innerText()
          .catch(() => '')
      ).trim();
      out.push([name, description]);
    }
    return out;
  }

  before(async () => {
    findPrereqs();
    const vsix = await ensureVsix();
    work = await mkdtemp(join(tmpdir(), 'opt-e2e-heads-'));
    cacheDir = join(work, 'onnx-cache');
    models.classifier = join(work, 'review-classifier');
    models.qa = join(work, 'museum-qa');
    models.lm = join(work, 'plain-lm');
    // " great" as the last token means POSITIVE (logit 2.5 over 0: 92.4%), " awful" NEGATIVE.
    await writeScriptedClassifier(models.classifier, {
      seed: 11,
      labels: [
        ['NEGATIVE', ' awful'],
        ['POSITIVE', ' great'],
      ],
      logit: 2.5,
    });
    // Answers start on " Paris" and end on "yon" (of "Lyon" after a line break).
    await writeScriptedQa(models.qa, { seed: 12, start: ' Paris', end: 'yon', logit: 6 });
    await writeOptCheckpoint(models.lm, { seed: 13, tokenizer: true, config: { max_position_embeddings: 256 } });
    session = await VsCodeSession.start({
      name: 'heads',
      vsix: [vsix],
      extensionId: EXTENSION_ID,
      activation: { channel: 'OPT Complete', pattern: /\bactivated\s*$/m },
      files: { 'reviews.txt': REVIEWS, 'museums.txt': MUSEUMS, 'notes.txt': 'Some notes\n' },
      settings: {
        'optComplete.model': models.classifier,
        'optComplete.dtype': DTYPE,
        'optComplete.device': 'cpu',
        'optComplete.cacheDir': cacheDir,
        'optComplete.runtime.startup': 'onStartup',
      },
    });
  });

  after(async () => {
    if (session) {
      await session.stop();
      assert.deepEqual(session.leftoverProcesses(), [], 'processes of the run left behind');
    }
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('a classifier loads: the status bar says what it is, ghost text stays quiet, Generate names the checkpoint it needs', async () => {
    await part('classifier-status', async () => {
      const s = await waitFor(
        'the classifier to be ready',
        async () => {
          const x = await state();
          return x.runtime.state === 'ready' ? x : undefined;
        },
        180_000,
        250,
      );
      assert.equal(s.runtime.detail.info?.architecture, 'OPTForSequenceClassification');
      assert.ok(s.heads.tasks?.includes('classify') && !s.heads.tasks.includes('generate'), `tasks: ${JSON.stringify(s.heads.tasks)}`);
      const item = session.page.locator('#workbench\\.parts\\.statusbar [aria-label="OPT Complete: ready"]').first();
      await item.waitFor({ state: 'visible', timeout: 30_000 });
      assert.match(await item.innerText(), /review-classifier \(OPT classifier\)/);

      // Typing asks for no completion and shows no error.
      await session.openFile('notes.txt');
      await session.cursorToEnd();
      await session.press('ArrowUp');
      await session.press('End');
      await session.type(' about the trip');
      await sleep(2_500);
      const after = await state();
      assert.equal(after.inline.counters.errors, 0, `inline counters: ${JSON.stringify(after.inline.counters)}`);
      assert.equal(after.inline.counters.engineCalls, 0, 'no completion request reaches the runtime');
      assert.equal(await session.ghostText(), null);
      assert.deepEqual(
        (await session.notifications()).filter((n) => /fail|error/i.test(n)),
        [],
        'no error notification',
      );
      assert.equal(after.statusBar.kind, 'ready');
      await session.screenshot('classifier-status');

      // Generate Text says which model it needs, before asking for a prompt.
      await session.runFromPalette(label(Commands.generate));
      const warning = toast('needs an OPTForCausalLM checkpoint');
      await warning.waitFor({ state: 'visible', timeout: 15_000 });
      assert.match(
        await warning.innerText(),
        /Completing and generating text needs an OPTForCausalLM checkpoint; review-classifier is an OPTForSequenceClassification \(an OPT classifier\)/,
      );
      await warning.getByRole('button', { name: 'Choose Model…' }).waitFor({ state: 'visible', timeout: 5_000 });
      await noInputBox('no prompt was asked for');
      await session.screenshot('classifier-generate-refused');
      await clearNotifications();
    });
  });

  it('"Classify Selection" lists every label with its score, best first, exactly as the runtime computes them', async () => {
    await part('classify', async () => {
      await session.openFile('reviews.txt');
      const line0 = REVIEWS.split('\n')[0]!;
      await session.select({ line: 0, character: 0 }, { line: 0, character: line0.length });
      await session.runFromPalette(label(Commands.classifySelection));
      const rows = await quickPickRows(2);
      await session.screenshot('classify-selection');
      const expected = await cli<ClassifyResult>('classify', '--model', models.classifier, line0);
      assert.equal(expected.labels[0]!.label, 'POSITIVE', `the scripted outcome: ${JSON.stringify(expected)}`);
      assert.ok(
        Math.abs(expected.labels[0]!.score - 1 / (1 + Math.exp(-2.5))) < 1e-3,
        `POSITIVE at about 92.4%: ${expected.labels[0]!.score}`,
      );
      const s = await state();
      assert.equal(s.heads.classify?.status, 'classified');
      assert.deepEqual(s.heads.classify?.labels, expected.labels, 'the extension got what the CLI computes');
      assert.deepEqual(
        rows.map(([name, d]) => [name.replace(/^\s*/, ''), d]),
        expected.labels.map((l) => [l.label, formatScore(l.score)]),
        'the rows show every label and its score, best first',
      );
      const title = (await session.page.locator('.quick-input-widget .quick-input-title').innerText()).trim();
      assert.equal(title, `OPT: POSITIVE ${formatScore(expected.labels[0]!.score)}`);
      await session.press('Escape');

      // The editor's context menu offers it for a selection (the model has the head), not Generate (it has no LM head).
      // Opened from the keyboard (Shift+F10, as a keyboard user would): a right-click that lands
      // outside the selection moves the cursor and drops the selection, hiding the entry.
      await session.executeCommand('workbench.action.focusActiveEditorGroup');
      await session.select({ line: 0, character: 0 }, { line: 0, character: line0.length });
      await session.press('Shift+F10');
      const menu = session.page.locator('.context-view .monaco-menu');
      await menu.waitFor({ state: 'visible', timeout: 10_000 });
      const entries = (await menu.locator('.action-label').allInnerTexts()).map((t) => t.trim()).filter(Boolean);
      await session.screenshot('classify-context-menu');
      const editorNow = await session.bridge('editor');
      await session.press('Escape');
      assert.ok(entries.includes('Classify Selection'), `context menu: ${JSON.stringify(entries)}; editor: ${JSON.stringify(editorNow)}`);
      assert.ok(
        !entries.includes('Generate Text…') && !entries.includes('Answer a Question About the Selection'),
        `context menu: ${JSON.stringify(entries)}`,
      );

      // Nothing selected: the current line.
      await session.select({ line: 1, character: 4 });
      await session.runFromPalette(label(Commands.classifySelection));
      const rows2 = await quickPickRows(2);
      await session.screenshot('classify-line');
      const expected2 = await cli<ClassifyResult>('classify', '--model', models.classifier, REVIEWS.split('\n')[1]!);
      assert.equal(expected2.labels[0]!.label, 'NEGATIVE');
      assert.deepEqual((await state()).heads.classify?.labels, expected2.labels);
      assert.deepEqual(
        rows2.map(([name, d]) => [name.trim(), d]),
        expected2.labels.map((l) => [l.label, formatScore(l.score)]),
      );
      await session.press('Escape');
      assert.equal(await session.documentText(), REVIEWS, 'the document is untouched');
    });
  });

  it('"Answer a Question About the Selection" selects and highlights the answer across a CRLF line break, with its score', async () => {
    await part('answer', async () => {
      const s0 = await useModel(models.qa, 'OPTForQuestionAnswering');
      assert.ok(s0.heads.tasks?.includes('answer'));
      await session.page
        .locator('#workbench\\.parts\\.statusbar [aria-label="OPT Complete: ready"]', { hasText: 'OPT question answering' })
        .first()
        .waitFor({ state: 'visible', timeout: 30_000 });
      await session.openFile('museums.txt');
      const before = await session.documentText();
      assert.equal(before, MUSEUMS, 'the file keeps its CRLF line breaks');
      // Lines 2–3 (zero-based 1–2) as the context.
      const lines = MUSEUMS.split('\r\n');
      await session.select({ line: 1, character: 0 }, { line: 2, character: lines[2]!.length });
      await session.runFromPalette(label(Commands.answerQuestion));
      await session.answerInputBox(QUESTION);
      const s = await waitFor(
        'the answer',
        async () => {
          const x = await state();
          return x.heads.answer && x.heads.answer.status !== 'cancelled' ? x : undefined;
        },
        60_000,
        200,
      );
      await session.screenshot('answer-highlighted');
      const answer = s.heads.answer!;
      assert.equal(answer.status, 'answered', JSON.stringify(answer));
      const context = `${lines[1]}\n${lines[2]}`;
      const expected = await cli<AnswerResult>('answer', '--model', models.qa, '--question', QUESTION, '--context', context);
      assert.deepEqual(answer.answer, expected.answers[0], 'the extension got what the CLI computes');
      assert.equal(expected.answers[0]!.text.trim(), 'Paris and\nLyon', `the scripted answer: ${JSON.stringify(expected)}`);

      // Where it shows: from "Paris" on line 2 to "Lyon" on line 3 (the CLI's leading space, BPE's, not highlighted).
      const start = { line: 1, character: 'The museums of '.length };
      const end = { line: 2, character: 'Lyon'.length };
      const editor = (await session.editor())!;
      assert.deepEqual(
        editor.selections.map((x) => [x.start, x.end]),
        [[start, end]],
        'the answer is selected',
      );
      assert.deepEqual(answer.highlighted, { start, end, text: 'Paris and\r\nLyon' });
      assert.deepEqual(
        s.heads.highlighted && { start: s.heads.highlighted.start, end: s.heads.highlighted.end },
        { start, end },
        'the decoration marks the same span',
      );
      assert.ok(s.heads.highlighted!.uri.endsWith('museums.txt'));
      await session.waitForCursor(end);
      const note = toast('OPT answer:');
      await note.waitFor({ state: 'visible', timeout: 15_000 });
      assert.match(
        await note.innerText(),
        new RegExp(`OPT answer: "Paris and Lyon" \\(score ${formatScore(expected.answers[0]!.score).replace(/[.%]/g, '\\$&')}, line 2\\)`),
      );
      assert.equal(await session.documentText(), before, 'the document is untouched');
      await clearNotifications();

      // Editing the document removes the highlight (it would no longer be the model's answer).
      await session.focusEditor();
      await session.press('End');
      await session.type('!');
      await waitFor('the highlight to go', async () => !(await state()).heads.highlighted, 10_000, 100);
      await session.press('Backspace');
    });
  });

  it('on a causal LM, both commands name the checkpoint type they need and offer "Choose Model…" (also before it loads)', async () => {
    await part('wrong-model', async () => {
      await useModel(models.lm, 'OPTForCausalLM');
      await session.openFile('reviews.txt');
      await session.select({ line: 0, character: 0 }, { line: 0, character: 10 });
      await session.runFromPalette(label(Commands.classifySelection));
      const warning = toast('needs an OPTForSequenceClassification checkpoint');
      await warning.waitFor({ state: 'visible', timeout: 15_000 });
      assert.match(
        await warning.innerText(),
        /Classifying text needs an OPTForSequenceClassification checkpoint; plain-lm is an OPTForCausalLM \(an OPT language model\)\./,
      );
      await session.screenshot('classify-needs-classifier');
      await warning.getByRole('button', { name: 'Choose Model…' }).click();
      const picker = session.page.locator('.quick-input-widget', { hasText: 'OPT: Choose Model' });
      await picker.waitFor({ state: 'visible', timeout: 15_000 });
      await session.screenshot('choose-model-offered');
      await session.press('Escape');
      await clearNotifications();

      await session.runFromPalette(label(Commands.answerQuestion));
      const warning2 = toast('needs an OPTForQuestionAnswering checkpoint');
      await warning2.waitFor({ state: 'visible', timeout: 15_000 });
      assert.match(
        await warning2.innerText(),
        /Answering questions needs an OPTForQuestionAnswering checkpoint; plain-lm is an OPTForCausalLM/,
      );
      await noInputBox('no question was asked for');
      await clearNotifications();

      // Before the model is loaded its type is not known: the runtime starts, and the same message comes.
      await session.runFromPalette(label(Commands.stopRuntime));
      await waitFor('the runtime to stop', async () => (await state()).runtime.state === 'stopped', 30_000, 200);
      await session.runFromPalette(label(Commands.classifySelection));
      await toast('needs an OPTForSequenceClassification checkpoint').waitFor({ state: 'visible', timeout: 120_000 });
      const s = await state();
      assert.equal(s.heads.classify?.status, 'wrong-model', JSON.stringify(s.heads.classify));
      assert.equal(s.runtime.state, 'ready');
      await session.screenshot('classify-needs-classifier-after-load');
      assert.equal(await session.documentText(), REVIEWS, 'the document is untouched');
    });
  });
});
