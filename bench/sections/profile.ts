// What limits decode: onnxruntime's own profiler (a session opened here with enableProfiling, on
// the cached int8 model) breaks decode steps down by operator at several contexts and KV-cache
// capacities, against the step's wall time; and decode speed and CPU time per step under thread
// and spinning settings. Runs in a child of bench/run.ts; profiles land in bench/out/profile/.

import { mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { convertCheckpoint } from '../../runtime/src/convert.js';
import { type KvCache, OptDecoder, PREFILL_CHUNK } from '../../runtime/src/decoder.js';
import type { GraphDtype, KvCacheLayout } from '../../runtime/src/onnx/optGraph.js';
import { createSession } from '../../runtime/src/session.js';
import { CHECKPOINT_DIR, DECODER_SHAPE, ONNX_CACHE_DIR, OUT_DIR, median } from '../lib/util.js';

/** Prefills `context` token ids with room for `capacity` positions, then runs `steps` timed one-token steps. */
async function decodeSteps(
  dec: OptDecoder,
  context: number,
  capacity: number,
  steps: number,
  warmup: number,
  onStep?: () => void,
): Promise<number[]> {
  const mask = new BigInt64Array(context + warmup + steps).fill(1n);
  const logitsBuffer = new Float32Array(DECODER_SHAPE.vocabSize);
  const ids = BigInt64Array.from({ length: context }, (_, i) => BigInt(4 + ((i * 7919) % 50000)));
  let past: KvCache = (
    await dec.forward({
      inputIds: ids,
      batch: 1,
      attentionMask: mask.subarray(0, context),
      logitsToKeep: 1,
      reserve: capacity,
      logitsBuffer,
    })
  ).present;
  const times: number[] = [];
  for (let t = 0; t < warmup + steps; t++) {
    const s = performance.now();
    past = (
      await dec.forward({
        inputIds: BigInt64Array.of(BigInt(100 + t)),
        batch: 1,
        attentionMask: mask.subarray(0, context + t + 1),
        past,
        logitsToKeep: 1,
        logitsBuffer,
      })
    ).present;
    if (t >= warmup) {
      times.push(performance.now() - s);
      onStep?.();
    }
  }
  return times;
}

interface ProfileEvent {
  cat: string;
  name: string;
  ts: number;
  dur: number;
  args?: { op_name?: string; input_type_shape?: Record<string, number[]>[]; output_type_shape?: Record<string, number[]>[] };
}

export interface ProfileCase {
  label: string;
  dtype: GraphDtype;
  fused: boolean;
  context: number;
  capacity: number;
  steps: number;
  /** Median wall time of a step as JS sees it (forward() call to resolved promise). */
  wallMs: number;
  /** Mean of onnxruntime's own model_run duration over the profiled steps. */
  modelRunMs: number;
  /** Mean summed kernel time per step. */
  kernelMs: number;
  /** Mean kernel ms per step by operator group, largest first. */
  byOp: { op: string; ms: number; calls: number }[];
}

/** Names MatMulNBits / Gemm nodes by the projection they compute, from their shapes (opt-125m). */
function groupOf(e: ProfileEvent): string {
  const op = e.args?.op_name ?? e.name;
  if (op !== 'MatMulNBits' && op !== 'Gemm' && op !== 'MatMul') return op;
  const out = Object.values(e.args?.output_type_shape?.[0] ?? {})[0] ?? [];
  const inp = Object.values(e.args?.input_type_shape?.[0] ?? {})[0] ?? [];
  const n = out.at(-1),
    k = inp.at(-1);
  const what =
    n === DECODER_SHAPE.vocabSize
      ? 'lm_head'
      : n === 3 * 768
        ? 'qkv_proj'
        : n === 3072
          ? 'fc1'
          : n === 768 && k === 3072
            ? 'fc2'
            : n === 768 && k === 768
              ? 'out_proj'
              : 'attention matmul';
  return `${op} ${what}`;
}

export async function profileDecode(p: {
  threads?: number;
  steps?: number;
  quick?: boolean;
}): Promise<{ threads: number; cases: ProfileCase[] }> {
  const threads = p.threads ?? 2;
  const steps = p.steps ?? (p.quick ? 8 : 16);
  const dir = join(OUT_DIR, 'profile');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const plan: { label: string; dtype: GraphDtype; kvCache: KvCacheLayout; context: number; capacity: number }[] = [
    {
      label: 'int8, append cache, context 128, capacity 192 (generate: prompt + new tokens)',
      dtype: 'int8',
      kvCache: 'append',
      context: 128,
      capacity: 192,
    },
    { label: 'int8, append cache, context 1024, capacity 1088', dtype: 'int8', kvCache: 'append', context: 1024, capacity: 1088 },
    {
      label: 'int8, in-place cache bound as output, context 128, capacity 192',
      dtype: 'int8',
      kvCache: 'inplace',
      context: 128,
      capacity: 192,
    },
  ];
  if (!p.quick) {
    plan.push({
      label: "int8, append cache, context 1500, capacity 1536 (the editor's 1,500-token context)",
      dtype: 'int8',
      kvCache: 'append',
      context: 1500,
      capacity: 1536,
    });
    plan.push({
      label: 'int8, in-place cache bound as output, context 1500, capacity 1536',
      dtype: 'int8',
      kvCache: 'inplace',
      context: 1500,
      capacity: 1536,
    });
    plan.push({ label: 'int8 plain ops (Concat cache), context 1024', dtype: 'int8', kvCache: 'concat', context: 1024, capacity: 1024 });
    plan.push({ label: 'fp32, append cache, context 128, capacity 192', dtype: 'fp32', kvCache: 'append', context: 128, capacity: 192 });
  }
  const cases: ProfileCase[] = [];
  for (const [i, c] of plan.entries()) {
    const fused = c.kvCache !== 'concat';
    const { modelPath } = await convertCheckpoint(CHECKPOINT_DIR, { dtype: c.dtype, fused, kvCache: c.kvCache, cacheDir: ONNX_CACHE_DIR });
    const prefix = join(dir, `case${i}`);
    const model = await createSession(modelPath, { device: 'cpu', threads, profileFilePrefix: prefix });
    const dec = new OptDecoder(model, DECODER_SHAPE);
    const times = await decodeSteps(dec, c.context, c.capacity, steps, 3);
    await dec.release(); // writes the profile
    const file = readdirSync(dir).find((f) => f.startsWith(`case${i}`) && f.endsWith('.json'));
    if (!file) throw new Error(`onnxruntime wrote no profile for ${c.label}`);
    cases.push(
      summarize(
        c.label,
        { dtype: c.dtype, fused, context: c.context, capacity: c.capacity, steps },
        times,
        JSON.parse(readFileSync(join(dir, file), 'utf8')) as ProfileEvent[],
      ),
    );
  }
  return { threads, cases };
}

/** Per-step figures of the last `steps` runs of a profile. */
function summarize(
  label: string,
  c: { dtype: GraphDtype; fused: boolean; context: number; capacity: number; steps: number },
  times: number[],
  events: ProfileEvent[],
): ProfileCase {
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').slice(-c.steps);
  const inRun = (e: ProfileEvent) => runs.some((r) => e.ts >= r.ts && e.ts <= r.ts + r.dur);
  const kernels = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && inRun(e));
  const groups = new Map<string, { us: number; calls: number }>();
  for (const k of kernels) {
    const g = groups.get(groupOf(k)) ?? { us: 0, calls: 0 };
    g.us += k.dur;
    g.calls++;
    groups.set(groupOf(k), g);
  }
  const perStep = (us: number) => us / 1000 / runs.length;
  return {
    label,
    ...c,
    wallMs: median(times),
    modelRunMs: perStep(runs.reduce((n, r) => n + r.dur, 0)),
    kernelMs: perStep(kernels.reduce((n, k) => n + k.dur, 0)),
    byOp: [...groups].map(([op, g]) => ({ op, ms: perStep(g.us), calls: g.calls / runs.length })).sort((a, b) => b.ms - a.ms),
  };
}

