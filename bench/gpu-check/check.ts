// The GPU check: on a machine with a GPU, builds random checkpoints shaped like opt-125m and
// opt-1.3b (the project's fixture writer, real Hugging Face layout), converts them, checks that the
// GPU's fp16 logits match the CPU's fp32 within fp16 tolerance (prefill and decode steps, KV cache
// included), then measures time to first token, prefill and decode tokens/s at batch 1 and 8.
// Prints a table and writes JSON. Packed with Node and every native library it needs by pack.ts,
// so it runs where there is no Node and no network:   ./run.sh [--device auto|cuda|webgpu|cpu] …
//
//   --device LIST     devices to check, comma-separated (default auto: every GPU provider this machine
//                     can try; cpu runs the same checks on the CPU provider, for CI)
//   --shapes LIST     125m,1.3b (default) or tiny (CI)
//   --prompt N        prompt tokens per row for the timings (default 128)
//   --steps N         decode steps timed (default 64)
//   --batches LIST    default 1,8
//   --work DIR        checkpoints and converted models (default ./work beside run.sh)
//   --out FILE        JSON results (default gpu-check-results.json in the working directory)

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import type { KvCache } from '../../runtime/src/decoder.js';
import { probeDevices } from '../../runtime/src/device/probe.js';
import { type ExecutionDevice, isDeviceChoice, planDevices } from '../../runtime/src/device/select.js';
import { type OptModel, loadOptModel } from '../../runtime/src/model.js';
import { writeOptCheckpoint } from '../../test/fixtures/optCheckpoint.js';

const SHAPES = {
  tiny: {
    vocab_size: 50272,
    hidden_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    ffn_dim: 256,
    max_position_embeddings: 512,
    word_embed_proj_dim: 64,
    do_layer_norm_before: true,
  },
  '125m': {
    vocab_size: 50272,
    hidden_size: 768,
    num_hidden_layers: 12,
    num_attention_heads: 12,
    ffn_dim: 3072,
    max_position_embeddings: 2048,
    word_embed_proj_dim: 768,
    do_layer_norm_before: true,
  },
  '1.3b': {
    vocab_size: 50272,
    hidden_size: 2048,
    num_hidden_layers: 24,
    num_attention_heads: 32,
    ffn_dim: 8192,
    max_position_embeddings: 2048,
    word_embed_proj_dim: 2048,
    do_layer_norm_before: true,
  },
} as const;
type ShapeName = keyof typeof SHAPES;

/** fp16 keeps 11 significant bits; over a dozen layers the logits drift by about 1% of their range. */
const FP16_RELATIVE_TOLERANCE = 2e-2;
const PARITY_PROMPT = [2, 31414, 232, 328, 740, 1140, 12695, 69, 46078, 1588, 2, 250, 1345, 9, 10, 4758];
const PARITY_NEXT = [42891, 7, 1437];

const { values: args } = parseArgs({
  options: {
    device: { type: 'string', default: 'auto' },
    shapes: { type: 'string', default: '125m,1.3b' },
    prompt: { type: 'string', default: '128' },
    steps: { type: 'string', default: '64' },
    batches: { type: 'string', default: '1,8' },
    work: { type: 'string' },
    out: { type: 'string', default: 'gpu-check-results.json' },
    threads: { type: 'string', default: '0' },
  },
});

function fail(message: string): never {
  process.stderr.write(`gpu-check: ${message}\n`);
  process.exit(2);
}

const int = (s: string, name: string) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) fail(`--${name} must be a positive integer, got "${s}"`);
  return n;
};
const promptLen = int(args.prompt, 'prompt');
const steps = int(args.steps, 'steps');
const batches = args.batches.split(',').map((b) => int(b, 'batches'));
const threads = Number(args.threads);
const shapes = args.shapes.split(',').map((s) => s.trim()) as ShapeName[];
for (const s of shapes) if (!(s in SHAPES)) fail(`unknown shape "${s}": choose from ${Object.keys(SHAPES).join(', ')}`);
const work = resolve(args.work ?? join(process.env.GPU_CHECK_HOME ?? process.cwd(), 'work'));

