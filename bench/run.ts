// The benchmark suite: our runtime per precision and thread count, transformers.js on the same
// weights, the machine's memory-bandwidth limit, editor latency through the runtime process, graph
// options, an operator profile of decode, and the editor replay, decode and memory at three OPT sizes. Every measurement runs in its own child process; a
// failing section is reported and the others go on. Writes bench/out/results.json and bench/RESULTS.md.
//   npm run bench [-- --quick] [-- --only ours,peer,bandwidth,editor,graph,profile,sizes,quality,speculation] [-- --report-only]
//   npm run bench -- --only sizes [--sizes opt-125m,opt-350m,opt-1.3b] [--runtime-root DIR]
// --runtime-root: the sizes section's editor replays start DIR/runtime/src/cli.ts (e.g. a snapshot of
// an earlier commit, for a before/after); the section run before is kept as `previous` in the results.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { GraphDtype } from '../runtime/src/onnx/optGraph.js';
import { renderReport } from './report.js';
import type { EditorParams } from './sections/editor.js';
import type { PeerDtype, PeerResult } from './sections/peer.js';
import { COMPLETION_QUALITY_SCRIPT } from './sections/completionQuality.js';
import { QUALITY_DTYPES, QUALITY_SCRIPT, TRAINED_MODELS } from './sections/quality.js';
import { SPECULATION_SCRIPT } from './sections/speculation.js';
import { SIZES, SIZES_SCRIPT, SIZE_EDITOR_PLAN, type SizePrepareResult } from './sections/sizes.js';
import {
  type ChildOutcome,
  CpuMonitor,
  OPT_SIZES,
  OUT_DIR,
  type OptSize,
  ROOT,
  ensureCheckpoint,
  machineInfo,
  runChild,
  waitForQuiet,
} from './lib/util.js';

export const SECTIONS = ['ours', 'peer', 'bandwidth', 'editor', 'graph', 'profile', 'sizes', 'quality', 'speculation'] as const;
export type SectionName = (typeof SECTIONS)[number];

/** One child's outcome, with the CPU other processes used while it ran (cores on average, the busiest). */
export type Measured<T> = ChildOutcome<T> & { task: string; params: unknown; othersCores: number; othersBusy: string[]; attempts: number };

export interface Results {
  quick: boolean;
  machine: ReturnType<typeof machineInfo>;
  /** The commit measured, and whether the runtime's files differed from it. */
  code: { commit: string; runtimeChanged: string[] };
  startedAt: string;
  seconds: number;
  sections: Partial<Record<SectionName, SectionResult>>;
  /** Each section's run before the one in `sections` (kept when a section is measured again: a before/after). */
  previous?: Partial<Record<SectionName, SectionResult>>;
}

export interface SectionResult {
  measuredAt: string;
  quick: boolean;
  commit: string;
  seconds: number;
  runs: Measured<unknown>[];
  error?: string;
  /** The runtime started by the section's editor replays, when not this checkout's (sizes: --runtime-root). */
  runtimeRoot?: string;
  /** Uncommitted runtime/protocol files when the section ran. */
  runtimeChanged?: string[];
}

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    'report-only': { type: 'boolean', default: false },
    sizes: { type: 'string' },
    'runtime-root': { type: 'string' },
  },
});
const resultsFile = join(OUT_DIR, 'results.json');
const reportFile = join(ROOT, 'bench', 'RESULTS.md');
mkdirSync(OUT_DIR, { recursive: true });

if (values['report-only']) {
  writeFileSync(reportFile, renderReport(JSON.parse(readFileSync(resultsFile, 'utf8')) as Results));
  console.log(`wrote ${reportFile}`);
  process.exit(0);
}

