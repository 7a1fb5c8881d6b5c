// The tasks each model had when it last loaded (generate, classify, answer…), kept in VS Code's
// globalState so that menus and commands fit the configured model before it loads again. The
// newest MODEL_TASKS_KEPT models are kept. No vscode import.

import type { EngineInfo, ModelTask } from './engines/completionEngine.js';
import { tasksOf } from './heads/modelTasks.js';

/** globalState's key. */
export const MODEL_TASKS_KEY = 'optComplete.modelTasks';
export const MODEL_TASKS_KEPT = 32;

/** The part of vscode.Memento the memo uses. */
export interface MementoLike {
  get<T>(key: string): T | undefined;
  update(key: string, value: unknown): Thenable<void>;
}

export class ModelTaskMemo {
  constructor(private readonly _state: MementoLike) {}

  /** The tasks `model` (as initialize is sent it) had when it last loaded, else undefined. */
  recall(model: string): readonly ModelTask[] | undefined {
    const remembered = this._read()[model];
    return Array.isArray(remembered) ? remembered : undefined;
  }

  /** Remembers a loaded model's tasks, as the newest entry; the oldest beyond the limit are dropped. */
  remember(info: EngineInfo): void {
    const memo = { ...this._read() };
    const tasks = [...(tasksOf(info) ?? [])];
    if (JSON.stringify(memo[info.modelId]) === JSON.stringify(tasks)) return;
    delete memo[info.modelId]; // re-inserted last: the oldest entries are dropped first
    memo[info.modelId] = tasks;
    const keys = Object.keys(memo);
    for (const k of keys.slice(0, Math.max(0, keys.length - MODEL_TASKS_KEPT))) delete memo[k];
    void this._state.update(MODEL_TASKS_KEY, memo);
  }

  private _read(): Record<string, ModelTask[]> {
    return this._state.get<Record<string, ModelTask[]>>(MODEL_TASKS_KEY) ?? {};
  }
}
