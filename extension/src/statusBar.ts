// The one status bar item: what the engine is doing (starting, downloading with progress, loading,
// ready with model/device/dtype and the last latency and speed, paused, error) and, while a
// generation or rewrite runs, that. Clicking opens the OPT menu, or the log when there is an error.

import * as vscode from 'vscode';
import { Commands } from './commandIds.js';
import { shortModelName } from './heads/modelTasks.js';
import { shortProgress } from './loadProgress.js';
import type { RuntimeState } from './runtimeSupervisor.js';

export interface StatusInputs {
  engine: 'local' | 'openai';
  runtime: RuntimeState;
  /** The model setting (shown before the runtime reports its own id). */
  model: string;
  /** What the loaded model is when it cannot generate (e.g. "OPT classifier"): no ghost text comes from it. */
  modelKind?: string;
  /** Inline completions off globally (`paused`) or for the active editor's language. */
  inline: { enabled: boolean; languageEnabled: boolean; languageId: string | undefined };
  /** A running generation or rewrite. */
  busy: string | undefined;
  last: { latencyMs: number; tokensPerSecond: number | undefined; tokensPerPass?: number } | undefined;
  /** The remote engine's last error. */
  remoteError: string | undefined;
}

export type StatusKind = 'idle' | 'loading' | 'ready' | 'busy' | 'paused' | 'error';

export class StatusBar implements vscode.Disposable {
  private readonly _item: vscode.StatusBarItem;
  private _kind: StatusKind | undefined;
  private _tooltip: string | undefined;

  constructor() {
    this._item = vscode.window.createStatusBarItem('optComplete.status', vscode.StatusBarAlignment.Right, 100);
    this._item.name = 'OPT Complete';
    this._item.show();
  }

  get kind(): StatusKind {
    return this._kind ?? 'idle';
  }

  get text(): string {
    return this._item.text;
  }

