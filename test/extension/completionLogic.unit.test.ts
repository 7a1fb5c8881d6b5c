// The extension's inline-completion logic without an editor: the context window, the single- and
// multi-line policy, stop sequences, block ends, trimming, the merge with the text after the
// cursor (checked against VS Code's own visibility rule), the cache, and the debouncer.

import assert from 'node:assert/strict';
import { describe, mock, test } from 'node:test';
import { clipPrefix, cursorContext, type CursorContext } from '../../extension/src/completion/contextWindow.js';
import { CompletionCache, suffixKeyOf } from '../../extension/src/completion/completionCache.js';
import { Debouncer, debounceFor, endsWord } from '../../extension/src/completion/debounce.js';
import {
  type InlinePolicy,
  completionEnded,
  cutAtStops,
  cutToBlock,
  dropRepeatedLines,
  finishCompletion,
  indentWidth,
  stopStringsFor,
  wantsMultiline,
} from '../../extension/src/completion/postprocess.js';
import { addsText, firstOuterCloser, isBalanced, mergeWithLineSuffix } from '../../extension/src/completion/suffixMerge.js';

/** A line with `|` as the cursor, and what follows it. */
function at(textWithCursor: string, maxPrefixChars = 4000): CursorContext {
  const i = textWithCursor.indexOf('|');
  assert.ok(i !== -1, 'test text needs a | cursor');
  return cursorContext(textWithCursor.slice(0, i), textWithCursor.slice(i + 1), { maxPrefixChars });
}

/** Applies a suggestion as VS Code does on accept: the range [cursor, cursor + replaceSuffix) becomes `text`. */
function accept(textWithCursor: string, s: { text: string; replaceSuffix: number }): string {
  const i = textWithCursor.indexOf('|');
  const before = textWithCursor.slice(0, i);
  const after = textWithCursor.slice(i + 1);
  return before + s.text + after.slice(s.replaceSuffix);
}

/** VS Code shows an item only if the replaced text after the cursor is a subsequence of the inserted text. */
function visibleInVsCode(lineSuffix: string, s: { text: string; replaceSuffix: number }): boolean {
  const replaced = lineSuffix.slice(0, s.replaceSuffix);
  let j = 0;
  for (const ch of s.text) if (j < replaced.length && ch === replaced[j]) j++;
  return j === replaced.length;
}

const policy = (p: Partial<InlinePolicy> = {}): InlinePolicy => ({ multiline: 'auto', maxLines: 8, stopSequences: [], ...p });

describe('context window', () => {
  test('clipPrefix keeps short text whole and cuts long text at a nearby line start', () => {
    assert.equal(clipPrefix('abc', 10), 'abc');
    assert.equal(clipPrefix('abc', 0), '');
    const text = `${'x'.repeat(100)}\nline two\nline three`;
    assert.equal(clipPrefix(text, 24), 'line two\nline three');
  });

  test('clipPrefix falls back to a word start, then to a hard cut', () => {
    assert.equal(clipPrefix('alpha beta gamma delta', 12), 'gamma delta');
    const solid = 'y'.repeat(50);
    assert.equal(clipPrefix(solid, 10), 'y'.repeat(10));
    for (const max of [1, 5, 17, 40]) assert.ok(clipPrefix(`${'word '.repeat(30)}end`, max).length <= max);
  });

  test('cursorContext splits the cursor line and reads the lines below (CRLF too)', () => {
    const c = cursorContext('first\r\nsecond li', 'ne end\r\nthird\r\nfourth', { maxPrefixChars: 100 });
    assert.equal(c.linePrefix, 'second li');
    assert.equal(c.lineSuffix, 'ne end');
    assert.deepEqual(c.nextLines, ['third', 'fourth']);
    assert.equal(c.prefix, 'first\r\nsecond li');
    const end = cursorContext('only', '', { maxPrefixChars: 100 });
    assert.equal(end.lineSuffix, '');
    assert.deepEqual(end.nextLines, []);
  });
});