export interface SessionSettingRow {
  label: string;
  threads: number;
  spinning: boolean;
  context: number;
  msPerStep: number;
  /** Process CPU time (user + system) per step: what the step costs the machine, spinning included. */
  cpuMsPerStep: number;
}

/** Decode speed and CPU cost per step under intra-op thread counts and thread-pool spinning. */
export async function compareSessionSettings(p: { quick?: boolean; contexts?: number[] }): Promise<SessionSettingRow[]> {
  const { modelPath } = await convertCheckpoint(CHECKPOINT_DIR, { dtype: 'int8', cacheDir: ONNX_CACHE_DIR });
  const steps = p.quick ? 12 : 24;
  const rows: SessionSettingRow[] = [];
  const settings = [
    { threads: 1, spinning: true },
    { threads: 2, spinning: true },
    { threads: 2, spinning: false },
  ];
  for (const s of settings) {
    const model = await createSession(modelPath, { device: 'cpu', threads: s.threads, spin: s.spinning });
    const dec = new OptDecoder(model, DECODER_SHAPE);
    for (const context of p.contexts ?? [128, 1024]) {
      const cpu0 = process.cpuUsage();
      const times = await decodeSteps(dec, context, context + 64, steps, 0);
      // The CPU time includes the prefill: subtract a prefill-only run's CPU time.
      const cpuAll = process.cpuUsage(cpu0);
      const cpu1 = process.cpuUsage();
      await decodeSteps(dec, context, context + 64, 0, 0);
      const cpuPrefill = process.cpuUsage(cpu1);
      const cpuMs = (cpuAll.user + cpuAll.system - cpuPrefill.user - cpuPrefill.system) / 1000;
      rows.push({
        label: `${s.threads} thread${s.threads > 1 ? 's' : ''}${s.threads > 1 ? (s.spinning ? ', spinning (default)' : ', allow_spinning=0') : ''}`,
        threads: s.threads,
        spinning: s.spinning,
        context,
        msPerStep: median(times),
        cpuMsPerStep: cpuMs / steps,
      });
    }
    await dec.release();
  }
  return rows;
}