// Which devices to check: auto means every GPU provider the planner would try here.
const probe = probeDevices();
let devices: ExecutionDevice[];
const skippedNotes: string[] = [];
if (args.device === 'auto') {
  const plan = planDevices('auto', probe);
  devices = plan.candidates.filter((d) => d !== 'cpu');
  for (const s of plan.skipped) skippedNotes.push(`${s.device}: ${s.reason}`);
  if (devices.length === 0)
    fail(`no GPU provider can run here:\n  ${skippedNotes.join('\n  ')}\n(--device cpu runs the same checks on the CPU)`);
} else {
  const asked = args.device.split(',').map((d) => d.trim());
  for (const d of asked)
    if (!isDeviceChoice(d) || d === 'auto') fail(`--device: unknown device "${d}": choose auto, or a list of cpu, webgpu, cuda`);
  devices = asked as ExecutionDevice[];
  for (const d of devices) {
    try {
      planDevices(d, probe);
    } catch (e) {
      fail((e as Error).message);
    }
  }
}

interface BatchTiming {
  batch: number;
  promptTokens: number;
  ttftMs: number;
  prefillTokensPerSecond: number;
  decodeSteps: number;
  decodeTokensPerSecond: number;
  decodeMsPerStep: number;
}
interface DeviceResult {
  shape: ShapeName;
  requested: ExecutionDevice;
  device: ExecutionDevice | 'failed';
  fallback?: string;
  error?: string;
  dtype?: string;
  loadSeconds?: number;
  parity?: {
    maxAbsDiff: number;
    scale: number;
    relative: number;
    tolerance: number;
    argmaxAgree: number;
    positions: number;
    pass: boolean;
  };
  timings?: BatchTiming[];
}

const results: DeviceResult[] = [];
const gpu = gpuInfo();
log(`GPU: ${gpu.name}${gpu.driver ? ` (driver ${gpu.driver})` : ''}${gpu.memory ? `, ${gpu.memory}` : ''}`);
log(
  `devices: ${devices.join(', ')}; shapes: ${shapes.join(', ')}; prompt ${promptLen} tokens, ${steps} decode steps, batches ${batches.join(', ')}`,
);
for (const note of skippedNotes) log(`not checked: ${note}`);

for (const shape of shapes) {
  const config = SHAPES[shape];
  const dir = join(work, `opt-${shape}-random`);
  const cacheDir = join(work, 'onnx-cache');
  if (!existsSync(join(dir, 'config.json'))) {
    log(`writing an opt-${shape}-shaped random checkpoint to ${dir} …`);
    // fp16 storage halves the 1.3b checkpoint (2.6 GB); the reference still computes in fp32.
    await writeOptCheckpoint(dir, { config, dtype: shape === 'tiny' ? 'F32' : 'F16', seed: 1 });
  }
  const needed = promptLen + steps + 1;
  if (needed > config.max_position_embeddings)
    fail(`--prompt + --steps (${needed}) exceed opt-${shape}'s ${config.max_position_embeddings} positions`);

  log(`[${shape}] CPU fp32 reference …`);
  const cpu = await loadOptModel(dir, { device: 'cpu', dtype: 'fp32', cacheDir, threads });
  const reference = await parityLogits(cpu);
  await cpu.dispose();

  for (const requested of devices) {
    const r: DeviceResult = { shape, requested, device: 'failed' };
    results.push(r);
    let model: OptModel | undefined;
    try {
      const started = performance.now();
      model = await loadOptModel(dir, { device: requested, dtype: 'fp16', cacheDir, threads });
      r.loadSeconds = round((performance.now() - started) / 1000, 2);
      r.device = model.device;
      r.dtype = model.source.dtype;
      if (model.deviceFallback) r.fallback = model.deviceFallback;
      if (model.device !== requested) {
        log(`[${shape}] ${requested}: did not start (${model.deviceFallback}); skipping its timings`);
        continue;
      }
      const got = await parityLogits(model);
      r.parity = compare(got, reference);
      log(
        `[${shape}] ${requested} fp16 vs CPU fp32: max |Δ| ${r.parity.maxAbsDiff.toExponential(2)} over logits of scale ${r.parity.scale.toFixed(2)} (relative ${r.parity.relative.toExponential(2)}, tolerance ${FP16_RELATIVE_TOLERANCE}); argmax agrees at ${r.parity.argmaxAgree}/${r.parity.positions} positions: ${r.parity.pass ? 'PASS' : 'FAIL'}`,
      );
      r.timings = [];
      for (const b of batches) {
        const t = await timeBatch(model, b, config.vocab_size);
        r.timings.push(t);
        log(
          `[${shape}] ${requested} batch ${b}: TTFT ${t.ttftMs.toFixed(1)} ms, prefill ${t.prefillTokensPerSecond.toFixed(0)} tok/s, decode ${t.decodeTokensPerSecond.toFixed(1)} tok/s (${t.decodeMsPerStep.toFixed(2)} ms/step)`,
        );
      }
    } catch (e) {
      r.error = (e as Error).stack ?? String(e);
      log(`[${shape}] ${requested}: error: ${(e as Error).message}`);
    } finally {
      await model?.dispose();
    }
  }
}