describe('single- and multi-line policy', () => {
  test('auto gives several lines on a blank line only; nothing multi-line with text right of the cursor', () => {
    assert.equal(wantsMultiline('auto', at('  |')), true);
    assert.equal(wantsMultiline('auto', at('foo|')), false);
    assert.equal(wantsMultiline('always', at('foo|')), true);
    assert.equal(wantsMultiline('always', at('foo(|)')), false);
    assert.equal(wantsMultiline('never', at('|')), false);
  });

  test('stop strings: a newline ends one line, blank lines end many; user stops are added once', () => {
    assert.deepEqual(stopStringsFor(false, ['END', '\n', '']), ['\n', 'END']);
    assert.deepEqual(stopStringsFor(true, ['###']), ['\n\n\n', '###']);
    assert.equal(cutAtStops('abc###def\nghi', ['\n', '###']), 'abc');
    assert.equal(cutAtStops('abc', ['x', '']), 'abc');
  });

  test('indentWidth counts tabs to the next tab stop', () => {
    assert.equal(indentWidth('    x'), 4);
    assert.equal(indentWidth('\tx'), 4);
    assert.equal(indentWidth('  \tx'), 4);
    assert.equal(indentWidth('\t\tx', 2), 4);
    assert.equal(indentWidth('x'), 0);
  });

  test('a block ends at a line indented less than the cursor line', () => {
    const cut = cutToBlock('return a + b;\n}\n\nfunction next() {', '  ', 8);
    assert.deepEqual(cut, { lines: ['return a + b;'], ended: true });
    const nested = cutToBlock('if (x) {\n    y();\n  }\n  z();\n}', '  ', 8);
    assert.deepEqual(nested.lines, ['if (x) {', '    y();', '  }', '  z();']);
    assert.equal(nested.ended, true);
  });

  test('blank lines inside an indented block are kept; at indentation 0 a blank line ends the block', () => {
    assert.deepEqual(cutToBlock('a\n\n  b\n}', '  ', 8).lines, ['a', '', '  b']);
    assert.deepEqual(cutToBlock('The fox ran.\nIt was fast.\n\nNew paragraph', '', 8), {
      lines: ['The fox ran.', 'It was fast.'],
      ended: true,
    });
  });

  test('a line still being generated decides nothing; maxLines caps the block', () => {
    assert.deepEqual(cutToBlock('a\n  ', '  ', 8), { lines: ['a'], ended: false });
    assert.deepEqual(cutToBlock('1\n2\n3\n4', '', 2), { lines: ['1', '2'], ended: true });
    assert.deepEqual(cutToBlock('1\n2', '', 2), { lines: ['1', '2'], ended: false });
    assert.deepEqual(cutToBlock('1\n2\n', '', 2), { lines: ['1', '2'], ended: true });
  });

  test('lines repeating the next line of the document are dropped', () => {
    assert.deepEqual(dropRepeatedLines(['x = 1', 'y = 2', 'return x'], ['', '  return x  ']), ['x = 1', 'y = 2']);
    assert.deepEqual(
      dropRepeatedLines(['return x'], ['return x']),
      ['return x'],
      'the first line continues the cursor line: never dropped',
    );
    assert.deepEqual(dropRepeatedLines(['a', 'b'], []), ['a', 'b']);
  });

  test('completionEnded lets a streaming request stop as soon as the result is known', () => {
    const cursor = at('  |');
    assert.equal(completionEnded('return x;', cursor, policy(), true), false);
    assert.equal(completionEnded('return x;\n}', cursor, policy(), true), true);
    assert.equal(completionEnded('done\nmore', at('x|'), policy(), false), true, 'single line: the newline ends it');
    assert.equal(completionEnded('abc STOP', at('x|'), policy({ stopSequences: ['STOP'] }), false), true);
  });
});

