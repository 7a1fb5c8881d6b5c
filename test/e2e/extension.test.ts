// End-to-end tests of the packaged extension (opt-complete-linux-x64.vsix, built by `npm run
// package` when missing or older than the sources) in real VS Code: code-server 4.139.1 driven
// through headless Chromium (see harness.ts). The model is the fixture generator's OPT checkpoint
// with "scripted" weights (scriptedModel.ts): a real OPT graph run by the real runtime whose greedy
// text is known — "Hello" → ' world")' (so the model re-types the ")" after the cursor), a new line
// → "- three" lines, anything else → " one two one two …". Screenshots of each state go to
// test-artifacts/e2e/.
//
// Prerequisites: `bash scripts/e2e-setup.sh`. Environment: OPT_E2E_DTYPE (int8 | fp32, default
// int8), OPT_E2E_VSIX (use this VSIX), OPT_E2E_KEEP=1 (keep the run folder), OPT_E2E_CACHE.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { Commands } from '../../extension/src/commandIds.js';
import { type GhostText, VsCodeSession, alive, cmdlineOf, ensureVsix, findPrereqs, parentPid, step, waitFor } from './harness.js';
import { E2E_DTYPE, EXTENSION_ID, label, title } from './manifest.js';
import { writeScriptedOpt } from './scriptedModel.js';
import type { InlineCounters } from '../../extension/src/debugState.js';

const DTYPE = E2E_DTYPE;

// What optComplete.debug.state returns (the parts the tests read).
interface InlineRecord {
  text?: string;
  replaceSuffix: number;
  multiline: boolean;
  line: number;
  character: number;
  source: string;
  promptTokens?: number;
  reusedTokens?: number;
}
interface WarmRecord {
  uri: string;
  line: number;
  character: number;
  promptTokens?: number;
  reusedTokens?: number;
  cancelled?: boolean;
  error?: string;
}
interface DebugState {
  runtime: {
    state: string;
    pid?: number;
    detail: { kind: string; info?: { dtype?: string; device?: string; modelId?: string } };
    counters: { starts: number; crashes: number; restarts: number };
    lastExit?: unknown;
  };
  statusBar: { kind: string; text: string };
  inline: { counters: InlineCounters; last?: InlineRecord; warm?: WarmRecord };
  generate: { busy?: string; last?: { inserted: string; tokens: number; cancelled: boolean; stopReason?: string; finishReason?: string } };
  rewrite: { pending?: { proposed: string; original: string }; last?: { status: string; proposed?: string; original?: string } };
  settings: Record<string, unknown>;
}

const FILES: Record<string, string> = {
  'story.txt': 'The old lighthouse keeper climbed the stairs every night.\n',
  'call.py': 'print()\n',
  'generate.txt': 'Story:\n',
  'rewrite.txt': 'the meeting is moved to thursday\nplease bring the slides\n',
  'restart.txt': 'After the storm the village was quiet.\n',
  'list.md': 'Groceries:\n',
  'settings.txt': 'The train left the station at dawn.\n',
  // Long enough that its prefill is most of a first completion's work; within the inline context (4,000 characters, 768 tokens), so typing does not move where the prompt is cut.
  'long.txt':
    Array.from({ length: 36 }, (_, i) => `Entry ${i}: the harbour master logged every ship that came in before sunrise.`).join('\n') + '\n',
};

/**
 * What VS Code shows as ghost text for a suggestion that replaces `echoed` (the text after the
 * cursor it covers): the suggestion less the characters that match `echoed`, matched from the right.
 */
function insertedPart(text: string, echoed: string): string {
  const out = [...text];
  let j = echoed.length - 1;
  for (let i = out.length - 1; i >= 0 && j >= 0; i--) {
    if (out[i] === echoed[j]) {
      out.splice(i, 1);
      j--;
    }
  }
  return out.join('');
}

