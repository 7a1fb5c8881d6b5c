// How classification and question-answering results read in the editor: scores as percentages
// (or raw values for regression), every label best first with the predicted ones marked, and a
// one-line summary of an answer. No vscode import.

import type { AnswerSpan, ClassifyResult } from '../../../protocol/protocol.js';

export type ProblemType = ClassifyResult['problemType'];

/**
 * A score as the user reads it: probabilities as a percentage with one decimal, never rounded to
 * a misleading 0.0% or 100.0% (shown as <0.1% and >99.9%); regression outputs as the raw value.
 */
export function formatScore(score: number, problemType: ProblemType = 'single_label_classification'): string {
  if (!Number.isFinite(score)) return String(score);
  if (problemType === 'regression') return formatValue(score);
  const pct = score * 100;
  if (pct > 0 && pct < 0.05) return '<0.1%';
  if (pct < 100 && pct >= 99.95) return '>99.9%';
  return `${pct.toFixed(1)}%`;
}

/** A raw value with four significant digits, without trailing zeros or exponent noise for ordinary sizes. */
export function formatValue(x: number): string {
  if (x === 0) return '0';
  const abs = Math.abs(x);
  if (abs >= 1e-3 && abs < 1e6) return String(Number(x.toPrecision(4)));
  return x.toExponential(3);
}

export interface LabelRow {
  label: string;
  score: number;
  /** The score as shown (formatScore). */
  text: string;
  /** Single-label: the best label; multi-label: every label at or above 50%; regression: the value. */
  predicted: boolean;
}

export interface ClassificationView {
  /** One line: the prediction and its score, e.g. `POSITIVE 97.3%`. */
  summary: string;
  /** Every label, highest score first. */
  rows: LabelRow[];
}

export function classificationView(result: Pick<ClassifyResult, 'problemType' | 'labels'>): ClassificationView {
  const type = result.problemType;
  // The runtime sends them best first; sorted again (stably) so the view never depends on it.
  const sorted = result.labels.map((l, i) => ({ ...l, i })).sort((a, b) => b.score - a.score || a.i - b.i);
  const rows: LabelRow[] = sorted.map((l, i) => ({
    label: l.label,
    score: l.score,
    text: formatScore(l.score, type),
    predicted: type === 'multi_label_classification' ? l.score >= 0.5 : i === 0,
  }));
  let summary: string;
  if (rows.length === 0) summary = 'no labels';
  else if (type === 'regression') summary = `${rows[0]!.label} = ${rows[0]!.text}`;
  else if (type === 'multi_label_classification') {
    const on = rows.filter((r) => r.predicted);
    summary =
      on.length > 0
        ? on.map((r) => `${r.label} ${r.text}`).join(', ')
        : `no label reaches 50% (highest: ${rows[0]!.label} ${rows[0]!.text})`;
  } else summary = `${rows[0]!.label} ${rows[0]!.text}`;
  return { summary, rows };
}

/** The notification after an answer was found, e.g. `"Paris" (score 83.1%, line 3)`; line breaks read as spaces. */
export function answerSummary(answer: Pick<AnswerSpan, 'text' | 'score'>, line: number): string {
  const text = answer.text.trim().replace(/\s+/g, ' ');
  const shown = text.length > 80 ? `${text.slice(0, 77)}…` : text;
  return `${JSON.stringify(shown)} (score ${formatScore(answer.score)}, line ${line + 1})`;
}
