// Section 4, editor latency through the real runtime process (`opt rpc`, JSON-RPC over stdio):
// replays typing a TypeScript function and a Markdown paragraph after a 1,500-token context, a
// Complete request per keystroke that is followed by a pause as long as the extension's wait there
// (its own debounce rule: shorter at the end of a word), each cancelled when the next keystroke
// arrives first. Reports keystroke → completion latency, prefix-cache reuse and the
// runtime's CPU seconds per shown completion. Runs in a child of bench/run.ts.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CancellationTokenSource,
  ResponseError,
  StreamMessageReader,
  StreamMessageWriter,
  createMessageConnection,
} from 'vscode-jsonrpc/node';
import {
  Complete,
  Initialize,
  type InitializeParams,
  PROTOCOL_VERSION,
  RuntimeErrorCodes,
  Shutdown,
  Status,
} from '../../protocol/protocol.js';
import { type DebounceSettings, debounceFor } from '../../extension/src/completion/debounce.js';
import { OptTokenizer } from '../../runtime/src/tokenizer/optTokenizer.js';
import { mulberry32 } from '../../test/helpers/prng.js';
import { TYPED_MARKDOWN, TYPED_TYPESCRIPT, markdownDocument, typescriptSource } from '../lib/texts.js';
import { CHECKPOINT_DIR, ONNX_CACHE_DIR, ROOT, median, percentile, processCpuSeconds } from '../lib/util.js';

export interface EditorParams {
  dtype?: 'int8' | 'int4' | 'fp32';
  threads?: number;
  quick?: boolean;
  contextTokens?: number;
  /** The extension's waits (its default settings when not given). */
  debounceMs?: number;
  wordEndDebounceMs?: number;
  maxNewTokens?: number;
  /** The checkpoint folder (default: the opt-125m-shaped one). */
  model?: string;
  /** Replay only these documents (service.ts, README.md; default both, only service.ts when quick). */
  documents?: string[];
  /** Type only the first this many characters of each document's text (default all). */
  typedChars?: number;
  /** Completions timed after the replay, when typing stops (default 10, 5 when quick). */
  pausedSamples?: number;
  /** Time the paused completions at each line's own length as well (default true). */
  lineLength?: boolean;
  /** A folder whose runtime/src/cli.ts is started instead of this checkout's (e.g. a snapshot of an earlier commit). */
  runtimeRoot?: string;
}

export interface EditorSession {
  document: string;
  keystrokes: number;
  /** Simulated typing speed over the session, pauses included. */
  charsPerSecond: number;
  requests: number;
  shown: number;
  /** Overtaken by the next keystroke: cancelled, or (rarely) finished while the cancel was on its way. */
  cancelled: number;
  /** Keystroke → completion result: the debounce plus the request's round trip. */
  keystrokeToResultMs: { p50: number; p95: number; max: number };
  /** Request sent → result (the runtime's share). */
  requestMs: { p50: number; p95: number };
  /**
   * The same, when typing stops after a keystroke (the request always completes): after the
   * replay, completions at evenly spaced points of the typed text, one at a time.
   */
  paused: {
    samples: number;
    keystrokeToResultMs: { p50: number; p95: number };
    requestMs: { p50: number; p95: number };
    prefilledTokensP50: number;
    waitMsP50?: number;
    completionTokensP50?: number;
    promptTokensP50?: number;
  };
  /**
   * The same points with the length a trained model's single-line completion has: random weights
   * never end a line, so each request is given as many tokens as the rest of the typed line has,
   * plus the newline that ends it (what a model that predicted the line would generate).
   */
  pausedLineLength?: {
    samples: number;
    keystrokeToResultMs: { p50: number; p95: number };
    requestMs: { p50: number; p95: number };
    completionTokensP50: number;
  };
  /** Of the prompt tokens of shown completions, the share whose KV state came from the prefix cache. */
  prefixReuse: number;
  /** Median prompt tokens taken from the prefix cache per shown completion. */
  reusedTokensP50?: number;
  /** Median prompt tokens prefilled per shown completion. */
  prefilledTokensP50: number;
  promptTokensP50: number;
  completionTokensMean: number;
  /** Runtime process CPU (user + system, all threads) over the session / shown completions. */
  cpuSecondsPerShown: number;
  cpuSeconds: number;
  wallSeconds: number;
}