  update(s: StatusInputs): void {
    const item = this._item;
    const rt = s.runtime;
    const tooltip = new vscode.MarkdownString(undefined, true);
    tooltip.isTrusted = {
      enabledCommands: [
        Commands.showLog,
        Commands.selectModel,
        Commands.startRuntime,
        Commands.restartRuntime,
        Commands.cancelLoad,
        Commands.toggleInline,
      ],
    };
    let kind: StatusKind;
    let text: string;

    if (s.engine === 'local' && rt.kind === 'failed') {
      kind = 'error';
      text = '$(error) OPT';
      tooltip.appendMarkdown(
        `**OPT Complete: the runtime is not running**\n\n${escape(rt.reason)}\n\n[Show log](command:${Commands.showLog}) · [Choose model](command:${Commands.selectModel}) · [Restart](command:${Commands.restartRuntime})`,
      );
    } else if (s.engine === 'openai' && s.remoteError) {
      kind = 'error';
      text = '$(error) OPT';
      tooltip.appendMarkdown(`**OPT Complete: the server failed**\n\n${escape(s.remoteError)}\n\n[Show log](command:${Commands.showLog})`);
    } else if (s.busy) {
      kind = 'busy';
      text = `$(loading~spin) OPT: ${s.busy}`;
      tooltip.appendMarkdown(`**OPT Complete**: ${escape(s.busy)}`);
    } else if (s.engine === 'local' && (rt.kind === 'loading' || rt.kind === 'restarting')) {
      kind = 'loading';
      if (rt.kind === 'restarting') {
        text = '$(sync~spin) OPT restarting';
        tooltip.appendMarkdown(
          `**OPT Complete: restarting the runtime** in ${rt.delayMs} ms\n\n${escape(rt.reason)}\n\n[Show log](command:${Commands.showLog})`,
        );
      } else {
        const p = rt.progress;
        text = `$(sync~spin) OPT ${p?.downloading ? 'downloading' : 'loading'}${p?.fraction !== undefined ? ` ${Math.round(p.fraction * 100)}%` : ''}`;
        tooltip.appendMarkdown(
          `**OPT Complete: ${p?.downloading ? 'downloading' : 'loading'} ${escape(rt.model)}**\n\n${escape(p?.message ?? 'starting the runtime')} (${shortProgress(p)})\n\n[Cancel](command:${Commands.cancelLoad}) · [Show log](command:${Commands.showLog})`,
        );
      }
    } else if (!s.inline.enabled || !s.inline.languageEnabled) {
      kind = 'paused';
      text = '$(debug-pause) OPT';
      tooltip.appendMarkdown(
        !s.inline.enabled
          ? `**OPT Complete: inline completions are paused**\n\n[Resume](command:${Commands.toggleInline})`
          : `**OPT Complete: inline completions are off for ${escape(s.inline.languageId ?? 'this language')}**\n\nUse the menu to turn them on.`,
      );
    } else if (s.engine === 'local' && rt.kind !== 'ready') {
      kind = 'idle';
      text = '$(circle-outline) OPT';
      tooltip.appendMarkdown(
        rt.kind === 'held'
          ? `**OPT Complete: the runtime is stopped** (${escape(rt.reason)})\n\n[Start](command:${Commands.startRuntime})`
          : `**OPT Complete**: ${escape(shortModelName(s.model))} loads when first needed\n\n[Start now](command:${Commands.startRuntime}) · [Choose model](command:${Commands.selectModel})`,
      );
    } else {
      kind = 'ready';
      const info = rt.kind === 'ready' ? rt.info : undefined;
      const model = s.engine === 'openai' ? 'remote' : shortModelName(info?.modelId ?? s.model);
      const latency = s.last ? ` ${Math.round(s.last.latencyMs)} ms` : '';
      text = s.modelKind ? `$(chip) ${model} (${s.modelKind})` : `$(chip) ${model}${latency}`;
      const rows: [string, string][] =
        s.engine === 'openai'
          ? [['Engine', 'OpenAI-compatible server']]
          : [
              ['Model', info?.modelId ?? s.model],
              ...(s.modelKind
                ? [['Kind', `${s.modelKind} (${info?.architecture ?? '?'}): no inline completions or text generation`] as [string, string]]
                : []),
              ['Device', info ? `${info.device}${info.deviceFallback ? ` (${info.deviceFallback})` : ''}` : '?'],
              ['Precision', info?.dtype ?? '?'],
              ...(info?.assistant ? [['Assistant', `${info.assistant.modelId} (drafts tokens)`] as [string, string]] : []),
              ['Loaded in', info ? `${info.loadSeconds.toFixed(1)} s` : '?'],
            ];
      if (s.last) {
        rows.push(['Last completion', `${Math.round(s.last.latencyMs)} ms`]);
        if (s.last.tokensPerSecond !== undefined) rows.push(['Speed', `${s.last.tokensPerSecond.toFixed(1)} tokens/s`]);
        if (s.last.tokensPerPass !== undefined) rows.push(['Tokens per model pass', `${s.last.tokensPerPass.toFixed(2)} (prompt lookup)`]);
      }
      tooltip.appendMarkdown(
        `**OPT Complete: ready**\n\n| | |\n|---|---|\n${rows.map(([k, v]) => `| ${k} | ${escape(v)} |`).join('\n')}\n\n[Show log](command:${Commands.showLog})`,
      );
    }
    // Every assignment is a message to the window: send nothing when nothing changed (this runs after each inline result).
    if (kind === this._kind && text === item.text && tooltip.value === this._tooltip) return;
    this._kind = kind;
    this._tooltip = tooltip.value;
    item.text = text;
    item.tooltip = tooltip;
    item.backgroundColor = kind === 'error' ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
    item.command = kind === 'error' ? Commands.showLog : Commands.statusMenu;
    item.accessibilityInformation = { label: `OPT Complete: ${kind}` };
  }

  dispose(): void {
    this._item.dispose();
  }
}

function escape(s: string): string {
  return s.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, (c) => `\\${c}`);
}
