// End-to-end: ghost text from the trained target (test/fixtures/trained/opt-target, an OPT model
// trained on this project's machines on code and prose) in real VS Code (code-server + headless
// Chromium, see harness.ts), on a held-out Python file it was never trained on. At each cursor the
// suggestion VS Code shows is what `opt generate` greedy-decodes for the same prefix at the same
// precision (run from source on the same checkpoint), cut to its first line as the single-line
// policy does mid-line, and it is code; with prompt lookup drafting (the default) and with the
// trained draft as the assistant model, neither of which may change the text.
//
// Prerequisites: `bash scripts/e2e-setup.sh`, and the held-out file with the hash recorded beside
// the model (Debian's python3.11 standard library). Environment as extension.test.ts.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { Commands } from '../../extension/src/commandIds.js';
import { REPO_ROOT, VsCodeSession, ensureVsix, findPrereqs, step, waitFor } from './harness.js';
import { E2E_DTYPE, EXTENSION_ID } from './manifest.js';

const run = promisify(execFile);
const DTYPE = E2E_DTYPE;
const TARGET = join(REPO_ROOT, 'test', 'fixtures', 'trained', 'opt-target');
const HELD_OUT = '/usr/lib/python3.11/asyncio/locks.py';
const MAX_NEW_TOKENS = 16;

/**
 * Cursors in the held-out file: the document holds the file up to `line` (0-based) and that line's
 * first `column` characters less the last `typed` ones, which the test types to trigger the request.
 */
const CURSORS = [
  { line: 90, column: 23, typed: 'lo' }, // "        return self._lo|"
  { line: 103, column: 20, typed: 'wai' }, // "        if self._wai|"
];

interface DebugState {
  runtime: { state: string; detail: { info?: { modelId?: string; dtype?: string; assistant?: { dir: string } } } };
  inline: { last?: { text?: string; line: number; character: number; multiline: boolean; promptTokens?: number; source: string } };
}

/** The held-out file, checked against the hash recorded beside the model (so it is the one never trained on). */
function heldOutText(): string {
  const entry = readFileSync(join(TARGET, 'heldout.txt'), 'utf8')
    .split('\n')
    .map((l) => l.split('\t'))
    .find((f) => f[3] === HELD_OUT);
  assert.ok(entry, `${HELD_OUT} is listed in ${TARGET}/heldout.txt`);
  assert.ok(existsSync(HELD_OUT), `${HELD_OUT} is missing: this test needs Debian's python3.11 (apt-get install python3.11-minimal)`);
  const text = readFileSync(HELD_OUT, 'utf8');
  assert.equal(
    createHash('sha256').update(text).digest('hex'),
    entry[2],
    `${HELD_OUT} differs from the held-out file the model was checked against`,
  );
  return text;
}