const report = {
  createdAt: new Date().toISOString(),
  gpu,
  machine: {
    cpu: cpuModel(),
    logicalCores: cpus().length,
    ramGiB: round(totalmem() / 2 ** 30, 1),
    node: process.version,
    onnxruntime: ortVersion(),
    cudaProvider: probe.cudaProvider.installed,
    nvidiaGpus: probe.nvidiaGpus,
  },
  settings: { devices, shapes, promptTokens: promptLen, decodeSteps: steps, batches, tolerance: FP16_RELATIVE_TOLERANCE },
  notChecked: skippedNotes,
  results,
};
writeFileSync(resolve(args.out), `${JSON.stringify(report, null, 2)}\n`);
printTable();
log(`wrote ${resolve(args.out)}`);
const failed = results.filter((r) => r.error || (r.parity && !r.parity.pass) || r.device !== r.requested);
process.exit(failed.length > 0 ? 1 : 0);

/** Last-position logits after the parity prompt and after each next token, batch 1, through the KV cache. */
async function parityLogits(model: OptModel): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  let ids = [...PARITY_PROMPT];
  let feed = ids;
  let past: KvCache | undefined;
  for (let i = 0; i <= PARITY_NEXT.length; i++) {
    const r = await model.decoder.forward({
      inputIds: BigInt64Array.from(feed, BigInt),
      batch: 1,
      attentionMask: new BigInt64Array(ids.length).fill(1n),
      past,
      logitsToKeep: 1,
    });
    out.push(r.logits.slice());
    past = r.present;
    if (i < PARITY_NEXT.length) {
      feed = [PARITY_NEXT[i]!];
      ids = [...ids, PARITY_NEXT[i]!];
    }
  }
  return out;
}

function compare(got: Float32Array[], want: Float32Array[]) {
  let maxAbsDiff = 0,
    scale = 1,
    argmaxAgree = 0;
  for (const [i, g] of got.entries()) {
    const w = want[i]!;
    let gi = 0,
      wi = 0;
    for (let j = 0; j < w.length; j++) {
      maxAbsDiff = Math.max(maxAbsDiff, Math.abs(g[j]! - w[j]!));
      scale = Math.max(scale, Math.abs(w[j]!));
      if (g[j]! > g[gi]!) gi = j;
      if (w[j]! > w[wi]!) wi = j;
    }
    if (gi === wi) argmaxAgree++;
  }
  const relative = maxAbsDiff / scale;
  // Random weights make near-ties common, so the argmax is reported but the tolerance decides.
  return {
    maxAbsDiff,
    scale,
    relative,
    tolerance: FP16_RELATIVE_TOLERANCE,
    argmaxAgree,
    positions: got.length,
    pass: Number.isFinite(relative) && relative <= FP16_RELATIVE_TOLERANCE,
  };
}

/** One warm-up, then the median of three prefills (TTFT: prompt in, first token chosen) and one timed greedy decode. */
async function timeBatch(model: OptModel, batch: number, vocab: number): Promise<BatchTiming> {
  const prompt = new BigInt64Array(batch * promptLen);
  for (let i = 0; i < prompt.length; i++) prompt[i] = BigInt(4 + ((i * 7919) % 50000));
  const reserve = promptLen + steps + 1;
  const prefill = async () => {
    const s = performance.now();
    const r = await model.decoder.forward({
      inputIds: prompt,
      batch,
      attentionMask: new BigInt64Array(batch * promptLen).fill(1n),
      logitsToKeep: 1,
      reserve,
    });
    const next = argmaxRows(r.logits, batch, vocab);
    return { ms: performance.now() - s, present: r.present, next };
  };
  const decode = async (first: Awaited<ReturnType<typeof prefill>>, n: number) => {
    let past = first.present,
      next = first.next;
    const s = performance.now();
    for (let i = 0; i < n; i++) {
      const t = promptLen + i + 1;
      const r = await model.decoder.forward({
        inputIds: next,
        batch,
        attentionMask: new BigInt64Array(batch * t).fill(1n),
        past,
        logitsToKeep: 1,
        reserve,
      });
      next = argmaxRows(r.logits, batch, vocab);
      past = r.present;
    }
    return performance.now() - s;
  };
  await decode(await prefill(), Math.min(4, steps)); // warm-up: kernels compiled, buffers allocated
  const prefills = [await prefill(), await prefill(), await prefill()];
  const ttftMs = prefills.map((p) => p.ms).sort((a, b) => a - b)[1]!;
  const decodeMs = await decode(prefills[2]!, steps);
  return {
    batch,
    promptTokens: promptLen,
    ttftMs: round(ttftMs, 2),
    prefillTokensPerSecond: round((batch * promptLen) / (ttftMs / 1000), 1),
    decodeSteps: steps,
    decodeTokensPerSecond: round((batch * steps) / (decodeMs / 1000), 1),
    decodeMsPerStep: round(decodeMs / steps, 3),
  };
}

