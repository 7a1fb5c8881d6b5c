// The completion-quality benchmark's pure parts (bench/sections/completionQuality.ts): where it
// asks for completions, and how a suggestion is scored against the text that really follows.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { editDistance, editSimilarity, samplePositions, truthFor } from '../../bench/sections/completionQuality.js';

const code = [
  'import os',
  '',
  'def read_lines(path):',
  '    with open(path) as f:',
  '        return [line.rstrip() for line in f]',
  '',
  'print(read_lines("a.txt"))',
  '',
].join('\n');

describe('completion quality: positions and scores', () => {
  test('positions are of the three kinds, where they say, the same for a seed, never before the minimum prefix', () => {
    const all = samplePositions('a.py', code, 100, 1, 0);
    const at = (kind: string) => all.filter((p) => p.kind === kind).map((p) => p.offset);
    for (const o of at('line-start'))
      assert.ok(o === 0 || code[o - 1] === '\n' || /^[ \t]+$/.test(code.slice(code.lastIndexOf('\n', o - 1) + 1, o)), `line start at ${o}`);
    for (const o of at('after-bracket')) assert.ok('([{'.includes(code[o - 1]!), `after a bracket at ${o}`);
    for (const o of at('after-identifier')) assert.ok(/\w/.test(code[o - 1]!) && !/\w/.test(code[o]!), `after an identifier at ${o}`);
    assert.ok(at('line-start').length >= 4 && at('after-bracket').length >= 3 && at('after-identifier').length >= 5);
    assert.deepEqual(samplePositions('a.py', code, 2, 7, 0), samplePositions('a.py', code, 2, 7, 0));
    assert.notDeepEqual(samplePositions('a.py', code, 2, 7, 0), samplePositions('a.py', code, 2, 8, 0));
    assert.ok(samplePositions('a.py', code, 100, 1, 40).every((p) => p.offset >= 40));
  });

  test('a position with nothing left to write on its line is not a candidate', () => {
    const offsets = samplePositions('a.py', code, 100, 1, 0).map((p) => p.offset);
    for (const o of offsets) assert.notEqual(code.slice(o).split('\n')[0]!.trim(), '');
  });

  test('edit distance and similarity', () => {
    assert.equal(editDistance('kitten', 'sitting'), 3);
    assert.equal(editDistance('', 'abc'), 3);
    assert.equal(editSimilarity('abc', 'abc'), 1);
    assert.equal(editSimilarity('', ''), 1);
    assert.equal(editSimilarity('abcd', 'abxd'), 0.75);
  });

  test('the truth is the rest of the line, and as many lines as a multi-line suggestion has', () => {
    const o = code.indexOf('open(') + 'open('.length;
    assert.deepEqual(truthFor(code, o, 1), { restOfLine: 'path) as f:', span: 'path) as f:' });
    assert.equal(truthFor(code, o, 2).span, 'path) as f:\n        return [line.rstrip() for line in f]');
  });
});