/** A line of Python code: identifiers, numbers, strings, operators and brackets, no prose. */
const looksLikeCode = (s: string) =>
  /[A-Za-z_]/.test(s) && /^[\w.()[\]{}:,'"=+\-*/%<>!&|@ ]+$/.test(s) && !/\b[a-z]+ [a-z]+ [a-z]+\b/.test(s);

/**
 * Ghost text drafted two ways, each compared with plain greedy `opt generate`: prompt lookup (the
 * default) and the trained draft as the assistant model (optComplete.assistantModel).
 */
const DRAFT = join(REPO_ROOT, 'test', 'fixtures', 'trained', 'opt-draft');
const DRAFTING = [
  { key: 'lookup', name: 'prompt lookup', settings: {}, assistant: undefined },
  { key: 'assistant', name: 'drafted by opt-draft', settings: { 'optComplete.assistantModel': DRAFT }, assistant: DRAFT },
];

for (const drafting of DRAFTING) {
  describe(`ghost text from the trained target on held-out code, ${drafting.name} (code-server, ${DTYPE})`, { timeout: 900_000 }, () => {
    let session: VsCodeSession;
    let work = '';
    let source = '';
    const files: Record<string, string> = {};

    const state = () => session.executeCommand<DebugState>(Commands.debugState);
    const part = (name: string, body: () => Promise<void>) => step(session, state, name, body);

    /** `opt generate` from source, greedy, on the same checkpoint and precision: the text after the prompt. */
    async function greedy(prompt: string): Promise<string> {
      const { stdout } = await run(
        process.execPath,
        [
          '--import',
          'tsx',
          'runtime/src/cli.ts',
          'generate',
          '--model',
          TARGET,
          '--dtype',
          DTYPE,
          '--device',
          'cpu',
          '--cache-dir',
          join(work, 'cli-cache'),
          '--max-new-tokens',
          String(MAX_NEW_TOKENS),
          '--json',
          '--',
          prompt,
        ],
        { cwd: REPO_ROOT, timeout: 120_000, maxBuffer: 16 << 20 },
      );
      const [row] = JSON.parse(stdout) as { generated_text: string }[];
      assert.ok(row!.generated_text.startsWith(prompt), 'generate --json returns the prompt and its continuation');
      return row!.generated_text.slice(prompt.length);
    }

    async function promptTokens(text: string): Promise<number> {
      const { stdout } = await run(
        process.execPath,
        ['--import', 'tsx', 'runtime/src/cli.ts', 'tokenize', '--model', TARGET, '--text', text],
        {
          cwd: REPO_ROOT,
          timeout: 60_000,
          maxBuffer: 16 << 20,
        },
      );
      return (JSON.parse(stdout) as { ids: number[] }).ids.length;
    }

    before(async () => {
      findPrereqs();
      source = heldOutText();
      const lines = source.split('\n');
      for (const [i, c] of CURSORS.entries()) {
        const upTo = [...lines.slice(0, c.line), lines[c.line]!.slice(0, c.column - c.typed.length)].join('\n');
        files[`held-out-${i}.py`] = upTo;
      }
      const vsix = await ensureVsix();
      work = await mkdtemp(join(tmpdir(), `opt-e2e-trained-${drafting.key}-`));
      session = await VsCodeSession.start({
        name: `trained-${drafting.key}`,
        vsix: [vsix],
        extensionId: EXTENSION_ID,
        activation: { channel: 'OPT Complete', pattern: /\bactivated\s*$/m },
        files,
        settings: {
          'optComplete.model': TARGET,
          'optComplete.dtype': DTYPE,
          'optComplete.device': 'cpu',
          'optComplete.cacheDir': join(work, 'onnx-cache'),
          'optComplete.inline.maxNewTokens': MAX_NEW_TOKENS,
          // The whole prefix is the prompt, as `opt generate` gets it: no cut by characters or tokens.
          'optComplete.inline.maxContextChars': 200_000,
          'optComplete.inline.maxContextTokens': 2000,
          'optComplete.runtime.startup': 'onStartup',
          ...drafting.settings,
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

    for (const [i, c] of CURSORS.entries()) {
      it(`line ${c.line + 1}: the suggestion is opt generate's greedy text for the prefix, and it is code`, async () => {
        await part(`trained-ghost-${drafting.key}-${i}`, async () => {
          await session.openFile(`held-out-${i}.py`);
          await session.cursorToEnd();
          await waitFor(
            'the trained target to be ready',
            async () => ((await state()).runtime.state === 'ready' ? true : undefined),
            180_000,
            250,
          );
          const before = (await state()).inline.last;
          await session.type(c.typed);
          const prefix = files[`held-out-${i}.py`]! + c.typed;
          const record = await waitFor(
            'a suggestion at the typed cursor, shown as ghost text',
            async () => {
              const last = (await state()).inline.last;
              const ghost = await session.ghostText();
              if (!last?.text || last === before || last.line !== c.line || last.character !== c.column || !ghost) return undefined;
              return ghost.inline === last.text.split('\n')[0] ? last : undefined;
            },
            120_000,
            200,
          );
          await session.screenshot(`trained-ghost-${drafting.key}-${i}`);
          const expected = await greedy(prefix);
          const firstLine = expected.split('\n')[0]!;
          assert.equal(record.multiline, false, 'mid-line: a single-line suggestion');
          assert.equal(record.promptTokens, await promptTokens(prefix), 'the runtime ran the whole prefix, as opt generate did');
          assert.equal(record.text, firstLine.trimEnd(), `shown ${JSON.stringify(record.text)}; opt generate: ${JSON.stringify(expected)}`);
          assert.ok(looksLikeCode(record.text!), `a line of code, not prose: ${JSON.stringify(record.text)}`);
          process.stderr.write(
            `[e2e] ${JSON.stringify(source.split('\n')[c.line]!.slice(0, c.column))} → ${JSON.stringify(record.text)} (the file has ${JSON.stringify(source.split('\n')[c.line]!.slice(c.column))})\n`,
          );
        });
      });
    }
  });
}
