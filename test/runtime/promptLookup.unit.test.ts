// Prompt lookup's candidate search as transformers' PromptLookupCandidateGenerator orders it, and
// the back-off (exactness of generation with it: promptLookupExactness.test.ts).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LookupBackoff, promptLookupCandidates } from '../../runtime/src/generation/promptLookup.js';

const NO_EOS = new Set<number>();

describe('prompt lookup candidates', () => {
  test("the last n-gram's earliest earlier occurrence, longest n-gram first", () => {
    // ... 1 2 3 | 9 | 2 3 → the bigram "2 3" first occurs at 1, followed by 9 4 …
    assert.deepEqual(promptLookupCandidates([1, 2, 3, 9, 4, 5, 2, 3], 2, 3, 100, NO_EOS), [9, 4, 5]);
    // The bigram "7 3" never occurred: the unigram "3" did, first at 2.
    assert.deepEqual(promptLookupCandidates([1, 2, 3, 9, 4, 3, 8, 7, 3], 2, 2, 100, NO_EOS), [9, 4]);
    // Earliest occurrence wins over a later one.
    assert.deepEqual(promptLookupCandidates([5, 1, 5, 2, 5], 1, 1, 100, NO_EOS), [1]);
    // A longer n-gram is preferred even when a shorter one occurs earlier.
    assert.deepEqual(promptLookupCandidates([4, 6, 1, 4, 7, 0, 1, 4], 3, 1, 100, NO_EOS), [7]);
  });

  test('no match, or only the n-gram itself: nothing', () => {
    assert.deepEqual(promptLookupCandidates([1, 2, 3, 4], 2, 5, 100, NO_EOS), []);
    assert.deepEqual(promptLookupCandidates([7], 2, 5, 100, NO_EOS), []);
    assert.deepEqual(promptLookupCandidates([], 2, 5, 100, NO_EOS), []);
  });

  test("cuts: numTokens, the sequence's end, overlapping windows", () => {
    assert.deepEqual(promptLookupCandidates([1, 2, 3, 4, 5, 6, 1, 2], 2, 3, 100, NO_EOS), [3, 4, 5]);
    assert.deepEqual(promptLookupCandidates([1, 2, 3, 1, 2], 2, 10, 100, NO_EOS), [3, 1, 2]);
    // "a a a": the bigram "a a" occurs at 0, followed by the last "a".
    assert.deepEqual(promptLookupCandidates([8, 8, 8], 2, 10, 100, NO_EOS), [8]);
  });

  test("max_length: nothing when only the pass's own token fits; candidates end before an EOS; room caps the count", () => {
    assert.deepEqual(promptLookupCandidates([1, 2, 3, 1, 2], 2, 10, 6, NO_EOS), []);
    assert.deepEqual(promptLookupCandidates([1, 2, 3, 4, 1, 2], 2, 10, 3, NO_EOS), [3]); // transformers caps the end index (not the total) at max_length
    assert.deepEqual(promptLookupCandidates([1, 2, 3, 2, 5, 1, 2], 2, 10, 100, new Set([2])), [3]);
    assert.deepEqual(promptLookupCandidates([1, 2, 2, 5, 1, 2], 2, 10, 100, new Set([2])), []);
    assert.deepEqual(promptLookupCandidates([1, 2, 3, 4, 5, 1, 2], 2, 10, 100, NO_EOS, 2), [3, 4]);
  });

  test('rounds that cost more per token than plain passes pause speculation, as misses do; the first pass is plain', () => {
    const b = new LookupBackoff({ patience: 3, firstPause: 2, maxPause: 8 });
    assert.equal(b.needsPlainTiming, true);
    b.recordCost(Number.NaN, 1, false); // the prefill's pass: not timed
    assert.equal(b.needsPlainTiming, true);
    b.recordCost(10, 1, false); // plain: 10 ms a token
    assert.equal(b.needsPlainTiming, false);
    b.recordCost(30, 4, true); // 7.5 ms a token: worth it
    assert.equal(b.shouldTry(), true);
    b.recordCost(30, 2, true); // 15 ms: the average (11.25) is now worse than plain
    assert.deepEqual([b.shouldTry(), b.shouldTry(), b.shouldTry()], [false, false, true]);
  });

  test('the back-off pauses after misses, longer each time, and any acceptance resets it', () => {
    const b = new LookupBackoff({ patience: 2, firstPause: 2, maxPause: 8 });
    const tries = (n: number) => Array.from({ length: n }, () => b.shouldTry());
    b.record(0);
    assert.deepEqual(tries(1), [true]);
    b.record(0); // second miss in a row: pause 2
    assert.deepEqual(tries(3), [false, false, true]);
    b.record(0);
    b.record(0); // pause 4
    assert.deepEqual(tries(5), [false, false, false, false, true]);
    b.record(3); // reset
    b.record(0);
    b.record(0); // pause 2 again
    assert.deepEqual(tries(3), [false, false, true]);
  });
});