export interface EditorResult {
  dtype: string;
  threads: number;
  /** The extension's debounce inside a word (its default setting unless given). */
  debounceMs: number;
  /** …and after a keystroke that ends a word. */
  wordEndDebounceMs?: number;
  /** VS Code's own wait before it asks inline completion providers. */
  editorDelayMs?: number;
  maxNewTokens: number;
  contextTokens: number;
  loadSeconds: number;
  /** The runtime process's peak resident memory (VmHWM), prefix cache included. */
  runtimePeakRssBytes: number;
  sessions: EditorSession[];
  /** The runtime's prefix-cache figures at the end (entries, bytes and budgetBytes where it reports them). */
  prefixCache: { hits: number; misses: number; entries?: number; bytes?: number; budgetBytes?: number };
  /** The checkpoint replayed, and the runtime started (when not this checkout's). */
  model?: string;
  runtimeRoot?: string;
  /** InitializeParams.contextTokens sent: the longest prompt + completion of the replay. */
  initContextTokens?: number;
  /** The runtime's EngineInfo as returned by initialize (memory figures included where it has them). */
  engineInfo?: Record<string, unknown>;
}

/**
 * Inter-keystroke gaps (ms) for `text`: a steady ~105 ms inside words, with occasional longer
 * pauses after a space and frequent ones after punctuation and line ends (people stop to think).
 */
export function typingGaps(text: string, seed = 7): number[] {
  const rnd = mulberry32(seed);
  return [...text].map((ch, i) => {
    let gap = 80 + -Math.log(1 - rnd()) * 25;
    if (ch === ' ' && rnd() < 0.2) gap += 150 + rnd() * 450;
    if (/[.,;:{}()\n]/.test(ch) && rnd() < 0.6) gap += 200 + rnd() * 1000;
    return i === text.length - 1 ? Infinity : gap;
  });
}

/**
 * VS Code waits this long after a keystroke before it calls inline completion providers
 * (InlineCompletionsDebounce {min: 50, max: 50} in its inlineCompletionsController).
 */
export const VSCODE_INLINE_DELAY_MS = 50;

/** The extension's default waits, from package.json (optComplete.inline.debounceMs and .wordEndDebounceMs). */
export function extensionDebounce(): DebounceSettings {
  const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    contributes: { configuration: { properties: Record<string, { default?: unknown }> } };
  };
  const read = (key: string) => {
    const value = manifest.contributes.configuration.properties[`optComplete.inline.${key}`]?.default;
    if (typeof value !== 'number') throw new Error(`package.json declares no default for optComplete.inline.${key}`);
    return value;
  };
  return { debounceMs: read('debounceMs'), wordEndDebounceMs: read('wordEndDebounceMs') };
}

/** Keystroke → result per sample (its wait + its request), as p50 / p95. */
function latencyOf(waits: number[], requestMs: number[]): { p50: number; p95: number } {
  const total = requestMs.map((ms, k) => waits[k]! + ms);
  return { p50: median(total), p95: percentile(total, 95) };
}