function argmaxRows(logits: Float32Array, batch: number, vocab: number): BigInt64Array {
  const out = new BigInt64Array(batch);
  for (let b = 0; b < batch; b++) {
    let best = b * vocab;
    for (let j = b * vocab + 1; j < (b + 1) * vocab; j++) if (logits[j]! > logits[best]!) best = j;
    out[b] = BigInt(best - b * vocab);
  }
  return out;
}

/** The GPU's name: nvidia-smi, else the NVIDIA driver's /proc files, else Vulkan's device list. */
function gpuInfo(): { name: string; driver?: string; memory?: string; source: string } {
  try {
    const line = execFileSync('nvidia-smi', ['--query-gpu=name,driver_version,memory.total', '--format=csv,noheader'], {
      encoding: 'utf8',
      timeout: 20_000,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .trim()
      .split('\n')[0]!;
    const [name, driver, memory] = line.split(',').map((s) => s.trim());
    if (name) return { name, driver, memory, source: 'nvidia-smi' };
  } catch {
    // no nvidia-smi: try the next source
  }
  if (probe.nvidiaGpus.length > 0) {
    const driver = /Kernel Module\s+([\d.]+)/.exec(safeRead('/proc/driver/nvidia/version'))?.[1];
    return { name: probe.nvidiaGpus.join(', '), driver, source: '/proc/driver/nvidia' };
  }
  try {
    const summary = execFileSync('vulkaninfo', ['--summary'], { encoding: 'utf8', timeout: 20_000, stdio: ['ignore', 'pipe', 'ignore'] });
    const names = [...summary.matchAll(/deviceName\s*=\s*(.+)/g)].map((m) => m[1]!.trim());
    if (names.length > 0)
      return { name: names.join(', '), driver: /driverInfo\s*=\s*(.+)/.exec(summary)?.[1]?.trim(), source: 'vulkaninfo' };
  } catch {
    // no vulkaninfo
  }
  return { name: 'none found', source: 'none' };
}

function cpuModel(): string {
  return /^model name\s*:\s*(.+)$/m.exec(safeRead('/proc/cpuinfo'))?.[1] ?? cpus()[0]?.model ?? 'unknown';
}

function ortVersion(): string {
  return (ort.env as { versions?: { common?: string } }).versions?.common ?? 'unknown';
}

function safeRead(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

function printTable(): void {
  log('\nshape  device  dtype  parity (rel. Δ)   batch  TTFT ms  prefill tok/s  decode tok/s');
  for (const r of results) {
    const parity = r.parity ? `${r.parity.pass ? 'pass' : 'FAIL'} ${r.parity.relative.toExponential(1)}` : r.error ? 'error' : 'n/a';
    const rows = r.timings?.length ? r.timings : [undefined];
    for (const t of rows) {
      log(
        [
          r.shape.padEnd(6),
          (r.device === r.requested ? r.device : `${r.requested}→${r.device}`).padEnd(7),
          (r.dtype ?? '-').padEnd(6),
          parity.padEnd(17),
          String(t?.batch ?? '-').padEnd(6),
          (t ? t.ttftMs.toFixed(1) : '-').padEnd(8),
          (t ? t.prefillTokensPerSecond.toFixed(0) : '-').padEnd(14),
          t ? t.decodeTokensPerSecond.toFixed(1) : '-',
        ].join(' '),
      );
    }
  }
}