const quick = values.quick;
const only = new Set((values.only?.split(',') ?? SECTIONS) as SectionName[]);
for (const s of only) if (!SECTIONS.includes(s)) throw new Error(`unknown section ${s}: choose from ${SECTIONS.join(', ')}`);
const started = performance.now();
const results: Results = {
  quick,
  machine: machineInfo(),
  code: codeVersion(),
  startedAt: new Date().toISOString(),
  seconds: 0,
  sections: {},
};
// --only refreshes some sections and keeps the others from the previous run.
if (values.only && existsSync(resultsFile)) {
  const before = JSON.parse(readFileSync(resultsFile, 'utf8')) as Results;
  results.sections = before.sections;
  results.previous = before.previous ?? {};
}

await ensureCheckpoint();

/** Read-only git queries: what code this run measures. */
function codeVersion(): Results['code'] {
  const git = (...args: string[]) => {
    try {
      return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim();
    } catch {
      return '';
    }
  };
  return {
    commit: git('rev-parse', '--short', 'HEAD') || 'unknown',
    runtimeChanged: git('status', '--porcelain', '--', 'runtime', 'protocol').split('\n').filter(Boolean),
  };
}

/** After this much of the run, a measurement disturbed by other processes is no longer repeated. */
const RETRY_UNTIL_S = quick ? 150 : 16 * 60;
/** Waiting for other processes to go quiet, over the whole run, stops after this. */
let waitBudgetMs = quick ? 20_000 : 150_000;

/**
 * Runs one child after waiting (briefly) for other processes to go quiet. When other processes
 * took half a core or more while it ran, it is repeated once (time allowing) and the less
 * disturbed of the two kept.
 */
async function measure<T>(
  task: string,
  params: unknown,
  timeoutMs: number,
  env: Record<string, string> = {},
  o: { script?: string; retry?: boolean } = {},
): Promise<Measured<T>> {
  let kept: Measured<T> | undefined;
  for (let attempt = 0; attempt < (o.retry === false ? 1 : 2); attempt++) {
    const quiet = await waitForQuiet(Math.min(waitBudgetMs, quick ? 3000 : attempt ? 45_000 : 20_000));
    waitBudgetMs -= quiet.waitedMs;
    console.error(
      `[bench] ${task} ${JSON.stringify(params)}${attempt ? ' (again: disturbed)' : ''}${quiet.cores >= 0.3 ? ` (other processes busy: ${quiet.busy.join(', ')})` : ''}`,
    );
    const monitor = new CpuMonitor();
    const r = await runChild<T>(task, params, timeoutMs, env, o.script);
    const during = monitor.stop();
    console.error(
      `[bench]   ${r.ok ? 'done' : `FAILED: ${r.error?.split('\n')[0]}`} in ${r.seconds.toFixed(1)} s${during.cores >= 0.3 ? `; other processes used ${during.cores.toFixed(1)} cores meanwhile` : ''}`,
    );
    const m: Measured<T> = { ...r, task, params, othersCores: during.cores, othersBusy: during.busy, attempts: attempt + 1 };
    if (!kept || (m.ok && (!kept.ok || m.othersCores < kept.othersCores))) kept = { ...m, attempts: attempt + 1 };
    if (!m.ok || during.cores < 0.5 || (performance.now() - started) / 1000 > RETRY_UNTIL_S) break;
  }
  return kept!;
}

const DTYPES: GraphDtype[] = quick ? ['int8'] : ['int8', 'fp32', 'int4'];
const THREADS = quick ? [2] : [2, 1];
const PREFILL = quick ? [128, 512] : [128, 512, 1024];
const PEER_DTYPES: PeerDtype[] = ['q8', 'fp32'];

const SIZE_LIST = (values.sizes?.split(',') ?? SIZES) as OptSize[];
for (const s of SIZE_LIST) if (!SIZES.includes(s)) throw new Error(`unknown size ${s}: choose from ${SIZES.join(', ')}`);
const runtimeRoot = values['runtime-root'] ? resolve(values['runtime-root']) : undefined;