export async function replayEditing(p: EditorParams = {}): Promise<EditorResult> {
  const dtype = p.dtype ?? 'int8',
    threads = p.threads ?? 2,
    maxNewTokens = p.maxNewTokens ?? 16;
  const defaults = extensionDebounce();
  const debounce = {
    debounceMs: p.debounceMs ?? defaults.debounceMs,
    wordEndDebounceMs: p.wordEndDebounceMs ?? defaults.wordEndDebounceMs,
  };
  // From the keystroke to the request: VS Code's own delay, then the extension's wait for the text typed so far.
  const waitAfter = (typedSoFar: string) => VSCODE_INLINE_DELAY_MS + debounceFor(typedSoFar, debounce);
  const contextTokens = p.contextTokens ?? 1500;
  const modelDir = p.model ?? CHECKPOINT_DIR;
  const tokenizer = await OptTokenizer.fromDir(modelDir);
  const contextOf = async (text: string) =>
    tokenizer.decode((await tokenizer.encode(text)).slice(1, contextTokens), { skipSpecialTokens: true });
  let docs = [
    { document: 'service.ts', context: await contextOf(typescriptSource(contextTokens * 5)), typed: TYPED_TYPESCRIPT },
    { document: 'README.md', context: await contextOf(markdownDocument(contextTokens * 6)), typed: TYPED_MARKDOWN },
  ];
  if (p.quick) docs = [{ ...docs[0]!, typed: TYPED_TYPESCRIPT.slice(0, 100) }];
  if (p.documents) docs = docs.filter((d) => p.documents!.includes(d.document));
  if (p.typedChars !== undefined) docs = docs.map((d) => ({ ...d, typed: d.typed.slice(0, p.typedChars) }));
  // What the client will ask for at most: the longest prompt of the replay plus its completion.
  let longestPrompt = 0;
  for (const d of docs) longestPrompt = Math.max(longestPrompt, (await tokenizer.encode(d.context + d.typed)).length);
  const initContextTokens = longestPrompt + maxNewTokens;
  const pausedSamples = p.pausedSamples ?? (p.quick ? 5 : 10);
  const runtimeRoot = p.runtimeRoot ?? ROOT;

  const child = spawn(process.execPath, ['--import', 'tsx', join(runtimeRoot, 'runtime', 'src', 'cli.ts'), 'rpc'], {
    cwd: runtimeRoot,
    stdio: 'pipe',
  });
  child.stderr.on('data', () => undefined); // the runtime logs there; keep the pipe drained
  const connection = createMessageConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin));
  connection.listen();
  try {
    // contextTokens is optional (a runtime that does not know it ignores it).
    const init = await connection.sendRequest(Initialize, {
      protocolVersion: PROTOCOL_VERSION,
      model: modelDir,
      dtype,
      threads,
      cacheDir: ONNX_CACHE_DIR,
      contextTokens: initContextTokens,
    } as InitializeParams);
    const options = { max_new_tokens: maxNewTokens, stop_strings: ['\n'] };
    const sessions: EditorSession[] = [];
    for (const doc of docs) {
      // The document as opened: one completion at the end of the context fills the prefix cache.
      await connection.sendRequest(Complete, { documentId: doc.document, prefix: doc.context, suffix: '', options });
      const gaps = typingGaps(doc.typed);
      const waits = [...doc.typed].map((_, i) => waitAfter(doc.context + doc.typed.slice(0, i + 1)));
      const latencies: number[] = [],
        requestMs: number[] = [],
        reused: number[] = [],
        prompt: number[] = [],
        completion: number[] = [];
      let requests = 0,
        cancelled = 0;
      const cpu0 = processCpuSeconds(child.pid!);
      const wall0 = performance.now();
      for (let i = 0; i < doc.typed.length; i++) {
        const gap = gaps[i]!,
          waitMs = waits[i]!;
        if (gap < waitMs) continue; // the next keystroke comes before the debounce fires
        requests++;
        const source = new CancellationTokenSource();
        const sent = performance.now();
        const reply = connection
          .sendRequest(
            Complete,
            { documentId: doc.document, prefix: doc.context + doc.typed.slice(0, i + 1), suffix: '', options },
            source.token,
          )
          .then(
            (r) => ({ ok: true as const, r }),
            (e: unknown) => ({ ok: false as const, e }),
          );
        // Idle time is compressed away: only what overlaps a request runs in real time.
        const nextKey = gap - waitMs;
        let timer: NodeJS.Timeout | undefined;
        const first = await Promise.race([
          reply,
          new Promise<'key'>((resolve) => (timer = setTimeout(() => resolve('key'), Number.isFinite(nextKey) ? nextKey : 2 ** 30))),
        ]);
        clearTimeout(timer);
        if (first === 'key') {
          source.cancel(); // the editor cancels the pending completion on the next keystroke
          const late = await reply; // Cancelled, or a result already on its way: the editor drops it either way
          if (!late.ok && !(late.e instanceof ResponseError && late.e.code === RuntimeErrorCodes.Cancelled)) throw late.e;
          cancelled++;
          continue;
        }
        if (!first.ok) throw first.e;
        const elapsed = performance.now() - sent;
        requestMs.push(elapsed);
        latencies.push(waitMs + elapsed);
        reused.push(first.r.reusedTokens);
        prompt.push(first.r.promptTokens);
        completion.push(first.r.completionTokens);
      }
      const cpuSeconds = processCpuSeconds(child.pid!) - cpu0;
      const wallSeconds = (performance.now() - wall0) / 1000;
      const typedMs = gaps.slice(0, -1).reduce((a, b) => a + b, 0);

      // Typing stops: each of these requests runs to the end.
      const firing = gaps.flatMap((g, i) => (g >= waits[i]! ? [i] : []));
      const samples = Math.min(firing.length, pausedSamples);
      const pausedMs: number[] = [],
        pausedPrefill: number[] = [],
        pausedTokens: number[] = [],
        pausedPrompt: number[] = [],
        lineMs: number[] = [],
        lineTokens: number[] = [];
      const pausedWait: number[] = [];
      for (let k = 0; k < samples; k++) {
        const i = firing[Math.floor(((k + 0.5) * firing.length) / samples)]!;
        pausedWait.push(waits[i]!);
        const prefix = doc.context + doc.typed.slice(0, i + 1);
        let sent = performance.now();
        const r = await connection.sendRequest(Complete, { documentId: doc.document, prefix, suffix: '', options });
        pausedMs.push(performance.now() - sent);
        pausedPrefill.push(r.promptTokens - r.reusedTokens);
        pausedTokens.push(r.completionTokens);
        pausedPrompt.push(r.promptTokens);
        if (p.lineLength === false) continue;
        const lineEnd = doc.typed.indexOf('\n', i + 1);
        const rest = doc.typed.slice(i + 1, lineEnd < 0 ? undefined : lineEnd);
        const budget = (await tokenizer.encode(rest)).length - 1 + 1; // minus BOS, plus the newline
        sent = performance.now();
        const l = await connection.sendRequest(Complete, {
          documentId: doc.document,
          prefix,
          suffix: '',
          options: { ...options, max_new_tokens: Math.min(budget, maxNewTokens) },
        });
        lineMs.push(performance.now() - sent);
        lineTokens.push(l.completionTokens);
      }
      sessions.push({
        document: doc.document,
        keystrokes: doc.typed.length,
        charsPerSecond: (doc.typed.length - 1) / (typedMs / 1000),
        requests,
        shown: latencies.length,
        cancelled,
        keystrokeToResultMs: { p50: median(latencies), p95: percentile(latencies, 95), max: Math.max(...latencies) },
        requestMs: { p50: median(requestMs), p95: percentile(requestMs, 95) },
        paused: {
          samples,
          keystrokeToResultMs: latencyOf(pausedWait, pausedMs),
          requestMs: { p50: median(pausedMs), p95: percentile(pausedMs, 95) },
          prefilledTokensP50: median(pausedPrefill),
          waitMsP50: median(pausedWait),
          completionTokensP50: median(pausedTokens),
          promptTokensP50: median(pausedPrompt),
        },
        pausedLineLength: lineMs.length
          ? {
              samples,
              keystrokeToResultMs: latencyOf(pausedWait, lineMs),
              requestMs: { p50: median(lineMs), p95: percentile(lineMs, 95) },
              completionTokensP50: median(lineTokens),
            }
          : undefined,
        prefixReuse: reused.reduce((a, b) => a + b, 0) / prompt.reduce((a, b) => a + b, 0),
        reusedTokensP50: median(reused),
        prefilledTokensP50: median(prompt.map((n, j) => n - reused[j]!)),
        promptTokensP50: median(prompt),
        completionTokensMean: completion.reduce((a, b) => a + b, 0) / Math.max(1, completion.length),
        cpuSecondsPerShown: cpuSeconds / Math.max(1, latencies.length),
        cpuSeconds,
        wallSeconds,
      });
    }
    const status = await connection.sendRequest(Status);
    const runtimePeakRssBytes = Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? NaN) * 1024;
    await connection.sendRequest(Shutdown);
    const { hits, misses, entries, bytes, budgetBytes } = status.prefixCache as EditorResult['prefixCache'];
    return {
      dtype,
      threads,
      ...debounce,
      editorDelayMs: VSCODE_INLINE_DELAY_MS,
      maxNewTokens,
      contextTokens,
      loadSeconds: init.info.loadSeconds,
      runtimePeakRssBytes,
      sessions,
      prefixCache: { hits, misses, entries, bytes, budgetBytes },
      model: modelDir,
      ...(p.runtimeRoot ? { runtimeRoot: p.runtimeRoot } : {}),
      initContextTokens,
      engineInfo: init.info as unknown as Record<string, unknown>,
    };
  } finally {
    connection.dispose();
    child.stdin.end();
    const exited = child.exitCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', resolve));
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}