describe('finishCompletion', () => {
  test('single line: cut at the newline, trailing whitespace trimmed', () => {
    const c = at('const total = |');
    assert.deepEqual(finishCompletion('price * count;   \nconsole.log(total);', c, policy(), false), {
      text: 'price * count;',
      replaceSuffix: 0,
      multiline: false,
    });
  });

  test('nothing to show: empty, whitespace only, or a stop at once', () => {
    const c = at('hello|');
    assert.equal(finishCompletion('', c, policy(), false), undefined);
    assert.equal(finishCompletion('   \n  more', c, policy(), false), undefined);
    assert.equal(finishCompletion('\nnext line', c, policy(), false), undefined);
    assert.equal(finishCompletion('###', c, policy({ stopSequences: ['###'] }), false), undefined);
  });

  test("after a space mid-line the model's own leading space is dropped; at a line start indentation stays", () => {
    assert.equal(finishCompletion(' world', at('hello |'), policy(), false)?.text, 'world');
    assert.equal(finishCompletion('world', at('hello|'), policy(), false)?.text, 'world');
    assert.equal(finishCompletion(' world', at('hello|'), policy(), false)?.text, ' world');
  });

  test('user stop sequences end the completion before them', () => {
    assert.equal(finishCompletion('one. two.', at('x|'), policy({ stopSequences: ['.'] }), false)?.text, 'one');
  });

  test('multi-line: the block of the cursor, repeated lines dropped, trailing blank lines removed', () => {
    const doc = 'function add(a, b) {\n  |\n}\n';
    const c = at(doc);
    const s = finishCompletion('const sum = a + b;   \n  return sum;\n}\n\nfunction sub(a, b) {', c, policy({ multiline: 'auto' }), true);
    assert.deepEqual(s, { text: 'const sum = a + b;\n  return sum;', replaceSuffix: 0, multiline: true });
    assert.equal(accept(doc, s!), 'function add(a, b) {\n  const sum = a + b;\n  return sum;\n}\n');
    const echo = finishCompletion('a();\n  b();\n  c();', at('{\n  |\n  c();\n}'), policy(), true);
    assert.equal(echo?.text, 'a();\n  b();');
  });

  test('multi-line capped at maxLines; a single kept line is reported as single-line', () => {
    const s = finishCompletion('1\n2\n3\n4\n5', at('|'), policy({ maxLines: 3 }), true);
    assert.equal(s?.text, '1\n2\n3');
    const one = finishCompletion('only\n\nnext', at('|'), policy(), true);
    assert.deepEqual(one, { text: 'only', replaceSuffix: 0, multiline: false });
  });
});

describe('merge with the rest of the line', () => {
  test('bracket helpers', () => {
    assert.equal(isBalanced('f(a[0], {b})'), true);
    assert.equal(isBalanced('f(a'), false);
    assert.equal(isBalanced('a)'), false);
    assert.equal(firstOuterCloser('x + f(y)) + 1'), 8);
    assert.equal(firstOuterCloser('f(y)'), -1);
  });

  // [document with | cursor, raw model output, expected line after accepting]
  const cases: [string, string, string][] = [
    ['print(|)', 'x)', 'print(x)'], // the model re-typed the auto-closed paren: covered, not doubled
    ['print(|)', 'x) if y else z', 'print(x) if y else z'], // …and went on after it
    ['print("|")', 'hello")', 'print("hello")'],
    ['foo(|);', 'a, b);', 'foo(a, b);'],
    ['foo(|);', 'a, b)', 'foo(a, b);'], // cut before the ';': the partial echo is completed from the line
    ['foo(|)', 'print(x) + 1', 'foo(print(x) + 1)'], // its ')' closes its own '(': plain insertion
    ['foo(|);', 'x) + y', 'foo(x);'], // closes foo's '(' and continues: cut before the closer
    ['Hello |world!', 'big world!', 'Hello big world!'],
    ['Hello |world!', 'big wor', 'Hello big world!'], // the token limit cut the echo short
    ['x = [|]', '1, 2, 3]', 'x = [1, 2, 3]'],
    ['let s = |;', '"abc"', 'let s = "abc";'],
    ['if (|) {', 'ready', 'if (ready) {'],
  ];
  for (const [doc, raw, expected] of cases) {
    test(`${JSON.stringify(doc)} + ${JSON.stringify(raw)} → ${JSON.stringify(expected)}`, () => {
      const c = at(doc);
      const s = finishCompletion(raw, c, policy(), false);
      assert.ok(s, 'a suggestion');
      assert.equal(accept(doc, s), expected);
      assert.ok(visibleInVsCode(c.lineSuffix, s), 'VS Code would show it (replaced text is a subsequence)');
    });
  }

  test('a completion that only repeats the rest of the line adds nothing', () => {
    assert.equal(finishCompletion(')', at('print(x|)'), policy(), false), undefined);
    assert.equal(finishCompletion(' world', at('hello| world'), policy(), false), undefined);
    assert.equal(addsText({ text: 'x)', replaceSuffix: 1 }, ')'), true);
    assert.equal(addsText({ text: ' )', replaceSuffix: 1 }, ')'), false);
  });

  test('trailing whitespace after the cursor is never replaced', () => {
    const s = mergeWithLineSuffix('x)', ')   ');
    assert.deepEqual(s, { text: 'x)', replaceSuffix: 1 });
    assert.deepEqual(mergeWithLineSuffix('abc', '   '), { text: 'abc', replaceSuffix: 0 });
  });

  test("random completions against random line ends: always visible, never lose the user's text", () => {
    const pieces = ['x', 'y', ' ', ')', '(', ']', '[', ';', ',', '"', 'ab', '+'];
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    const word = (len: number) => Array.from({ length: len }, () => pieces[rnd(pieces.length)]).join('');
    for (let i = 0; i < 3000; i++) {
      const suffix = word(rnd(4));
      const raw = word(1 + rnd(6));
      const s = mergeWithLineSuffix(raw, suffix);
      assert.ok(visibleInVsCode(suffix, s), `${JSON.stringify(raw)} before ${JSON.stringify(suffix)} → ${JSON.stringify(s)}`);
      // Accepting keeps every character the user had after the cursor, in order.
      const after = s.text + suffix.slice(s.replaceSuffix);
      let j = 0;
      for (const ch of after) if (j < suffix.length && ch === suffix[j]) j++;
      assert.equal(j, suffix.length, `${JSON.stringify(raw)} before ${JSON.stringify(suffix)} lost text`);
    }
  });
});

