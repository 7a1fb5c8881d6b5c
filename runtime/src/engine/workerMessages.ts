// Messages between the local engine (main thread) and its inference worker.

import type { EngineInfo, EngineRequest, EngineResult, EngineStatus, TaskRequest } from '../../../protocol/engine.js';
import type { SerializedError } from '../../../protocol/errors.js';
import type { LocalEngineOptions } from './localEngine.js';

export type ToWorker =
  | { type: 'load'; options: LocalEngineOptions }
  | { type: 'submit'; id: number; request: EngineRequest }
  /** A classify, answer or embed request: one pass, interactive priority. */
  | { type: 'task'; id: number; request: TaskRequest }
  | { type: 'cancel'; id: number }
  | { type: 'status'; id: number }
  | { type: 'shutdown' };

/** Errors cross the thread boundary as plain data (protocol/errors.ts revives them by name). */
export type FromWorker =
  | { type: 'loaded'; info: EngineInfo }
  | { type: 'loadFailed'; error: SerializedError }
  | { type: 'progress'; message: string }
  | { type: 'text'; id: number; delta: string }
  | { type: 'done'; id: number; result: EngineResult }
  | { type: 'taskDone'; id: number; result: unknown }
  | { type: 'error'; id: number; error: SerializedError }
  | { type: 'status'; id: number; status: Omit<EngineStatus, 'info' | 'rssBytes'> }
  | { type: 'closed' };
