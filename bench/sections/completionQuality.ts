// What ghost text is worth on code the model never saw: cursor positions sampled deterministically
// in the trained target's held-out code files, each completed exactly as the editor does it (the
// extension's own pure modules: the context window, the multi-line policy and stop strings, the
// early stop while streaming, the post-processing) by the runtime process over the protocol, and the
// suggestion compared with the text that really follows. The document is cut at the cursor, as
// while writing it: nothing after the cursor is known.

import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { CancellationTokenSource, StreamMessageReader, StreamMessageWriter, createMessageConnection } from 'vscode-jsonrpc/node';
import { Complete, Initialize, PartialResult, PROTOCOL_VERSION, Shutdown } from '../../protocol/protocol.js';
import { type CursorContext, cursorContext } from '../../extension/src/completion/contextWindow.js';
import {
  type InlinePolicy,
  completionEnded,
  finishCompletion,
  stopStringsFor,
  wantsMultiline,
} from '../../extension/src/completion/postprocess.js';
import type { GraphDtype } from '../../runtime/src/onnx/optGraph.js';
import { mulberry32 } from '../../test/helpers/prng.js';
import { ONNX_CACHE_DIR, ROOT, childScript, median, percentile } from '../lib/util.js';
import { heldOutTexts } from './quality.js';

/** Where a completion is asked for: at a line's first character, after an opening bracket, after an identifier mid-line. */
export type PositionKind = 'line-start' | 'after-bracket' | 'after-identifier';

export interface CursorPosition {
  file: string;
  offset: number;
  kind: PositionKind;
}

/**
 * `perKind` positions of each kind per file, drawn with a seeded PRNG from every candidate in the
 * file (skipping the first `minPrefix` characters, so there is context to complete from).
 */
export function samplePositions(file: string, text: string, perKind: number, seed: number, minPrefix = 400): CursorPosition[] {
  const candidates: Record<PositionKind, number[]> = { 'line-start': [], 'after-bracket': [], 'after-identifier': [] };
  let lineStart = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '\n') {
      lineStart = i + 1;
      continue;
    }
    if (i < minPrefix) continue;
    const before = text.slice(lineStart, i);
    const restOfLine = text.slice(i, text.indexOf('\n', i) === -1 ? text.length : text.indexOf('\n', i));
    if (restOfLine.trim() === '') continue; // nothing to predict on this line
    if (before.trim() === '' && ch !== ' ' && ch !== '\t') candidates['line-start'].push(i);
    else if ('([{'.includes(text[i - 1]!) && before.trim() !== '') candidates['after-bracket'].push(i);
    else if (/[A-Za-z0-9_]/.test(text[i - 1]!) && !/[A-Za-z0-9_]/.test(ch) && before.trim() !== '') candidates['after-identifier'].push(i);
  }
  const rng = mulberry32(seed);
  const out: CursorPosition[] = [];
  for (const kind of Object.keys(candidates) as PositionKind[]) {
    const pool = [...candidates[kind]];
    for (let n = 0; n < perKind && pool.length > 0; n++)
      out.push({ file, kind, offset: pool.splice(Math.floor(rng() * pool.length), 1)[0]! });
  }
  return out.sort((a, b) => a.offset - b.offset);
}

/** Levenshtein distance over UTF-16 code units (two rows). */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = row;
  }
  return prev[b.length]!;
}

/** 1 - distance / the longer length (1: identical; both empty count as identical). */
export const editSimilarity = (a: string, b: string): number =>
  a.length === 0 && b.length === 0 ? 1 : 1 - editDistance(a, b) / Math.max(a.length, b.length);

/**
 * What the suggestion is compared with: the rest of the cursor's line, and for a multi-line
 * suggestion as many lines as it has (line ends trimmed, as the suggestion's are).
 */
export function truthFor(text: string, offset: number, lines: number): { restOfLine: string; span: string } {
  const rest = text.slice(offset).split('\n');
  return {
    restOfLine: rest[0]!.trimEnd(),
    span: rest
      .slice(0, Math.max(1, lines))
      .map((l) => l.trimEnd())
      .join('\n'),
  };
}

export interface CompletionQualityParams {
  model: string;
  dtype: GraphDtype;
  /** maxContextTokens of each request (the editor's optComplete.inline.maxContextTokens). */
  contextTokens: number;
  /** Positions of each kind per file, and how many files. */
  perKind: number;
  files: number;
  maxNewTokens: number;
  /** Prompt lookup's candidates per pass (the editor's optComplete.inline.promptLookupTokens); absent or 0: off. */
  promptLookupTokens?: number;
}

export interface PositionOutcome extends CursorPosition {
  shown: boolean;
  multiline: boolean;
  exactLine: boolean;
  similarity: number;
  completionTokens: number;
  latencyMs: number;
  /** The suggestion shown, if any. */
  text?: string;
}

export interface CompletionQualityResult extends CompletionQualityParams {
  positions: number;
  byKind: Record<string, { positions: number; shown: number; exactLine: number; similarityShown: number }>;
  shownShare: number;
  /** Of all positions: the suggestion's first line is exactly the rest of the line. */
  exactLineShare: number;
  /** Mean edit similarity over the positions with a suggestion, and over all (none shown counts 0). */
  similarityShown: number;
  similarityAll: number;
  tokensP50: number;
  latencyP50: number;
  latencyP90: number;
  outcomes: PositionOutcome[];
}