export interface MemoryResult {
  /** The setting measured (the parent sets the environment, e.g. glibc's MALLOC_MMAP_THRESHOLD_). */
  label: string;
  arena: boolean;
  rssAfterLoadBytes: number;
  /** After a 1,024-token prompt prefilled in PREFILL_CHUNK-token chunks, as the engine does. */
  rssAfterChunkedPrefillBytes: number;
  /** After 32 more one-token steps. */
  rssAfterDecodeBytes: number;
  /** After a full garbage collection: what is still held once JS has dropped the per-step copies. */
  rssAfterGcBytes: number;
  /** Live ArrayBuffer memory after that collection (the KV cache, mostly). */
  arrayBuffersAfterGcBytes: number;
  peakRssBytes: number;
  decodeMsPerStep: number;
}

/**
 * Resident memory of the int8 model over a long prompt and decode, under one allocator setting
 * (run once per setting, each in its own process started with --expose-gc).
 */
export async function measureMemory(p: { label: string; arena: boolean }): Promise<MemoryResult> {
  const { modelPath } = await convertCheckpoint(CHECKPOINT_DIR, { dtype: 'int8', cacheDir: ONNX_CACHE_DIR });
  const model = await createSession(modelPath, { device: 'cpu', threads: 2, cpuMemArena: p.arena });
  const dec = new OptDecoder(model, DECODER_SHAPE);
  const rssAfterLoadBytes = process.memoryUsage().rss;
  const n = 1024,
    chunk = PREFILL_CHUNK,
    steps = 32;
  const ids = BigInt64Array.from({ length: n }, (_, i) => BigInt(4 + ((i * 7919) % 50000)));
  const mask = new BigInt64Array(n + steps).fill(1n);
  const logitsBuffer = new Float32Array(DECODER_SHAPE.vocabSize);
  let past: KvCache | undefined;
  for (let at = 0; at < n; at += chunk) {
    past = (
      await dec.forward({
        inputIds: ids.subarray(at, at + chunk),
        batch: 1,
        attentionMask: mask.subarray(0, at + chunk),
        past,
        logitsToKeep: 1,
        logitsBuffer,
      })
    ).present;
  }
  const rssAfterChunkedPrefillBytes = process.memoryUsage().rss;
  const times: number[] = [];
  for (let t = 0; t < steps; t++) {
    const s = performance.now();
    past = (
      await dec.forward({
        inputIds: BigInt64Array.of(BigInt(100 + t)),
        batch: 1,
        attentionMask: mask.subarray(0, n + t + 1),
        past,
        logitsToKeep: 1,
        logitsBuffer,
      })
    ).present;
    times.push(performance.now() - s);
  }
  const rssAfterDecodeBytes = process.memoryUsage().rss;
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  await new Promise((r) => setTimeout(r, 100));
  gc?.();
  const after = process.memoryUsage();
  await dec.release();
  return {
    label: p.label,
    arena: p.arena,
    rssAfterLoadBytes,
    rssAfterChunkedPrefillBytes,
    rssAfterDecodeBytes,
    rssAfterGcBytes: after.rss,
    arrayBuffersAfterGcBytes: after.arrayBuffers,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    decodeMsPerStep: median(times),
  };
}
