// The only module that imports onnxruntime-node: creates inference sessions for a device and
// runs them. Everything above it speaks in plain typed arrays and this module's Tensor type.
// Which device a load uses, with its fallback to the CPU, is device/open.ts's job.

import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import { DEVICE_CHOICES, type DeviceChoice, EXECUTION_DEVICES, type ExecutionDevice } from './device/select.js';
import { UsageError } from '../../protocol/errors.js';

export type Tensor = ort.Tensor;
export const Tensor = ort.Tensor;

/** What a user may ask for (`auto` included); device/select.ts turns it into execution devices. */
export const DEVICES = DEVICE_CHOICES;
export type Device = DeviceChoice;

export interface SessionSettings {
  device: ExecutionDevice;
  /** Intra-op threads; 0 lets onnxruntime choose (one per physical core). */
  threads: number;
  /**
   * Let onnxruntime's intra-op threads spin between kernels (default on, onnxruntime's own default).
   * Measured with the append cache (bench/RESULTS.md, int8, 2 threads, context 128): 8.1 ms per
   * step for 19.0 CPU ms spinning, 10.3 ms for 17.6 CPU ms not: 27% faster for 8% more CPU.
   */
  spin?: boolean;
  /** CUDA: the GPU's index (CUDA_VISIBLE_DEVICES numbering). */
  deviceId?: number;
  /** WebGPU: Dawn's validation of each command ('basic' is onnxruntime's default; 'disabled' saves CPU time per dispatch). */
  webgpuValidation?: 'disabled' | 'wgpuOnly' | 'basic' | 'full';
  /** Outputs onnxruntime leaves in GPU memory, e.g. the KV cache; applied on WebGPU only (onnxruntime-node 1.30's gpu-buffer outputs are WebGPU buffers). */
  preferredOutputLocation?: Record<string, 'cpu' | 'gpu-buffer'>;
  /** onnxruntime's CPU memory arena (default on): off returns freed activations to the allocator. */
  cpuMemArena?: boolean;
  /** Writes onnxruntime's per-operator profile to `<prefix>_<time>.json` when the session is released. */
  profileFilePrefix?: string;
}

export const DEFAULT_SESSION_SETTINGS: SessionSettings = { device: 'cpu', threads: 0 };

/**
 * The most intra-op threads a session may have: this machine's logical CPUs (os.availableParallelism,
 * which honours the process's CPU affinity). Intra-op threads are compute-bound workers of one
 * kernel at a time, and spin between kernels by default, so a thread beyond the logical CPUs only
 * time-slices a core another thread already keeps busy: it cannot make a step faster, and each one
 * costs a stack and onnxruntime's per-thread buffers (100000 asked for once took 5.6 GB and never
 * finished loading). Every session is created through createSession, which enforces this; the rpc
 * and command-line boundaries check it first to refuse a bad value before any loading starts.
 */
export function maxThreads(): number {
  return Math.max(1, availableParallelism());
}

/** `threads` if it is 0 (onnxruntime's choice: one per physical core) or 1 … maxThreads(); else a UsageError naming the limit. */
export function checkThreads(threads: unknown, name = 'threads'): number {
  const max = maxThreads();
  if (typeof threads !== 'number' || !Number.isInteger(threads) || threads < 0 || threads > max) {
    const got = typeof threads === 'string' ? JSON.stringify(threads) : String(threads);
    throw new UsageError(`${name} must be an integer from 0 (one per physical core) to ${max} (this machine's logical CPUs), got ${got}`);
  }
  return threads;
}

export interface ModelSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /** Element type of each tensor input ('float32', 'float16', 'int64', …). */
  readonly inputTypes: Readonly<Record<string, string>>;
  /** Declared shape of each tensor input: sizes, or symbolic names such as 'batch_size'. */
  readonly inputShapes: Readonly<Record<string, readonly (number | string)[]>>;
  /** Outputs named in preferredOutputLocation stay in device memory (and preallocated fetches are then ignored by onnxruntime-node). */
  readonly outputsOnDevice?: boolean;
  /** Runs the model; `fetches` maps output names to preallocated tensors to fill (null: allocate). */
  run(feeds: Record<string, Tensor>, fetches?: Record<string, Tensor | null>): Promise<Record<string, Tensor>>;
  release(): Promise<void>;
}

/**
 * The provider entry for onnxruntime-node 1.30. Its binding passes few options through
 * (js/node/src/session_options_helper.cc): CUDA gets only `deviceId` (arena and cuDNN settings stay
 * onnxruntime's defaults: cuDNN matters only for convolutions, which OPT has none of); WebGPU takes
 * preferredLayout, validationMode, *BufferCacheMode, enableRobustness and forceCpuNodeNames, and
 * refuses any other key (deviceId included).
 */
export function executionProvider(s: SessionSettings): ort.InferenceSession.ExecutionProviderConfig {
  switch (s.device) {
    case 'cpu':
      return 'cpu';
    case 'cuda':
      return { name: 'cuda', deviceId: s.deviceId ?? 0 };
    case 'webgpu':
      // 'bucket' reuses freed storage buffers by size class: the KV cache and activations of a
      // decode step come back at the same sizes every step.
      return {
        name: 'webgpu',
        validationMode: s.webgpuValidation ?? 'basic',
        storageBufferCacheMode: 'bucket',
      } as ort.InferenceSession.ExecutionProviderConfig;
  }
}

export async function createSession(modelPath: string, settings: SessionSettings): Promise<ModelSession> {
  if (!(EXECUTION_DEVICES as readonly string[]).includes(settings.device)) {
    throw new UsageError(
      `unknown device "${settings.device}": createSession takes one of ${EXECUTION_DEVICES.join(', ')} (device auto is resolved by device/open.ts createSessionForDevice)`,
    );
  }
  checkThreads(settings.threads);
  // Device-resident outputs: WebGPU only (onnxruntime-node 1.30 binds gpu-buffer outputs to WebGPU's memory).
  const outputsOnDevice = settings.device === 'webgpu' && !!settings.preferredOutputLocation;
  const session = await ort.InferenceSession.create(modelPath, {
    executionProviders: [executionProvider(settings)],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: settings.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    // The Node binding takes config entries as strings only.
    extra: { session: { intra_op: { allow_spinning: settings.spin === false ? '0' : '1' } } },
    ...(outputsOnDevice ? { preferredOutputLocation: settings.preferredOutputLocation } : {}),
    ...(settings.cpuMemArena === false ? { enableCpuMemArena: false } : {}),
    ...(settings.profileFilePrefix ? { enableProfiling: true, profileFilePrefix: settings.profileFilePrefix } : {}),
  });
  return {
    outputsOnDevice,
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    inputTypes: Object.fromEntries(session.inputMetadata.map((m) => [m.name, m.isTensor ? m.type : 'non-tensor'])),
    inputShapes: Object.fromEntries(session.inputMetadata.map((m) => [m.name, m.isTensor ? m.shape : []])),
    run: (feeds, fetches) => (fetches ? session.run(feeds, fetches) : session.run(feeds)) as Promise<Record<string, Tensor>>,
    release: () => {
      if (settings.profileFilePrefix) session.endProfiling();
      return session.release();
    },
  };
}
