// Shared pieces of the benchmark suite: paths, the opt-125m-shaped checkpoint, statistics, the
// machine description, and running one measurement in a child process (so each configuration
// has its own peak RSS and a crash or hang in one section cannot take the others with it).

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeOptCheckpoint } from '../../test/fixtures/optCheckpoint.js';

export const ROOT = resolve(import.meta.dirname, '..', '..');
export const OUT_DIR = join(ROOT, 'bench', 'out');
/** The random checkpoint with opt-125m's exact shapes, and where its converted models are cached. */
export const CHECKPOINT_DIR = join(ROOT, '.cache', 'bench-opt-125m');
export const ONNX_CACHE_DIR = join(ROOT, '.cache', 'bench-onnx-cache');
/** The checkpoint exported in transformers.js's layout (onnx/model.onnx + model.onnx_data, tokenizer.json). */
export const PEER_MODEL_NAME = 'bench-opt-125m-tjs';
export const PEER_ROOT = join(ROOT, '.cache', 'bench-peer');

export const OPT_125M = {
  vocab_size: 50272,
  hidden_size: 768,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  ffn_dim: 3072,
  max_position_embeddings: 2048,
  word_embed_proj_dim: 768,
  do_layer_norm_before: true,
};
export const DECODER_SHAPE = { numLayers: 12, numHeads: 12, headDim: 64, vocabSize: 50272, maxPositions: 2048 };

export async function ensureCheckpoint(dir = CHECKPOINT_DIR): Promise<string> {
  if (!existsSync(join(dir, 'config.json')) || !existsSync(join(dir, 'model.safetensors'))) {
    console.error(`writing an opt-125m-shaped random checkpoint to ${dir} …`);
    await writeOptCheckpoint(dir, { config: OPT_125M, tokenizer: true, seed: 1 });
  }
  return dir;
}

/**
 * Random checkpoints with the exact shapes (and key layout) of three released OPT sizes. opt-350m
 * is the odd one: post-LN, 512-wide embeddings with project_in/out, bare `decoder.*` keys. opt-1.3b
 * is stored in fp16, as released (5.3 GB in fp32; safetensors files over 4 GiB cannot be written here).
 */
export const OPT_SIZES = {
  'opt-125m': { dir: CHECKPOINT_DIR, config: OPT_125M, dtype: 'F32', keyStyle: 'model.decoder', seed: 1 },
  'opt-350m': {
    dir: join(ROOT, '.cache', 'bench-opt-350m'),
    config: {
      vocab_size: 50272,
      hidden_size: 1024,
      num_hidden_layers: 24,
      num_attention_heads: 16,
      ffn_dim: 4096,
      max_position_embeddings: 2048,
      word_embed_proj_dim: 512,
      do_layer_norm_before: false,
    },
    dtype: 'F32',
    keyStyle: 'decoder',
    seed: 2,
  },
  'opt-1.3b': {
    dir: join(ROOT, '.cache', 'bench-opt-1.3b-f16'),
    config: {
      vocab_size: 50272,
      hidden_size: 2048,
      num_hidden_layers: 24,
      num_attention_heads: 32,
      ffn_dim: 8192,
      max_position_embeddings: 2048,
      word_embed_proj_dim: 2048,
      do_layer_norm_before: true,
    },
    dtype: 'F16',
    keyStyle: 'model.decoder',
    seed: 3,
  },
} as const;
export type OptSize = keyof typeof OPT_SIZES;

/**
 * The random checkpoint of one size, written once (into a temporary folder renamed into place, so
 * an interrupted write is never taken for a checkpoint) and reused by later runs. Returns its folder.
 */
