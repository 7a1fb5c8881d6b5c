// What the extension reports about itself, as plain JSON: the e2e harness reads it from the state
// file (optComplete.debug.stateFile) or the debugState command, and bug reports quote it. The
// features write their last outcome into DebugRecords (one typed record per feature);
// collectDebugState assembles the whole picture; StateFileWriter writes it after changes. No vscode import.

import { rename, writeFile } from 'node:fs/promises';
import type { AnswerSpan, ClassifyResult } from '../../protocol/protocol.js';
import type { Config } from './config.js';
import type { CompletionEngine, EngineStatus, ModelTask } from './engines/completionEngine.js';
import type { LabelRow } from './heads/headResults.js';
import type { Logger } from './logger.js';
import type { RuntimeState, RuntimeSupervisor } from './runtimeSupervisor.js';
import type { EngineKind } from './settings.js';
import type { StatusKind } from './statusBar.js';

/** What the last inline completion was, for the status bar and the debug state. */
export interface InlineRecord {
  at: string;
  uri: string;
  line: number;
  character: number;
  source: 'cache' | 'engine';
  /** The text shown at the cursor (it replaces `replaceSuffix` characters after it). */
  text: string | undefined;
  replaceSuffix: number;
  multiline: boolean;
  latencyMs: number;
  promptTokens?: number;
  reusedTokens?: number;
  completionTokens?: number;
  tokensPerSecond?: number;
  /** Prompt lookup: tokens per model pass. */
  tokensPerPass?: number;
  finishReason?: string;
}

export interface InlineCounters {
  requests: number;
  cacheHits: number;
  engineCalls: number;
  shown: number;
  empty: number;
  cancelled: number;
  errors: number;
  accepted: number;
}

/** The last warm-up of a document's prefix (documentWarmer.ts). */
export interface WarmRecord {
  at: string;
  uri: string;
  line: number;
  character: number;
  /** Prompt tokens, of which reused were already cached; the rest were prefilled in prefillMs. */
  promptTokens?: number;
  reusedTokens?: number;
  prefillMs?: number;
  /** Typing or another request ended it first. */
  cancelled?: boolean;
  error?: string;
}

/** The last "Generate Text" (generateCommand.ts). */
export interface GenerateRecord {
  /** The prompt's first 200 characters. */
  prompt: string;
  /** What was written into the editor. */
  inserted: string;
  tokens: number;
  seconds?: number;
  finishReason?: string;
  /** Cancelled by the user, or stopped by the editor (`stopReason`). */
  cancelled: boolean;
  stopReason?: string;
  /** The model has no language-model head: the message shown. */
  wrongModel?: string;
}

/** A proposal in the diff view and how it ended (rewritePreview.ts). */
export interface ProposalRecord {
  id: number;
  label: string;
  status: 'pending' | 'accepted' | 'rejected' | 'stale' | 'replaced' | 'failed';
  original: string;
  proposed: string;
}

/** The last rewrite: a proposal, or why there was none (rewriteCommand.ts). */
export type RewriteRecord =
  | ProposalRecord
  | { label: string; status: 'no-result'; reason: string; raw: string }
  | { label: string; status: 'stale'; proposed: string }
  | { label: string; status: 'cancelled' }
  | { label: string; status: 'wrong-model'; reason: string };

/** The rewrite waiting for Accept or Reject. */
export interface PendingRewrite {
  id: number;
  label: string;
  uri: string;
  original: string;
  proposed: string;
  version: number;
}

/** The last classification (heads/classifyCommand.ts). */
export type ClassifyRecord =
  | {
      status: 'classified';
      text: string;
      problemType: ClassifyResult['problemType'];
      labels: ClassifyResult['labels'];
      summary: string;
      rows: LabelRow[];
      seconds: number;
    }
  | { status: 'cancelled' }
  | { status: 'wrong-model' | 'failed'; message: string };

interface Position {
  line: number;
  character: number;
}

/** The last question answered (heads/answerCommand.ts). */
export type AnswerRecord =
  | {
      status: 'answered';
      question: string;
      answer: AnswerSpan;
      answers: AnswerSpan[];
      highlighted: { start: Position; end: Position; text: string };
      summary: string;
      seconds: number;
    }
  | { status: 'no-answer'; question: string; answers: AnswerSpan[]; seconds: number }
  | { status: 'stale'; question: string; answer: AnswerSpan }
  | { status: 'cancelled'; question: string }
  | { status: 'failed'; question: string; message: string }
  | { status: 'wrong-model'; message: string };

/** The highlighted answer span (heads/answerHighlight.ts). */
export interface HighlightedAnswer {
  uri: string;
  start: Position;
  end: Position;
}

/** Each feature's counters and last outcome; written by the features, read by the debug state. */
export class DebugRecords {
  readonly inlineCounters: InlineCounters = {
    requests: 0,
    cacheHits: 0,
    engineCalls: 0,
    shown: 0,
    empty: 0,
    cancelled: 0,
    errors: 0,
    accepted: 0,
  };
  inline: InlineRecord | undefined;
  warm: WarmRecord | undefined;
  generate: GenerateRecord | undefined;
  rewrite: RewriteRecord | undefined;
  classify: ClassifyRecord | undefined;
  answer: AnswerRecord | undefined;
  /** Reports the pending rewrite (set by the rewrite preview). */
  pendingRewrite: () => PendingRewrite | undefined = () => undefined;
  /** Reports the highlighted answer span (set by main.ts). */
  highlightedAnswer: () => HighlightedAnswer | undefined = () => undefined;
}