describe('completion cache', () => {
  const doc = 'file:///a.md';
  const key = (prefix: string, lineSuffix = '', next: string[] = []) => ({
    documentId: doc,
    prefix,
    suffixKey: suffixKeyOf(lineSuffix, next),
  });

  test('exact hit, and typing the predicted characters keeps hitting with the rest', () => {
    const cache = new CompletionCache();
    cache.set(key('The quick'), { text: ' brown fox', replaceSuffix: 0, multiline: false });
    assert.deepEqual(cache.get(key('The quick')), { suggestion: { text: ' brown fox', replaceSuffix: 0, multiline: false }, typed: '' });
    assert.deepEqual(cache.get(key('The quick br'))?.suggestion?.text, 'own fox');
    assert.deepEqual(cache.get(key('The quick brown fo'))?.suggestion?.text, 'x');
    assert.equal(cache.get(key('The quick brown fox')), undefined, 'all typed: ask the engine again');
    assert.equal(cache.get(key('The quick bread')), undefined, 'typed something else');
  });

  test('backspacing and retyping hits entries computed earlier', () => {
    const cache = new CompletionCache();
    cache.set(key('Hello w'), { text: 'orld', replaceSuffix: 0, multiline: false });
    cache.set(key('Hello wo'), { text: 'rld!', replaceSuffix: 0, multiline: false });
    assert.equal(cache.get(key('Hello w'))?.suggestion?.text, 'orld', 'back to the earlier position');
    assert.equal(cache.get(key('Hello wo'))?.suggestion?.text, 'rld!', 'exact beats typed-ahead');
    assert.equal(cache.get(key('Hello wor'))?.suggestion?.text, 'ld!', 'the closest entry wins');
  });

  test('the rest of the line and the lines below must match; a newline typed ends the match', () => {
    const cache = new CompletionCache();
    cache.set(key('f(', ')'), { text: 'x)', replaceSuffix: 1, multiline: false });
    assert.equal(cache.get(key('f(', '')), undefined);
    assert.equal(cache.get(key('f(', ')', ['other'])), undefined);
    assert.deepEqual(cache.get(key('f(', ')'))?.suggestion, { text: 'x)', replaceSuffix: 1, multiline: false });
    assert.equal(cache.get(key('f(x', ')')), undefined, 'only the echoed ")" would remain');
    cache.set(key('a'), { text: 'b\nc', replaceSuffix: 0, multiline: true });
    assert.equal(cache.get(key('ab\n')), undefined);
  });

  test('"no suggestion here" is remembered for automatic triggers only', () => {
    const cache = new CompletionCache();
    cache.set(key('nothing'), undefined);
    assert.deepEqual(cache.get(key('nothing'), { includeEmpty: true }), { suggestion: undefined, typed: '' });
    assert.equal(cache.get(key('nothing')), undefined);
  });

  test('the prompt window sliding as the user types does not defeat the cache', () => {
    const cache = new CompletionCache(256, 20);
    const long = 'lorem ipsum dolor sit amet '.repeat(10);
    cache.set(key(long.slice(-100)), { text: 'consectetur', replaceSuffix: 0, multiline: false });
    assert.equal(cache.get(key(`${long}con`.slice(-100)))?.suggestion?.text, 'sectetur');
  });

  test('least recently used entries are evicted; clear by document or all', () => {
    const cache = new CompletionCache(2);
    cache.set(key('a'), { text: '1', replaceSuffix: 0, multiline: false });
    cache.set(key('b'), { text: '2', replaceSuffix: 0, multiline: false });
    cache.get(key('a'));
    cache.set(key('c'), { text: '3', replaceSuffix: 0, multiline: false });
    assert.equal(cache.size, 2);
    assert.ok(cache.get(key('a')));
    assert.equal(cache.get(key('b')), undefined);
    cache.set({ documentId: 'other', prefix: 'z', suffixKey: '' }, { text: '9', replaceSuffix: 0, multiline: false });
    cache.clear(doc);
    assert.equal(cache.size, 1);
    cache.clear();
    assert.equal(cache.size, 0);
    assert.ok(cache.stats.hits >= 1 && cache.stats.misses >= 1);
  });
});