export async function ensureSizedCheckpoint(size: OptSize): Promise<{ dir: string; written: boolean; seconds: number }> {
  const s = OPT_SIZES[size];
  if (size === 'opt-125m') {
    const had = existsSync(join(s.dir, 'model.safetensors'));
    const t0 = performance.now();
    await ensureCheckpoint(s.dir);
    return { dir: s.dir, written: !had, seconds: (performance.now() - t0) / 1000 };
  }
  if (existsSync(join(s.dir, 'config.json')) && existsSync(join(s.dir, 'model.safetensors')))
    return { dir: s.dir, written: false, seconds: 0 };
  const t0 = performance.now();
  const tmp = `${s.dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  console.error(`writing an ${size}-shaped random checkpoint (${s.dtype}) to ${s.dir} …`);
  await writeOptCheckpoint(tmp, {
    config: s.config,
    dtype: s.dtype,
    keyStyle: s.keyStyle,
    tokenizer: true,
    seed: s.seed,
    keepWeights: false,
  });
  rmSync(s.dir, { recursive: true, force: true });
  renameSync(tmp, s.dir);
  return { dir: s.dir, written: true, seconds: (performance.now() - t0) / 1000 };
}

export const median = (xs: readonly number[]): number => percentile(xs, 50);

/** Nearest-rank percentile (p in 0..100); NaN for an empty list. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/**
 * Runs `fn` at least `min` and at most `max` times, stopping early once `budgetMs` is spent;
 * returns each run's milliseconds.
 */
export async function timeRepeated(fn: () => Promise<unknown>, o: { min: number; max: number; budgetMs: number }): Promise<number[]> {
  const times: number[] = [];
  const started = performance.now();
  while (times.length < o.max && (times.length < o.min || performance.now() - started < o.budgetMs)) {
    const s = performance.now();
    await fn();
    times.push(performance.now() - s);
  }
  return times;
}

export function fileBytes(path: string): number {
  return existsSync(path) ? statSync(path).size : 0;
}

/** Bytes of every file in a folder (not recursive). */
export function folderBytes(dir: string): number {
  return readdirSync(dir).reduce((n, f) => n + fileBytes(join(dir, f)), 0);
}

export interface MachineInfo {
  cpuModel: string;
  logicalCores: number;
  ramBytes: number;
  node: string;
  onnxruntime: string;
  transformersJs: string;
  date: string;
  loadAverage: number[];
}

export function machineInfo(): MachineInfo {
  const cpuModel = /^model name\s*:\s*(.+)$/m.exec(safeRead('/proc/cpuinfo'))?.[1] ?? cpus()[0]?.model ?? 'unknown';
  const version = (pkg: string) =>
    (JSON.parse(safeRead(join(ROOT, 'node_modules', pkg, 'package.json')) || '{}') as { version?: string }).version ?? 'missing';
  return {
    cpuModel,
    logicalCores: cpus().length,
    ramBytes: totalmem(),
    node: process.version,
    onnxruntime: `onnxruntime-node ${version('onnxruntime-node')}`,
    transformersJs: version('@huggingface/transformers'),
    date: new Date().toISOString(),
    loadAverage: loadavg(),
  };
}

/** Per process: name, parent and CPU ticks (1/100 s), from /proc. */
export function cpuSnapshot(): Map<number, { name: string; ppid: number; ticks: number }> {
  const m = new Map<number, { name: string; ppid: number; ticks: number }>();
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    const stat = safeRead(`/proc/${pid}/stat`);
    const close = stat.lastIndexOf(')');
    if (close < 0) continue;
    const f = stat.slice(close + 2).split(' ');
    m.set(Number(pid), { name: stat.slice(stat.indexOf('(') + 1, close), ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) });
  }
  return m;
}

type Snapshot = Map<number, { name: string; ppid: number; ticks: number }>;

/** Whether `pid` is this process or one of its descendants. */
function isOurs(pid: number, ...snapshots: Snapshot[]): boolean {
  for (let p = pid, hops = 0; p > 1 && hops < 64; hops++) {
    if (p === process.pid) return true;
    p = snapshots.map((s) => s.get(p)?.ppid).find((x) => x !== undefined) ?? 0;
  }
  return false;
}

/** CPU seconds per other process between two snapshots (a process new in `b` counts all its time). */
function othersDelta(a: Snapshot, b: Snapshot): Map<string, number> {
  const out = new Map<string, number>();
  for (const [pid, v] of b) {
    if (isOurs(pid, b, a)) continue;
    const sec = (v.ticks - (a.get(pid)?.ticks ?? 0)) / 100;
    if (sec > 0) out.set(`${v.name} (${pid})`, (out.get(`${v.name} (${pid})`) ?? 0) + sec);
  }
  return out;
}

/**
 * Watches the CPU time of processes other than this one and its descendants, sampling every
 * second (so short-lived ones are seen too): benchmarks on a shared machine drift with it.
 */
export class CpuMonitor {
  private _last: Snapshot = cpuSnapshot();
  private readonly _started = performance.now();
  private readonly _seconds = new Map<string, number>();
  private readonly _timer = setInterval(() => this._sample(), 1000);

  private _sample(): void {
    const now = cpuSnapshot();
    for (const [name, sec] of othersDelta(this._last, now)) this._seconds.set(name, (this._seconds.get(name) ?? 0) + sec);
    this._last = now;
  }

  /** Average cores other processes used since the start, and the busiest of them. */
  stop(threshold = 0.1): { cores: number; busy: string[] } {
    clearInterval(this._timer);
    this._sample();
    const elapsed = (performance.now() - this._started) / 1000;
    const total = [...this._seconds.values()].reduce((a, b) => a + b, 0);
    const busy = [...this._seconds]
      .filter(([, sec]) => sec / elapsed >= threshold)
      .sort((x, y) => y[1] - x[1])
      .map(([n, sec]) => `${n.replace(/ \(\d+\)$/, '')} ${((100 * sec) / elapsed).toFixed(0)}%`);
    return { cores: total / elapsed, busy };
  }
}

/** CPU use of other processes over `sampleMs`. */
export async function otherProcessesCpu(sampleMs = 1000): Promise<{ cores: number; busy: string[] }> {
  const monitor = new CpuMonitor();
  await new Promise((r) => setTimeout(r, sampleMs));
  return monitor.stop();
}

/**
 * Waits (up to `maxWaitMs`) until other processes use less than `maxCores` of CPU, so a section
 * does not start in the middle of someone else's build; returns what was seen last.
 */
export async function waitForQuiet(maxWaitMs: number, maxCores = 0.3): Promise<{ waitedMs: number; cores: number; busy: string[] }> {
  const started = performance.now();
  for (;;) {
    const seen = await otherProcessesCpu();
    const waitedMs = performance.now() - started;
    if (seen.cores < maxCores || waitedMs >= maxWaitMs) return { waitedMs, ...seen };
  }
}

/** utime + stime of a process in seconds, from /proc/<pid>/stat (clock ticks of 1/100 s). */
export function processCpuSeconds(pid: number): number {
  const stat = safeRead(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

export interface ChildOutcome<T> {
  ok: boolean;
  result?: T;
  error?: string;
  seconds: number;
}

/**
 * Runs task `task` of bench/child.ts (or of another `script` with the same arguments) with `params` in a fresh Node process and returns what it
 * wrote. A child that throws, exits without a result or outlives `timeoutMs` is reported, not fatal.
 */
export function runChild<T>(
  task: string,
  params: unknown,
  timeoutMs: number,
  env: Record<string, string> = {},
  script = join(ROOT, 'bench', 'child.ts'),
): Promise<ChildOutcome<T>> {
  mkdirSync(OUT_DIR, { recursive: true });
  const outFile = join(OUT_DIR, `child-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}.json`);
  const started = performance.now();
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', script, task, JSON.stringify(params), outFile], {
      cwd: ROOT,
      stdio: ['ignore', 'inherit', 'pipe'],
      env: { ...process.env, ...env },
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
      process.stderr.write(d);
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const seconds = (performance.now() - started) / 1000;
      let parsed: { ok: boolean; result?: T; error?: string } | undefined;
      try {
        parsed = JSON.parse(readFileSync(outFile, 'utf8')) as typeof parsed;
      } catch {
        parsed = undefined;
      }
      rmSync(outFile, { force: true });
      if (parsed) return resolvePromise({ ...parsed, seconds });
      const why = timedOut ? `timed out after ${(timeoutMs / 1000).toFixed(0)} s` : `exited with ${signal ?? `code ${code}`} and no result`;
      resolvePromise({ ok: false, error: `${why}; stderr tail: ${lastLines(stderr, 6)}`, seconds });
    });
  });
}

function lastLines(s: string, n: number): string {
  return s.trim().split('\n').slice(-n).join(' | ');
}

/**
 * A section script that runChild starts as `node --import tsx <script> <task> '<json params>' <result file>`:
 * returns the script's path, and when this process is that script, runs the task, writes its
 * outcome to the result file and exits.
 */
export async function childScript(moduleUrl: string, tasks: Record<string, (params: never) => Promise<unknown>>): Promise<string> {
  const script = fileURLToPath(moduleUrl);
  if (!process.argv[1] || resolve(process.argv[1]) !== script) return script;
  const [task, paramsJson, outFile] = process.argv.slice(2);
  if (!task || !outFile || !tasks[task]) {
    console.error(`usage: node --import tsx ${script} <${Object.keys(tasks).join('|')}> '<json>' <result file>`);
    process.exit(2);
  }
  try {
    writeFileSync(outFile, JSON.stringify({ ok: true, result: await tasks[task]!(JSON.parse(paramsJson ?? '{}') as never) }));
  } catch (err) {
    writeFileSync(outFile, JSON.stringify({ ok: false, error: (err as Error)?.stack ?? String(err) }));
  }
  process.exit(0);
}