const POLICY: InlinePolicy = { multiline: 'auto', maxLines: 8, stopSequences: [] }; // the extension's defaults
const MAX_CONTEXT_CHARS = 4000; // optComplete.inline.maxContextChars's default

export async function measureCompletionQuality(p: CompletionQualityParams): Promise<CompletionQualityResult> {
  const modelDir = join(ROOT, 'test', 'fixtures', 'trained', p.model);
  const files = heldOutTexts(p.model, Infinity)
    .filter((t) => t.kind === 'code')
    .slice(0, p.files);
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'runtime', 'src', 'cli.ts'), 'rpc'], { cwd: ROOT, stdio: 'pipe' });
  child.stderr.on('data', () => undefined);
  const connection = createMessageConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin));
  connection.listen();
  const outcomes: PositionOutcome[] = [];
  try {
    await connection.sendRequest(Initialize, {
      protocolVersion: PROTOCOL_VERSION,
      model: modelDir,
      dtype: p.dtype,
      threads: 2,
      cacheDir: ONNX_CACHE_DIR,
      contextTokens: p.contextTokens + p.maxNewTokens,
    });
    let token = 0;
    for (const [n, f] of files.entries()) {
      for (const pos of samplePositions(f.file, f.text, p.perKind, 1000 + n)) {
        const before = f.text.slice(0, pos.offset);
        const cursor: CursorContext = {
          ...cursorContext(before, '', { maxPrefixChars: MAX_CONTEXT_CHARS }),
          linePrefix: before.slice(before.lastIndexOf('\n') + 1),
        };
        const multiline = wantsMultiline(POLICY.multiline, cursor);
        // As the extension's runWithEarlyStop: stream, and stop once the policy says the completion is complete.
        const partialResultToken = `q${token++}`;
        const source = new CancellationTokenSource();
        let soFar = '';
        const sub = connection.onProgress(PartialResult, partialResultToken, ({ delta }) => {
          soFar += delta;
          if (completionEnded(soFar, cursor, POLICY, multiline)) source.cancel();
        });
        const sent = performance.now();
        let completionTokens = 0;
        try {
          const r = await connection.sendRequest(
            Complete,
            {
              documentId: f.file,
              prefix: cursor.prefix,
              suffix: '',
              maxContextTokens: p.contextTokens,
              options: {
                max_new_tokens: p.maxNewTokens,
                do_sample: false,
                stop_strings: stopStringsFor(multiline, POLICY.stopSequences),
                ...(p.promptLookupTokens ? { prompt_lookup_num_tokens: p.promptLookupTokens } : {}),
              },
              partialResultToken,
            },
            source.token,
          );
          soFar = r.text;
          completionTokens = r.completionTokens;
        } catch {
          completionTokens = -1; // stopped early: counted from the stream below
        } finally {
          sub.dispose();
        }
        const latencyMs = performance.now() - sent;
        const s = finishCompletion(soFar, cursor, POLICY, multiline);
        const lines = s ? s.text.split('\n').length : 1;
        const truth = truthFor(f.text, pos.offset, lines);
        outcomes.push({
          ...pos,
          shown: s !== undefined,
          multiline: s?.multiline ?? false,
          exactLine: s !== undefined && s.text.split('\n')[0]!.trimEnd() === truth.restOfLine && truth.restOfLine !== '',
          similarity: s ? editSimilarity(s.text, truth.span) : 0,
          completionTokens: completionTokens >= 0 ? completionTokens : NaN,
          latencyMs,
          ...(s ? { text: s.text } : {}),
        });
      }
    }
    await connection.sendRequest(Shutdown).catch(() => undefined);
  } finally {
    connection.dispose();
    child.stdin.end();
    setTimeout(() => child.kill(), 5000).unref();
  }
  const shown = outcomes.filter((o) => o.shown);
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
  const byKind: CompletionQualityResult['byKind'] = {};
  for (const kind of ['line-start', 'after-bracket', 'after-identifier']) {
    const mine = outcomes.filter((o) => o.kind === kind);
    byKind[kind] = {
      positions: mine.length,
      shown: mine.filter((o) => o.shown).length,
      exactLine: mine.filter((o) => o.exactLine).length,
      similarityShown: mean(mine.filter((o) => o.shown).map((o) => o.similarity)),
    };
  }
  const latencies = outcomes.map((o) => o.latencyMs);
  return {
    ...p,
    positions: outcomes.length,
    byKind,
    shownShare: shown.length / outcomes.length,
    exactLineShare: outcomes.filter((o) => o.exactLine).length / outcomes.length,
    similarityShown: mean(shown.map((o) => o.similarity)),
    similarityAll: mean(outcomes.map((o) => o.similarity)),
    tokensP50: median(outcomes.map((o) => o.completionTokens).filter((x) => Number.isFinite(x))),
    latencyP50: median(latencies),
    latencyP90: percentile(latencies, 90),
    outcomes,
  };
}

export const COMPLETION_QUALITY_SCRIPT = await childScript(import.meta.url, {
  'completion-quality': (p: CompletionQualityParams) => measureCompletionQuality(p),
});