/** The debug state, as written to the state file and returned by the debugState command. */
export interface DebugState {
  extensionVersion: string | undefined;
  engine: EngineKind;
  runtime: {
    state: RuntimeState['kind'];
    detail: RuntimeState;
    pid: number | undefined;
    model: string;
    counters: RuntimeSupervisor['counters'];
    lastExit: RuntimeSupervisor['lastExit'];
  };
  engineStatus: EngineStatus | { error: string } | undefined;
  statusBar: { kind: StatusKind; text: string };
  contextKeys: Record<string, unknown>;
  inline: {
    enabled: boolean;
    activeLanguage: string | undefined;
    activeLanguageEnabled: boolean | undefined;
    counters: InlineCounters;
    cache: { entries: number; hits: number; misses: number };
    last: InlineRecord | undefined;
    warm: WarmRecord | undefined;
  };
  generate: { busy: string | undefined; last: GenerateRecord | undefined };
  rewrite: { pending: PendingRewrite | undefined; last: RewriteRecord | undefined };
  heads: {
    tasks: readonly ModelTask[] | undefined;
    classify: ClassifyRecord | undefined;
    answer: AnswerRecord | undefined;
    highlighted: HighlightedAnswer | undefined;
  };
  settings: Record<string, unknown>;
}

/** Where the debug state is read from (ctx.ts wires it); read after the engine's status arrives. */
export interface DebugSources {
  extensionVersion: string | undefined;
  config: Pick<Config, 'engine' | 'model' | 'inlineEnabled' | 'inlineEnabledFor' | 'snapshot'>;
  supervisor: Pick<RuntimeSupervisor, 'state' | 'pid' | 'counters' | 'lastExit'>;
  engine(): CompletionEngine;
  statusBar: { readonly kind: StatusKind; readonly text: string };
  contextKeys(): Record<string, unknown>;
  cacheStats(): DebugState['inline']['cache'];
  activeLanguage(): string | undefined;
  busy(): string | undefined;
  tasks(): readonly ModelTask[] | undefined;
  records: DebugRecords;
}

/** Everything the e2e harness and bug reports need. A local runtime is asked for its status only when ready. */
export async function collectDebugState(src: DebugSources): Promise<DebugState> {
  const { config, supervisor, records } = src;
  const s = supervisor.state;
  let engineStatus: DebugState['engineStatus'];
  try {
    engineStatus = config.engine === 'local' && s.kind !== 'ready' ? undefined : await src.engine().status();
  } catch (err) {
    engineStatus = { error: (err as Error).message };
  }
  const language = src.activeLanguage();
  return {
    extensionVersion: src.extensionVersion,
    engine: config.engine,
    runtime: {
      state: s.kind,
      detail: s,
      pid: supervisor.pid,
      model: config.model,
      counters: supervisor.counters,
      lastExit: supervisor.lastExit,
    },
    engineStatus,
    statusBar: { kind: src.statusBar.kind, text: src.statusBar.text },
    contextKeys: src.contextKeys(),
    inline: {
      enabled: config.inlineEnabled,
      activeLanguage: language,
      activeLanguageEnabled: language !== undefined ? config.inlineEnabledFor(language) : undefined,
      counters: records.inlineCounters,
      cache: src.cacheStats(),
      last: records.inline,
      warm: records.warm,
    },
    generate: { busy: src.busy(), last: records.generate },
    rewrite: { pending: records.pendingRewrite(), last: records.rewrite },
    heads: { tasks: src.tasks(), classify: records.classify, answer: records.answer, highlighted: records.highlightedAnswer() },
    settings: config.snapshot(),
  };
}

/**
 * With optComplete.debug.stateFile set, the debug state is written there shortly after each change
 * (for e2e harnesses): the first change arms a timer, later ones within it ride along.
 */
export class StateFileWriter {
  private _timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly _state: () => Promise<unknown>,
    private readonly _log: Pick<Logger, 'warn'>,
    private readonly _delayMs = 100,
  ) {}

  /** Writes the state to `file` after the delay; nothing when `file` is empty. */
  schedule(file: string): void {
    if (file === '' || this._timer) return;
    this._timer = setTimeout(() => {
      this._timer = undefined;
      void this._state()
        // Written aside and renamed, so a reader never sees half a file.
        .then(async (state) => {
          const tmp = `${file}.${process.pid}.tmp`;
          await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`);
          await rename(tmp, file);
        })
        .catch((err: unknown) => this._log.warn(`cannot write the debug state to ${file}: ${(err as Error).message}`));
    }, this._delayMs);
  }

  dispose(): void {
    if (this._timer) clearTimeout(this._timer);
    this._timer = undefined;
  }
}
