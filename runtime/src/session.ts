// The only module that imports onnxruntime-node: creates inference sessions for a device and
// runs them. Everything above it speaks in plain typed arrays and this module's Tensor type.

import * as ort from 'onnxruntime-node';
import { UsageError } from './errors.js';

export type Tensor = ort.Tensor;
export const Tensor = ort.Tensor;

export const DEVICES = ['cpu', 'webgpu', 'cuda'] as const;
export type Device = (typeof DEVICES)[number];

export interface SessionSettings {
  device: Device;
  /** Intra-op threads; 0 lets onnxruntime choose (one per physical core). */
  threads: number;
}

export const DEFAULT_SESSION_SETTINGS: SessionSettings = { device: 'cpu', threads: 0 };

export interface ModelSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /** Element type of each tensor input ('float32', 'float16', 'int64', …). */
  readonly inputTypes: Readonly<Record<string, string>>;
  /** Declared shape of each tensor input: sizes, or symbolic names such as 'batch_size'. */
  readonly inputShapes: Readonly<Record<string, readonly (number | string)[]>>;
  /** Runs the model; `fetches` maps output names to preallocated tensors to fill (null: allocate). */
  run(feeds: Record<string, Tensor>, fetches?: Record<string, Tensor | null>): Promise<Record<string, Tensor>>;
  release(): Promise<void>;
}

export async function createSession(modelPath: string, settings: SessionSettings): Promise<ModelSession> {
  if (!(DEVICES as readonly string[]).includes(settings.device)) {
    throw new UsageError(`unknown device "${settings.device}": choose one of ${DEVICES.join(', ')}`);
  }
  const session = await ort.InferenceSession.create(modelPath, {
    executionProviders: [settings.device],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: settings.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
  });
  return {
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    inputTypes: Object.fromEntries(session.inputMetadata.map((m) => [m.name, m.isTensor ? m.type : 'non-tensor'])),
    inputShapes: Object.fromEntries(session.inputMetadata.map((m) => [m.name, m.isTensor ? m.shape : []])),
    run: (feeds, fetches) => (fetches ? session.run(feeds, fetches) : session.run(feeds)) as Promise<Record<string, Tensor>>,
    release: () => session.release(),
  };
}