describe('debouncer', () => {
  test('only the last of a burst goes ahead', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const d = new Debouncer();
      const first = d.wait(150);
      mock.timers.tick(100);
      const second = d.wait(150);
      mock.timers.tick(149);
      const third = d.wait(150);
      mock.timers.tick(150);
      assert.deepEqual(await Promise.all([first, second, third]), [false, false, true]);
    } finally {
      mock.timers.reset();
    }
  });

  test('a word-end keystroke supersedes a pending mid-word wait and goes ahead after its own, shorter wait', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const d = new Debouncer();
      const s = { debounceMs: 75, wordEndDebounceMs: 0 };
      const inWord = d.wait(debounceFor('const valu', s));
      mock.timers.tick(40);
      const atEnd = d.wait(debounceFor('const value ', s));
      mock.timers.tick(0);
      assert.deepEqual(await Promise.all([inWord, atEnd]), [false, true]);
    } finally {
      mock.timers.reset();
    }
  });

  test('an abort ends the wait at once; an aborted signal never waits', async () => {
    const d = new Debouncer();
    const controller = new AbortController();
    const started = performance.now();
    const wait = d.wait(10_000, controller.signal);
    controller.abort();
    assert.equal(await wait, false);
    assert.ok(performance.now() - started < 1000);
    assert.equal(await d.wait(10_000, AbortSignal.abort()), false);
  });

  test('dispose ends a pending wait', async () => {
    const d = new Debouncer();
    assert.equal(await d.wait(1), true);
    const pending = d.wait(10_000);
    d.dispose();
    assert.equal(await pending, false);
  });

  test('a keystroke ends a word after whitespace, punctuation or at the start of a line, not inside one', () => {
    for (const text of ['', 'x = 1;', 'foo(', 'a.b.', 'let x ', 'if (a) {', '## Title ', 'word,', '\t', '"quoted"', 'a + ']) {
      assert.equal(endsWord(text), true, JSON.stringify(text));
    }
    for (const text of ['cons', 'x = valu', 'snake_', 'my$', 'x1', 'café', 'naïve', 'Straße', '日本語', 'e\u0301', 'emoji 𝒳']) {
      assert.equal(endsWord(text), false, JSON.stringify(text));
    }
    const s = { debounceMs: 75, wordEndDebounceMs: 10 };
    assert.equal(debounceFor('return ', s), 10);
    assert.equal(debounceFor('retu', s), 75);
  });
});
