// Rewrite templates for a base model: the built-in few-shot prompts, user templates from settings
// (checked, overriding built-ins by id), and reading the result out of what the model generated.
// With a fixture model, a rewrite prompt runs through the runtime and stops at the template's marker.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { LocalRuntimeEngine } from '../../extension/src/engines/localRuntimeEngine.js';
import { memoryLogger } from '../../extension/src/logger.js';
import {
  DEFAULT_TEMPLATES,
  type RewriteTemplate,
  buildRewritePrompt,
  extractRewrite,
  resolveTemplates,
  rewriteTokenBudget,
} from '../../extension/src/rewrite/rewriteTemplates.js';
import { RuntimeSupervisor } from '../../extension/src/runtimeSupervisor.js';
import { writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { tempDir } from '../helpers/decoderHarness.js';
import { sourceLaunch } from '../helpers/runtimeProcess.js';

const improve = DEFAULT_TEMPLATES.find((t) => t.id === 'improve')!;
const cont = DEFAULT_TEMPLATES.find((t) => t.id === 'continue')!;

describe('built-in templates', () => {
  test('improve, shorten, grammar, formal and continue; each prompt has one {{text}} and ends where the model writes', () => {
    assert.deepEqual(
      DEFAULT_TEMPLATES.map((t) => t.id),
      ['improve', 'shorten', 'grammar', 'formal', 'continue'],
    );
    for (const t of DEFAULT_TEMPLATES) {
      assert.equal(t.prompt.split('{{text}}').length, 2, t.id);
      assert.ok(t.stop.length > 0, t.id);
      if (t.mode === 'replace') {
        // Few-shot: at least two worked examples, each closed by the stop marker, and the prompt ends on an open delimiter.
        assert.ok(t.prompt.split(t.stop).length - 1 >= 3, `${t.id}: examples closed by ${t.stop}`);
        assert.ok(t.prompt.endsWith('<<<\n'), t.id);
      }
    }
  });

  test('the prompt holds the text trimmed, between the delimiters', () => {
    const prompt = buildRewritePrompt(improve, '  teh cat sat  \n');
    assert.ok(prompt.endsWith('Original:\n<<<\nteh cat sat\n>>>\nImproved:\n<<<\n'));
    assert.equal(buildRewritePrompt(cont, 'Once upon a time'), 'Once upon a time');
  });

  test('the token budget follows the text length within bounds', () => {
    assert.equal(rewriteTokenBudget('', 512), 16);
    assert.equal(rewriteTokenBudget('x'.repeat(300), 512), 216);
    assert.equal(rewriteTokenBudget('x'.repeat(30_000), 512), 512);
  });
});

describe('reading the result', () => {
  test("the text before the stop marker, with the original's surrounding whitespace", () => {
    assert.deepEqual(extractRewrite(improve, '  teh cat sat\n', 'The cat sat.\n>>>\n\nOriginal: more', true), {
      ok: true,
      text: '  The cat sat.\n',
    });
    assert.deepEqual(extractRewrite(improve, 'a', '\n\nA.\n>>>', true), { ok: true, text: 'A.' });
  });

  test('multi-line rewrites keep their inner line breaks', () => {
    const r = extractRewrite(improve, 'line one\nline two', 'Line one.\nLine two.\n>>>', true);
    assert.deepEqual(r, { ok: true, text: 'Line one.\nLine two.' });
  });

  test('refused: cut off before the marker, empty, or unchanged', () => {
    assert.match((extractRewrite(improve, 'x', 'The start of a long', false) as { reason: string }).reason, /did not finish/);
    assert.deepEqual(extractRewrite(improve, 'x', 'ended by eos', true), { ok: true, text: 'ended by eos' });
    assert.match((extractRewrite(improve, 'x', '   \n>>>', true) as { reason: string }).reason, /no text/);
    assert.match((extractRewrite(improve, 'Same.', 'Same.\n>>>', true) as { reason: string }).reason, /no changes/);
  });

  test('continue appends to the selection and may be cut by the token limit', () => {
    assert.deepEqual(extractRewrite(cont, 'Once upon a time\n', ' there was a fox.\n\nNext paragraph', true), {
      ok: true,
      text: 'Once upon a time there was a fox.\n',
    });
    assert.deepEqual(extractRewrite(cont, 'Once', ' upon a', false), { ok: true, text: 'Once upon a' });
  });
});

describe('user templates from settings', () => {
  const mine: RewriteTemplate = { id: 'pirate', label: 'Pirate', prompt: 'Say it like a pirate:\n{{text}}\nPirate:', stop: '\n' };

  test('absent: the built-ins; a list: its valid entries; a user id overrides', () => {
    assert.equal(resolveTemplates(undefined).templates.length, DEFAULT_TEMPLATES.length);
    const r = resolveTemplates([...DEFAULT_TEMPLATES, mine, { ...improve, label: 'Better' }]);
    assert.deepEqual(r.problems, []);
    assert.equal(r.templates.find((t) => t.id === 'improve')?.label, 'Better');
    assert.equal(r.templates.find((t) => t.id === 'pirate')?.mode, 'replace');
  });

  test('invalid entries are named and skipped; nothing valid falls back to the built-ins', () => {
    const r = resolveTemplates([
      mine,
      { id: 'x', prompt: 'no placeholder', stop: '#' },
      { id: 'y', prompt: '{{text}}', stop: '' },
      { prompt: '{{text}}', stop: '#' },
      'junk',
      { id: 'z', prompt: '{{text}}', stop: '#', mode: 'sideways' },
    ]);
    assert.deepEqual(
      r.templates.map((t) => t.id),
      ['pirate'],
    );
    assert.equal(r.problems.length, 5);
    assert.match(r.problems[0]!, /\[1\] \("x"\) needs a "prompt" containing \{\{text\}\}/);
    const none = resolveTemplates([{ id: 'bad' }]);
    assert.equal(none.templates.length, DEFAULT_TEMPLATES.length);
    assert.equal(none.problems.length, 1);
    assert.match(resolveTemplates('nope').problems[0]!, /must be a list/);
  });
});

describe('rewrite through the runtime', { timeout: 60_000 }, () => {
  const tmp = tempDir('ext-rewrite');
  after(() => tmp.remove());

  test('a rewrite request stops at the marker as soon as it appears', async () => {
    const dir = (await writeOptCheckpoint(join(tmp.path, 'model'), { seed: 9, tokenizer: true, config: { max_position_embeddings: 512 } }))
      .dir;
    const supervisor = new RuntimeSupervisor({
      launch: sourceLaunch,
      init: () => ({ model: dir, dtype: 'fp32', cacheDir: join(tmp.path, 'cache') }),
      log: memoryLogger(),
    });
    try {
      const engine = new LocalRuntimeEngine(supervisor);
      const prompt = buildRewritePrompt(improve, 'teh cat');
      // A random model writes word salad; any frequent string stands in for the marker.
      const probe = await engine.run({ kind: 'rewrite', prompt, options: { max_new_tokens: 12 } });
      const marker = probe.text.slice(2, 4);
      const r = await engine.run(
        { kind: 'rewrite', prompt, options: { max_new_tokens: 12, stop_strings: [marker] } },
        { onText: (_d, soFar) => soFar.includes(marker) },
      );
      assert.ok(r.text.includes(marker));
      assert.ok(r.text.length <= probe.text.length);
      const out = extractRewrite({ ...improve, stop: marker }, 'teh cat', r.text, r.finishReason !== 'length');
      assert.ok(out.ok || /no text|no changes/.test(out.reason));
    } finally {
      await supervisor.dispose();
    }
  });
});
