// The config.json fields only the non-generation heads read: the labels of a sequence classifier
// (id2label / label2id, LABEL_i by default, as transformers' PretrainedConfig), its problem_type
// and the pad token it pools by, which may be explicitly null (transformers then refuses batches).
// Also which tasks each architecture serves, and the error for a request its head cannot serve.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { OptArchitecture, OptConfig } from '../config.js';
import { type ModelTask } from '../../../protocol/engine.js';
import { WrongModelTypeError } from '../../../protocol/errors.js';
import { CheckpointError } from '../errors.js';

export const PROBLEM_TYPES = ['single_label_classification', 'multi_label_classification', 'regression'] as const;
export type ProblemType = (typeof PROBLEM_TYPES)[number];

export interface HeadConfig {
  /** Label names in id order (num_labels of them). */
  labels: string[];
  label2id: Record<string, number>;
  /** As given, or transformers' rule when unset: one label → regression, more → single-label. */
  problemType: ProblemType;
  /** The id the classifier pools by (its last non-padding token); null when config.json sets it to null. */
  padTokenId: number | null;
}

/** Parses the head fields of a config.json object; `config` is the validated OptConfig of the same file. */
export function parseHeadConfig(raw: Record<string, unknown>, config: OptConfig, file = 'config.json'): HeadConfig {
  const n = config.num_labels;
  const id2label = raw.id2label ?? {};
  if (typeof id2label !== 'object' || id2label === null || Array.isArray(id2label)) {
    throw new CheckpointError(file, 'id2label must map label ids to names, e.g. {"0": "NEGATIVE", "1": "POSITIVE"}');
  }
  const labels: string[] = [];
  for (let i = 0; i < n; i++) {
    const name = (id2label as Record<string, unknown>)[String(i)] ?? `LABEL_${i}`; // transformers' default names
    if (typeof name !== 'string') throw new CheckpointError(file, `id2label["${i}"] must be a string, got ${JSON.stringify(name)}`);
    labels.push(name);
  }
  const label2id: Record<string, number> = {};
  if (raw.label2id !== undefined && raw.label2id !== null) {
    if (typeof raw.label2id !== 'object' || Array.isArray(raw.label2id))
      throw new CheckpointError(file, 'label2id must map label names to ids');
    for (const [name, id] of Object.entries(raw.label2id as Record<string, unknown>)) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= n)
        throw new CheckpointError(file, `label2id["${name}"] must be an id in [0, ${n}), got ${JSON.stringify(id)}`);
      label2id[name] = id;
    }
  } else {
    labels.forEach((name, id) => (label2id[name] = id));
  }

  const given = raw.problem_type;
  if (given !== undefined && given !== null && !(PROBLEM_TYPES as readonly unknown[]).includes(given)) {
    throw new CheckpointError(file, `unknown problem_type ${JSON.stringify(given)}`, `expected one of ${PROBLEM_TYPES.join(', ')}`);
  }
  // transformers decides an unset problem_type from num_labels (OPTForSequenceClassification.forward).
  const problemType = (given as ProblemType | null | undefined) ?? (n === 1 ? 'regression' : 'single_label_classification');

  // OptConfig fills a null pad_token_id with the default 1; transformers keeps None, and that matters here.
  const padTokenId = raw.pad_token_id === null ? null : config.pad_token_id;
  return { labels, label2id, problemType, padTokenId };
}

export async function readHeadConfig(dir: string, config: OptConfig): Promise<HeadConfig> {
  const file = join(dir, 'config.json');
  return parseHeadConfig(JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>, config, file);
}

/** What each architecture can do: its head's task, and embeddings from the body every checkpoint has. */
export function tasksOf(architecture: OptArchitecture): ModelTask[] {
  switch (architecture) {
    case 'OPTForCausalLM':
      return ['generate', 'embed'];
    case 'OPTForSequenceClassification':
      return ['classify', 'embed'];
    case 'OPTForQuestionAnswering':
      return ['answer', 'embed'];
    case 'OPTModel':
      return ['embed'];
  }
}

const NEEDS: Record<Exclude<ModelTask, 'embed'>, { architecture: OptArchitecture; head: string; what: string }> = {
  generate: { architecture: 'OPTForCausalLM', head: 'language-model head', what: 'text generation' },
  classify: { architecture: 'OPTForSequenceClassification', head: 'sequence-classification head (score)', what: 'classification' },
  answer: { architecture: 'OPTForQuestionAnswering', head: 'question-answering head (qa_outputs)', what: 'question answering' },
};

/** Throws WrongModelTypeError naming the checkpoint's architecture and the one the task needs. */
export function requireTask(architecture: OptArchitecture, task: ModelTask, where: string): void {
  if (!tasksOf(architecture).includes(task)) throw wrongTaskError(architecture, task, where);
}

/** The WrongModelTypeError for a task `architecture` cannot serve: what it lacks, what is needed, what it can do. */
export function wrongTaskError(architecture: OptArchitecture, task: ModelTask, where: string): WrongModelTypeError {
  const need = NEEDS[task as Exclude<ModelTask, 'embed'>];
  return new WrongModelTypeError(
    `${where} holds an ${architecture} checkpoint, which has no ${need.head}: ${need.what} needs an ${need.architecture} checkpoint (this one can do: ${tasksOf(architecture).join(', ')})`,
  );
}
