// What kind of OPT checkpoint is loaded and what it can do, in the user's words: the checkpoint
// type each editor feature needs, the status bar's name for a model that cannot generate, and the
// message when a feature meets the wrong kind of model. No vscode import.

import type { EngineInfo, ModelTask } from '../engines/completionEngine.js';

/** The Hugging Face architecture (config.json's `architectures`) whose head serves each task. */
export const TASK_ARCHITECTURE: Readonly<Record<ModelTask, string>> = {
  generate: 'OPTForCausalLM',
  classify: 'OPTForSequenceClassification',
  answer: 'OPTForQuestionAnswering',
  embed: 'OPTModel',
};

const TASK_DOING: Readonly<Record<ModelTask, string>> = {
  generate: 'Completing and generating text',
  classify: 'Classifying text',
  answer: 'Answering questions',
  embed: 'Embedding text',
};

/** The tasks a loaded model can do; a runtime from before EngineInfo.tasks could only generate. */
export function tasksOf(info: Pick<EngineInfo, 'tasks'> | undefined): readonly ModelTask[] | undefined {
  if (!info) return undefined;
  return Array.isArray(info.tasks) ? info.tasks : ['generate'];
}

/** A short name for what the model is (shown in the status bar when it is not a language model). */
export function modelKind(info: Pick<EngineInfo, 'tasks'>): string {
  const tasks = tasksOf(info)!;
  if (tasks.includes('generate')) return 'OPT language model';
  if (tasks.includes('classify')) return 'OPT classifier';
  if (tasks.includes('answer')) return 'OPT question answering';
  return 'OPT base model';
}

/** The last path or id segment: `facebook/opt-125m` → `opt-125m`, `/models/x/` → `x`. */
export function shortModelName(model: string): string {
  return (
    model
      .replace(/[\\/]+$/, '')
      .split(/[\\/]/)
      .pop() || model
  );
}

/**
 * Why a feature cannot run on the loaded model, naming the checkpoint type it needs, e.g.
 * "Classifying text needs an OPTForSequenceClassification checkpoint; opt-125m is an
 * OPTForCausalLM (an OPT language model)."
 */
export function wrongModelMessage(task: ModelTask, model: string, info: Pick<EngineInfo, 'architecture' | 'tasks'> | undefined): string {
  const what = info
    ? `${shortModelName(model)} is ${article(info.architecture || 'unknown')} ${info.architecture || 'unknown architecture'} (an ${modelKind(info)})`
    : `${shortModelName(model)} has no such head`;
  return `${TASK_DOING[task]} needs ${article(TASK_ARCHITECTURE[task])} ${TASK_ARCHITECTURE[task]} checkpoint; ${what}.`;
}

function article(word: string): string {
  return /^[aeiouAEIOU]/.test(word) ? 'an' : 'a';
}