const plan: Record<SectionName, () => Promise<Measured<unknown>[]>> = {
  ours: async () => {
    const runs: Measured<unknown>[] = [await measure('baseline', {}, 60_000)];
    for (const dtype of DTYPES) {
      for (const threads of THREADS) {
        runs.push(await measure('ours-cold', { dtype, threads }, 180_000));
        runs.push(await measure('ours', { dtype, threads, quick, prefillLengths: PREFILL, promptTokens: 128, newTokens: 64 }, 300_000));
      }
    }
    return runs;
  },
  peer: async () => {
    const runs: Measured<unknown>[] = [await measure('peer-export', {}, 180_000)];
    const peer = (dtype: PeerDtype, threads: number) =>
      measure<PeerResult>('peer', { dtype, threads, quick, prefillLengths: PREFILL, promptTokens: 128, newTokens: 64 }, 300_000);
    const at2: Measured<PeerResult>[] = [];
    for (const dtype of PEER_DTYPES) at2.push(await peer(dtype, 2));
    runs.push(...at2);
    // On one thread, only transformers.js's best precision (by greedy decode on two).
    const best = at2
      .filter((x) => x.ok)
      .sort(
        (a, b) => (b.result!.generation.greedy?.decodeTokensPerSecond ?? 0) - (a.result!.generation.greedy?.decodeTokensPerSecond ?? 0),
      )[0];
    if (THREADS.includes(1) && best) runs.push(await peer(best.result!.dtype, 1));
    return runs;
  },
  bandwidth: async () => [await measure('bandwidth', { quick }, 180_000)],
  editor: async () => [
    await measure('editor', { quick, dtype: 'int8', threads: 2, contextTokens: 1500, maxNewTokens: 16 }, quick ? 240_000 : 600_000),
  ],
  graph: async () => [
    await measure('decode-step', { dtype: 'int8', threads: 2, steps: quick ? 12 : 16 }, 240_000),
    await measure('graph-options', { threads: 2, steps: quick ? 8 : 32, promptLen: 128, budgetMs: quick ? 1500 : 5000 }, 400_000),
  ],
  profile: async () => [
    await measure('profile', { threads: 2, quick }, 240_000),
    await measure('session-settings', { quick, contexts: [128, 1024] }, 240_000),
    await measure('memory', { label: 'defaults', arena: true }, 120_000),
    await measure('memory', { label: 'onnxruntime arena off', arena: false }, 120_000),
    // glibc otherwise raises its mmap threshold after the first large free and keeps freed buffers.
    await measure('memory', { label: 'MALLOC_MMAP_THRESHOLD_=131072', arena: true }, 120_000, { MALLOC_MMAP_THRESHOLD_: '131072' }),
  ],
  sizes: async () => {
    const script = SIZES_SCRIPT;
    // Writing and converting a checkpoint is done once (cached) and timed by no one: not repeated when disturbed.
    const runs: Measured<unknown>[] = [];
    for (const size of SIZE_LIST) runs.push(await measure('sizes-prepare', { size }, 1_800_000, {}, { script, retry: false }));
    runs.push(await measure('sizes-bandwidth', { threads: 2, reps: quick ? 3 : 5 }, 180_000, {}, { script }));
    for (const size of SIZE_LIST) {
      if (!runs.some((x) => x.ok && (x.result as SizePrepareResult).size === size)) continue;
      runs.push(
        await measure(
          'sizes-decode',
          { size, threads: 2, contexts: [128, 1500], newTokens: quick ? 16 : 32 },
          600_000,
          {},
          { script, retry: size !== 'opt-1.3b' },
        ),
      );
      const e = SIZE_EDITOR_PLAN[size];
      const editor: EditorParams & { size: OptSize } = {
        size,
        model: OPT_SIZES[size].dir,
        dtype: 'int8',
        threads: 2,
        contextTokens: 1500,
        maxNewTokens: 16,
        documents: ['service.ts'],
        typedChars: quick ? Math.min(e.typedChars ?? 100, 60) : e.typedChars,
        pausedSamples: quick ? Math.min(e.pausedSamples, 3) : e.pausedSamples,
        lineLength: false,
        ...(runtimeRoot ? { runtimeRoot } : {}),
      };
      runs.push(await measure('sizes-editor', editor, 1_200_000, {}, { script, retry: size === 'opt-125m' }));
    }
    return runs;
  },
  quality: async () => {
    const runs: Measured<unknown>[] = [];
    for (const model of TRAINED_MODELS) {
      for (const dtype of quick ? (['fp32', 'int8'] as const) : QUALITY_DTYPES) {
        // Perplexity does not depend on the machine's load: never repeated.
        runs.push(
          await measure(
            'quality',
            { model, dtype, budgetBytes: quick ? 24_000 : 96_000, maxLength: 1024, stride: 512 },
            600_000,
            {},
            { script: QUALITY_SCRIPT, retry: false },
          ),
        );
      }
    }
    // Ghost text on held-out code, per precision and per context length (the target only).
    for (const dtype of quick ? (['int8'] as const) : (['fp32', 'int8', 'int4'] as const)) {
      for (const contextTokens of quick ? [256] : [256, 1024]) {
        runs.push(
          await measure(
            'completion-quality',
            { model: 'opt-target', dtype, contextTokens, perKind: quick ? 2 : 4, files: quick ? 4 : 10, maxNewTokens: 48 },
            900_000,
            {},
            { script: COMPLETION_QUALITY_SCRIPT, retry: false },
          ),
        );
      }
    }
    return runs;
  },
  speculation: async () => {
    // Prompt lookup against plain decoding, each input both ways in one process: rewrites and ghost
    // text on the trained target's held-out files, and the random 125m-shaped checkpoint (worst case).
    const random = await ensureCheckpoint();
    const runs: Measured<unknown>[] = [];
    for (const [task, model, samples] of [
      ['rewrite', 'opt-target', quick ? 4 : 12],
      ['ghost', 'opt-target', quick ? 6 : 24],
      ['random', random, quick ? 3 : 8],
      ['assisted', 'opt-target', quick ? 6 : 24],
    ] as const) {
      const assistant = task === 'assisted' ? { assistant: 'opt-draft' } : {};
      runs.push(
        await measure(
          'speculation',
          { task, model, dtype: 'int8', lookupTokens: 10, samples, ...assistant },
          900_000,
          {},
          { script: SPECULATION_SCRIPT },
        ),
      );
    }
    // Ghost text as the editor asks for it, through the runtime process: the completion-quality
    // positions at 1,500 tokens of context, without and with prompt lookup (the editor's default).
    for (const promptLookupTokens of [0, 10]) {
      runs.push(
        await measure(
          'completion-quality',
          {
            model: 'opt-target',
            dtype: 'int8',
            contextTokens: 1500,
            perKind: quick ? 2 : 4,
            files: quick ? 4 : 10,
            maxNewTokens: 48,
            promptLookupTokens,
          },
          900_000,
          {},
          { script: COMPLETION_QUALITY_SCRIPT, retry: false },
        ),
      );
    }
    return runs;
  },
};

for (const name of SECTIONS) {
  if (!only.has(name)) continue;
  const t0 = performance.now();
  const measuredAt = new Date().toISOString();
  const stamp = {
    measuredAt,
    quick,
    commit: results.code.commit,
    seconds: 0,
    runtimeChanged: results.code.runtimeChanged,
    ...(name === 'sizes' && runtimeRoot ? { runtimeRoot } : {}),
  };
  const earlier = results.sections[name];
  try {
    results.sections[name] = { ...stamp, runs: await plan[name]() };
  } catch (err) {
    results.sections[name] = { ...stamp, runs: [], error: (err as Error).stack ?? String(err) };
  }
  if (earlier) (results.previous ??= {})[name] = earlier;
  results.sections[name]!.seconds = (performance.now() - t0) / 1000;
  results.seconds = (performance.now() - started) / 1000;
  writeFileSync(resultsFile, JSON.stringify(results, null, 2)); // partial results survive a later crash
}

results.seconds = (performance.now() - started) / 1000;
writeFileSync(resultsFile, JSON.stringify(results, null, 2));
writeFileSync(reportFile, renderReport(results));
console.error(`[bench] ${results.seconds.toFixed(0)} s; wrote ${resultsFile} and ${reportFile}`);