describe(`OPT Complete in VS Code (code-server, ${DTYPE})`, { timeout: 1_200_000 }, () => {
  let session: VsCodeSession;
  let work = '';
  const timings: Record<string, number> = {};

  const state = () => session.executeCommand<DebugState>(Commands.debugState);

  const part = (name: string, body: () => Promise<void>) => step(session, state, name, body, timings);

  /** Waits until the runtime is ready; returns the state. */
  const runtimeReady = (timeoutMs = 180_000) =>
    waitFor(
      'the runtime to be ready',
      async () => {
        const s = await state();
        return s.runtime.state === 'ready' ? s : undefined;
      },
      timeoutMs,
      250,
    );

  /**
   * Types at the cursor, then waits until ghost text shows and agrees with the extension's record
   * of the suggestion it returned (read through the bridge: no focus change). Returns both.
   */
  async function typeAndGetSuggestion(text: string, timeoutMs: number): Promise<{ record: InlineRecord; ghost: GhostText }> {
    await session.type(text);
    let seen = '';
    try {
      return await waitFor(
        "ghost text matching the extension's record",
        async () => {
          const ghost = await session.ghostText();
          const record = (await state()).inline.last;
          seen = JSON.stringify({ ghost, record });
          if (!ghost || !record?.text) return undefined;
          const firstLine = record.text.split('\n')[0]!;
          const lineText = (await session.documentText()).split('\n')[record.line] ?? '';
          const echoed = lineText.slice(record.character, record.character + record.replaceSuffix);
          return ghost.inline === insertedPart(firstLine, echoed) ? { record, ghost } : undefined;
        },
        timeoutMs,
        100,
      );
    } catch (err) {
      if (err instanceof Error) err.message += `\nlast seen: ${seen}`;
      throw err;
    }
  }

  before(async () => {
    findPrereqs(); // a clear error naming scripts/e2e-setup.sh when something is missing
    const t0 = Date.now();
    const vsix = await ensureVsix();
    timings.vsix = Date.now() - t0;
    work = await mkdtemp(join(tmpdir(), 'opt-e2e-model-'));
    const model = join(work, 'scripted-opt');
    // Hidden size 256 and 4 layers: 2048 generated tokens take seconds (so cancelling is
    // observable); 4096 positions: the prompt plus 2048 new tokens fit.
    await writeScriptedOpt(model, {
      seed: 7,
      hiddenSize: 256,
      layers: 4,
      maxPositions: 4096,
      fallback: ' one',
      bigrams: [
        ['Hello', ' world'],
        [' world', '")'],
        ['")', '\n'],
        ['\n', '-'],
        ['-', ' three'],
        [' three', '\n'],
        [' one', ' two'],
        [' two', ' one'],
      ],
    });
    timings.fixture = Date.now() - t0 - timings.vsix;
    session = await VsCodeSession.start({
      name: 'extension',
      vsix: [vsix],
      extensionId: EXTENSION_ID,
      activation: { channel: 'OPT Complete', pattern: /\bactivated\s*$/m },
      files: FILES,
      settings: {
        'optComplete.model': model,
        'optComplete.dtype': DTYPE,
        'optComplete.device': 'cpu',
        'optComplete.cacheDir': join(work, 'onnx-cache'),
        'optComplete.generation.maxNewTokens': 2048,
        'optComplete.generation.seed': 1,
      },
    });
    Object.assign(timings, Object.fromEntries(Object.entries(session.timings).map(([k, v]) => [`session.${k}`, v])));
    process.stderr.write(`[e2e] VS Code session up: ${JSON.stringify(timings)}\n`);
  });

  after(async () => {
    process.stderr.write(`[e2e] timings (ms): ${JSON.stringify(timings)}\n`);
    if (session) {
      await session.stop();
      const runtimes = session.orphans.filter((o) => /cli\.js rpc/.test(o.cmdline));
      assert.deepEqual(session.leftoverProcesses(), [], 'processes of the run left behind');
      if (runtimes.length > 0) process.stderr.write(`[e2e] note: runtime processes outlived code-server: ${JSON.stringify(runtimes)}\n`);
    }
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('the status bar item reaches "ready" once the model is loaded', async () => {
    await part('status-ready', async () => {
      await session.openFile('story.txt');
      const initial = await state();
      assert.notEqual(initial.statusBar.kind, 'error', `status bar in error before use: ${initial.statusBar.text}`);
      await session.screenshot('status-before-start');
      await session.runFromPalette(label(Commands.startRuntime));
      const item = session.page.locator('#workbench\\.parts\\.statusbar [aria-label="OPT Complete: ready"]').first();
      await item.waitFor({ state: 'visible', timeout: 180_000 });
      const s = await runtimeReady(30_000);
      assert.equal(s.statusBar.kind, 'ready');
      assert.ok(s.runtime.pid, 'a runtime pid once ready');
      // The item names the model folder.
      assert.match(await item.innerText(), /scripted-opt/);
      await session.screenshot('status-ready');
    });
  });

  it('typing shows ghost text, and Tab inserts exactly what was shown', async () => {
    await part('ghost-text', async () => {
      await session.openFile('story.txt');
      const line = 'The old lighthouse keeper climbed the stairs every night.';
      await session.select({ line: 0, character: line.length });
      const before = await session.documentText();
      const { record, ghost } = await typeAndGetSuggestion(' He', 60_000);
      await session.screenshot('ghost-text');
      assert.match(record.text!, /^( one two)+( one)?$/, 'the scripted continuation');
      assert.equal(record.replaceSuffix, 0, 'nothing follows the cursor, so nothing is replaced');
      assert.equal(ghost.inline, record.text);
      assert.deepEqual(ghost.below, []);
      assert.equal(await session.renderedGhostLine(), `${line} He${record.text}`);
      await session.press('Tab');
      const expected = before.replace('night.\n', `night. He${record.text}\n`);
      await waitFor('the suggestion in the document', async () => (await session.documentText()) === expected, 10_000).catch(
        async (err: Error) => {
          err.message += `\nexpected ${JSON.stringify(expected)}\ngot      ${JSON.stringify(await session.documentText())}`;
          throw err;
        },
      );
      await session.screenshot('ghost-text-accepted');
      const s = await state();
      assert.ok(s.inline.counters.accepted >= 1, `acceptance counted: ${JSON.stringify(s.inline.counters)}`);
    });
  });

  it('a file that becomes active is prefilled while the editor is idle, and its first completion reuses it', async () => {
    await part('warm-up', async () => {
      await session.openFile('long.txt');
      const lines = FILES['long.txt']!.split('\n');
      const last = { line: lines.length - 2, character: lines[lines.length - 2]!.length };
      await session.select(last);
      const warm = await waitFor(
        'the warm-up of long.txt at the cursor',
        async () => {
          const w = (await state()).inline.warm;
          return w?.uri.endsWith('long.txt') && w.line === last.line && w.character === last.character && w.promptTokens !== undefined
            ? w
            : undefined;
        },
        30_000,
        100,
      );
      assert.ok(warm.promptTokens! > 400, `warm-up of ${warm.promptTokens} tokens`);
      assert.equal(warm.error, undefined);
      const { record } = await typeAndGetSuggestion(' He', 60_000);
      // The first completion in the file re-ran only the tokens typed (BPE may re-merge one more).
      assert.ok(
        record.promptTokens! > warm.promptTokens! && record.reusedTokens! >= warm.promptTokens! - 2,
        JSON.stringify({ warm, record }),
      );
      await session.press('Escape');
    });
  });

  it('ghost text inside parentheses does not repeat the ")" after the cursor', async () => {
    await part('ghost-suffix', async () => {
      await session.openFile('call.py');
      await session.select({ line: 0, character: 'print('.length });
      // The model continues `print("Hello` with ` world")`: its ")" is the one already there.
      const { record, ghost } = await typeAndGetSuggestion('"Hello', 60_000);
      await session.screenshot('ghost-inside-parentheses');
      assert.equal(record.text, ' world")');
      assert.equal(record.replaceSuffix, 1, 'the suggestion covers the ")" after the cursor');
      assert.equal(ghost.inline, ' world"', 'only the new characters show as ghost text');
      assert.equal(await session.renderedGhostLine(), 'print("Hello world")', 'the line as displayed shows one ")"');
      await session.press('Tab');
      await waitFor(
        'the suggestion in the document',
        async () => (await session.documentText()) === 'print("Hello world")\n',
        10_000,
      ).catch(async (err: Error) => {
        err.message += `\ngot ${JSON.stringify(await session.documentText())}`;
        throw err;
      });
      await session.screenshot('ghost-inside-parentheses-accepted');
    });
  });

  it('on an empty line the suggestion spans several lines, shown below the cursor, and Tab inserts them all', async () => {
    await part('ghost-multiline', async () => {
      await session.openFile('list.md');
      await session.select({ line: 0, character: 'Groceries:'.length });
      const { record, ghost } = await typeAndGetSuggestion('\n', 60_000);
      await session.screenshot('ghost-multiline');
      assert.equal(record.multiline, true);
      const lines = record.text!.split('\n');
      assert.ok(lines.length >= 2 && lines.every((l) => l === '- three'), `the scripted lines: ${JSON.stringify(record.text)}`);
      assert.equal(ghost.inline, lines[0]);
      assert.deepEqual(ghost.below, lines.slice(1), 'the further lines show in a view zone below');
      await session.press('Tab');
      await waitFor(
        'the lines in the document',
        async () => (await session.documentText()) === `Groceries:\n${record.text}\n`,
        10_000,
      ).catch(async (err: Error) => {
        err.message += `\ngot ${JSON.stringify(await session.documentText())}`;
        throw err;
      });
      await session.screenshot('ghost-multiline-accepted');
    });
  });

  it('"Generate Text" streams into the document and Cancel stops it', async () => {
    await part('generate-cancel', async () => {
      await session.openFile('generate.txt');
      await session.cursorToEnd();
      const before = await session.documentText();
      await session.runFromPalette(label(Commands.generate));
      await session.answerInputBox('Once upon a time, in a small village by the sea,');
      // Streaming: the document grows at least twice.
      const lengths: number[] = [];
      await waitFor(
        'the document to grow while streaming',
        async () => {
          const n = (await session.documentText()).length;
          if (lengths.length === 0 || n !== lengths[lengths.length - 1]) lengths.push(n);
          return lengths.filter((x) => x > before.length).length >= 3;
        },
        120_000,
        50,
      );
      const toast = session.page.locator('.notifications-toasts .notification-toast', { hasText: 'Generating' }).first();
      await toast.waitFor({ state: 'visible', timeout: 10_000 });
      await session.screenshot('generate-streaming');
      const running = await state();
      assert.ok(running.generate.busy, 'the debug state shows the generation running');
      await toast.getByRole('button', { name: 'Cancel' }).click();
      const s = await waitFor(
        'the generation to stop',
        async () => {
          const x = await state();
          return x.generate.busy ? undefined : x;
        },
        15_000,
        100,
      );
      const last = s.generate.last!;
      assert.equal(last.cancelled, true, `generation recorded as cancelled: ${JSON.stringify(last)}`);
      assert.ok(last.tokens < 2048, `cancelled before the token limit (${last.tokens} tokens)`);
      const stopped = await session.documentText();
      assert.equal(stopped, before + last.inserted, 'the document holds the continuation written so far (not the prompt)');
      assert.match(last.inserted, /^( one two)*( one)?$/, 'the scripted continuation, in order');
      assert.ok(last.inserted.length > 0);
      // The document stops growing.
      await sleep(3_000);
      assert.equal((await session.documentText()).length, stopped.length, 'the document grew after Cancel');
      await toast.waitFor({ state: 'hidden', timeout: 10_000 });
      await session.screenshot('generate-cancelled');
    });
  });

  /** The notification asking whether to apply the proposed rewrite. */
  const rewriteQuestion = () => session.page.locator('.notifications-toasts .notification-toast', { hasText: 'apply "Continue"' }).first();

  /** Selects `line`, runs Rewrite Selection with the "Continue" template (an append: works on a random model), waits for the preview. */
  async function proposeRewrite(line: number): Promise<{ before: string; proposed: string; original: string }> {
    await session.openFile('rewrite.txt');
    const before = await session.documentText();
    const text = before.split('\n')[line]!;
    await session.select({ line, character: 0 }, { line, character: text.length });
    await session.runFromPalette(label(Commands.rewriteSelection));
    const row = session.page
      .locator('.quick-input-list .monaco-list-row', { has: session.page.locator('.label-name', { hasText: /^Continue$/ }) })
      .first();
    await row.waitFor({ state: 'visible', timeout: 15_000 });
    await row.click();
    const s = await waitFor('the rewrite preview', async () => (await state()).rewrite.pending, 120_000, 200);
    const shown = Date.now();
    // The diff editor and the question.
    await session.page.locator('.editor-group-container.active .monaco-diff-editor').first().waitFor({ state: 'visible', timeout: 15_000 });
    await rewriteQuestion().waitFor({ state: 'visible', timeout: 15_000 });
    // The progress notification ("OPT: Continue…", with Cancel) must not stay over the question.
    const progress = session.page.locator('.notifications-toasts .notification-toast', { hasText: 'OPT: Continue…' });
    await waitFor("the rewrite's progress notification to close", async () => (await progress.count()) === 0, 10_000, 50);
    process.stderr.write(`[e2e] rewrite progress notification closed ${Date.now() - shown} ms after the preview\n`);
    assert.equal(s.original, text);
    assert.match(s.proposed, new RegExp(`^${text}( one two)+( one)?$`), 'the selection with the scripted continuation appended');
    assert.equal(
      before,
      await session.bridge<{ text: string }[]>('documents').then((ds) => ds.find((d) => d.text.startsWith('the meeting'))?.text),
      'the document is unchanged while the preview shows',
    );
    return { before, proposed: s.proposed, original: s.original };
  }

  it('"Rewrite Selection" shows a diff preview and Accept replaces the selection', async () => {
    await part('rewrite-accept', async () => {
      const { before, proposed, original } = await proposeRewrite(0);
      await session.screenshot('rewrite-preview');
      await rewriteQuestion().getByRole('button', { name: 'Accept' }).click();
      const expected = before.replace(original, proposed);
      await waitFor(
        'the rewrite in the document',
        async () => {
          const docs = await session.bridge<{ fileName: string; text: string }[]>('documents');
          return docs.find((d) => d.fileName.endsWith('rewrite.txt'))?.text === expected;
        },
        15_000,
      );
      await waitFor(
        'the preview to close',
        async () => (await session.page.locator('.editor-group-container .monaco-diff-editor').count()) === 0,
        15_000,
      );
      const s = await state();
      assert.equal(s.rewrite.last?.status, 'accepted');
      assert.equal(s.rewrite.pending ?? undefined, undefined);
      assert.equal((await session.editor())?.fileName.endsWith('rewrite.txt'), true, 'the rewritten document is active again');
      await session.screenshot('rewrite-accepted');
    });
  });

  it('"Rewrite Selection" then Reject (diff editor title bar) leaves the document untouched', async () => {
    await part('rewrite-reject', async () => {
      const { before } = await proposeRewrite(1);
      await session.screenshot('rewrite-preview-2');
      const reject = session.page
        .locator(`.editor-group-container.active .editor-actions [aria-label="${title(Commands.rewriteReject)}"]`)
        .first();
      await reject.click({ timeout: 15_000 });
      await waitFor('the rewrite to be rejected', async () => (await state()).rewrite.last?.status === 'rejected', 15_000);
      await waitFor(
        'the preview to close',
        async () => (await session.page.locator('.editor-group-container .monaco-diff-editor').count()) === 0,
        15_000,
      );
      const docs = await session.bridge<{ fileName: string; text: string }[]>('documents');
      assert.equal(docs.find((d) => d.fileName.endsWith('rewrite.txt'))?.text, before);
      // The question toast goes away with the proposal (or answers nothing if clicked later).
      await session.screenshot('rewrite-rejected');
    });
  });

  it('"Rewrite Selection" proposes the same text with prompt lookup off (rewrite.promptLookupTokens 0) as on', async () => {
    await part('rewrite-lookup-off', async () => {
      const reject = async () => {
        await session.executeCommand(Commands.rewriteReject);
        await waitFor('the rewrite to be rejected', async () => (await state()).rewrite.last?.status === 'rejected', 15_000);
        await waitFor(
          'the preview to close',
          async () => (await session.page.locator('.editor-group-container .monaco-diff-editor').count()) === 0,
          15_000,
        );
      };
      assert.equal((await state()).settings['rewrite.promptLookupTokens'], 10, 'prompt lookup is on by default');
      const on = await proposeRewrite(1);
      await reject();
      await session.bridge('updateConfig', { section: 'optComplete', key: 'rewrite.promptLookupTokens', value: 0 });
      try {
        const off = await proposeRewrite(1);
        await reject();
        assert.equal(off.proposed, on.proposed, 'the same rewrite, with or without prompt lookup');
      } finally {
        await session.bridge('updateConfig', { section: 'optComplete', key: 'rewrite.promptLookupTokens', value: undefined });
      }
    });
  });

  it('a killed runtime is restarted and completions work again', async () => {
    await part('runtime-restart', async () => {
      const s0 = await runtimeReady(60_000);
      const pid = s0.runtime.pid!;
      assert.match(cmdlineOf(pid), /cli\.js rpc/, `pid ${pid} is the runtime`);
      process.kill(pid, 'SIGKILL');
      const s1 = await waitFor(
        'a new runtime to be ready',
        async () => {
          const s = await state();
          return s.runtime.state === 'ready' &&
            typeof s.runtime.pid === 'number' &&
            s.runtime.pid !== pid &&
            s.runtime.counters.crashes >= 1
            ? s
            : undefined;
        },
        120_000,
        250,
      );
      assert.ok(s1.runtime.counters.crashes >= 1, `the crash was counted: ${JSON.stringify(s1.runtime.counters)}`);
      const runtimes = session.leftoverProcesses().filter((p) => /cli\.js rpc/.test(cmdlineOf(p)));
      assert.deepEqual(runtimes, [s1.runtime.pid], 'exactly one runtime process');
      await session.page
        .locator('#workbench\\.parts\\.statusbar [aria-label="OPT Complete: ready"]')
        .first()
        .waitFor({ state: 'visible', timeout: 30_000 });
      await session.screenshot('runtime-restarted');
      await session.openFile('restart.txt');
      await session.cursorToEnd();
      await session.press('ArrowUp');
      await session.press('End');
      const before = await session.documentText();
      const { record } = await typeAndGetSuggestion(' Then', 60_000);
      assert.match(record.text!, /^( one two)+( one)?$/);
      await session.screenshot('ghost-after-restart');
      await session.press('Tab');
      const expected = before.replace('quiet.\n', `quiet. Then${record.text}\n`);
      await waitFor('the suggestion in the document', async () => (await session.documentText()) === expected, 10_000);
    });
  });

  it('changing optComplete.dtype restarts the runtime with the new precision', async () => {
    await part('dtype-change', async () => {
      const s0 = await runtimeReady(60_000);
      const other = DTYPE === 'fp32' ? 'int8' : 'fp32';
      await session.bridge('updateConfig', { section: 'optComplete', key: 'dtype', value: other });
      const s1 = await waitFor(
        `a runtime with ${other} weights`,
        async () => {
          const s = await state();
          return s.runtime.state === 'ready' && s.runtime.pid !== s0.runtime.pid && s.runtime.detail.info?.dtype === other ? s : undefined;
        },
        120_000,
        250,
      );
      assert.equal(alive(s0.runtime.pid!), false, 'the old runtime exited');
      await session.openFile('settings.txt');
      await session.cursorToEnd();
      await session.press('ArrowUp');
      await session.press('End');
      const before = await session.documentText();
      const { record } = await typeAndGetSuggestion(' It', 60_000);
      assert.match(record.text!, /^( one two)+( one)?$/);
      await session.screenshot(`ghost-with-${other}`);
      await session.press('Tab');
      await waitFor(
        'the suggestion in the document',
        async () => (await session.documentText()) === before.replace('dawn.\n', `dawn. It${record.text}\n`),
        10_000,
      );
      assert.equal((await state()).runtime.pid, s1.runtime.pid);
    });
  });

  // A restart the user asked for (a settings change) stops a running generation as a cancel: no
  // error notification, the stop recorded, the text written so far kept.
  it('a settings change that restarts the runtime during "Generate Text" stops it without an error', async () => {
    await part('generate-settings-restart', async () => {
      const s0 = await runtimeReady(60_000);
      await session.openFile('generate.txt');
      await session.cursorToEnd();
      const before = await session.documentText();
      await session.runFromPalette(label(Commands.generate));
      await session.answerInputBox('Once upon a time,');
      await waitFor('the document to grow', async () => (await session.documentText()).length > before.length + 20, 60_000, 50);
      const dtype = s0.runtime.detail.info?.dtype === 'fp32' ? 'int8' : 'fp32';
      await session.bridge('updateConfig', { section: 'optComplete', key: 'dtype', value: dtype });
      await waitFor(
        'the restarted runtime',
        async () => {
          const s = await state();
          return s.runtime.state === 'ready' && s.runtime.detail.info?.dtype === dtype && !s.generate.busy;
        },
        60_000,
        250,
      );
      await sleep(1_000);
      await session.screenshot('generate-settings-restart');
      const errors = (await session.notifications()).filter((n) => /failed/i.test(n));
      assert.deepEqual(errors, [], 'no error notification for a restart the user asked for');
      const s = await state();
      assert.equal(s.generate.last?.cancelled, true, `the stop is recorded: ${JSON.stringify(s.generate)}`);
      assert.equal(await session.documentText(), before + s.generate.last.inserted, 'the text written so far is kept');
    });
  });

  // Last: it takes the extension host down.
  it('the runtime exits by itself when the extension host dies', async () => {
    await part('exthost-crash', async () => {
      const s = await runtimeReady(60_000);
      const runtimePid = s.runtime.pid!;
      const host = parentPid(runtimePid)!;
      assert.match(
        cmdlineOf(host),
        /bootstrap-fork|extensionHost|--type=extensionHost/,
        `the runtime's parent ${host} is the extension host: ${cmdlineOf(host)}`,
      );
      process.kill(host, 'SIGKILL');
      await waitFor(`runtime ${runtimePid} to exit after its extension host died`, () => !alive(runtimePid), 15_000, 100);
      await session.screenshot('exthost-killed');
    });
  });
});
