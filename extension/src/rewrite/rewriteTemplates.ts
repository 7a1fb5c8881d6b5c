// Few-shot prompts that make a base model (OPT is not instruction-tuned) rewrite a text: each shows
// two or three worked examples between fixed delimiters, then the user's text, then an opening
// delimiter the model completes; the closing delimiter is the stop marker. Users can edit and add
// templates in `optComplete.rewrite.templates`. No vscode import.

export interface RewriteTemplate {
  id: string;
  label: string;
  description?: string;
  /** The prompt; `{{text}}` is replaced by the selected text. */
  prompt: string;
  /** Generation stops at this marker; the result is what comes before it. */
  stop: string;
  /** replace: the result replaces the selection; append: it is added after it (continue). */
  mode?: 'replace' | 'append';
}

const example = (label: string, before: string, after: string) => `Original:\n<<<\n${before}\n>>>\n${label}:\n<<<\n${after}\n>>>\n\n`;
const framed = (intro: string, label: string, examples: [string, string][]) =>
  `${intro}\n\n${examples.map(([b, a]) => example(label, b, a)).join('')}Original:\n<<<\n{{text}}\n>>>\n${label}:\n<<<\n`;

export const DEFAULT_TEMPLATES: readonly RewriteTemplate[] = [
  {
    id: 'improve',
    label: 'Improve writing',
    description: 'clearer and more fluent, same meaning',
    prompt: framed(
      'Each original text below is followed by an improved version: clearer, more fluent, same meaning and length.',
      'Improved',
      [
        [
          'the results was good but we think it could be more better if we had more time to do it',
          'The results were good, but we think they could have been better with more time.',
        ],
        [
          'This function it takes the list and then it goes over every item and it returns the ones which are even.',
          'This function goes through the list and returns the even items.',
        ],
      ],
    ),
    stop: '>>>',
    mode: 'replace',
  },
  {
    id: 'shorten',
    label: 'Shorten',
    description: 'say the same in fewer words',
    prompt: framed('Each original text below is followed by a shorter version that keeps its meaning.', 'Shorter', [
      [
        'Due to the fact that the server was down for the majority of the day, we were not able to complete the deployment that we had planned.',
        'The server was down most of the day, so we could not deploy as planned.',
      ],
      [
        'In my personal opinion, I believe that it would be a good idea for us to meet at some point next week.',
        'I suggest we meet next week.',
      ],
    ]),
    stop: '>>>',
    mode: 'replace',
  },
  {
    id: 'grammar',
    label: 'Fix grammar and spelling',
    description: 'correct mistakes, change nothing else',
    prompt: framed(
      'Each original text below is followed by the same text with its spelling and grammar corrected and nothing else changed.',
      'Corrected',
      [
        ['Their going to the libary tomorow to return there books.', "They're going to the library tomorrow to return their books."],
        ['She dont know wich option is more cheaper.', "She doesn't know which option is cheaper."],
      ],
    ),
    stop: '>>>',
    mode: 'replace',
  },
  {
    id: 'formal',
    label: 'Formal tone',
    description: 'polite, professional wording',
    prompt: framed('Each original text below is followed by a formal, professional version with the same meaning.', 'Formal', [
      ['hey, can u send me the report asap? thx', 'Hello, could you please send me the report at your earliest convenience? Thank you.'],
      ['We messed up the numbers last week, sorry about that.', "We apologize for the error in last week's figures."],
    ]),
    stop: '>>>',
    mode: 'replace',
  },
  {
    id: 'continue',
    label: 'Continue',
    description: 'write what comes next (added after the selection)',
    prompt: '{{text}}',
    stop: '\n\n',
    mode: 'append',
  },
];

export const TEXT_PLACEHOLDER = '{{text}}';

/** Checks user templates from settings; returns the valid ones (user ids override built-ins) and what was wrong. */
export function resolveTemplates(user: unknown): { templates: RewriteTemplate[]; problems: string[] } {
  const problems: string[] = [];
  if (user === undefined || user === null) return { templates: [...DEFAULT_TEMPLATES], problems };
  if (!Array.isArray(user))
    return {
      templates: [...DEFAULT_TEMPLATES],
      problems: ['optComplete.rewrite.templates must be a list of templates; using the built-in ones'],
    };
  const byId = new Map<string, RewriteTemplate>();
  for (const [i, raw] of user.entries()) {
    const t = raw as Partial<RewriteTemplate> | null;
    const where = `optComplete.rewrite.templates[${i}]`;
    if (typeof t !== 'object' || t === null) {
      problems.push(`${where} is not an object`);
      continue;
    }
    if (typeof t.id !== 'string' || t.id === '') {
      problems.push(`${where} needs an "id"`);
      continue;
    }
    if (typeof t.prompt !== 'string' || !t.prompt.includes(TEXT_PLACEHOLDER)) {
      problems.push(`${where} ("${t.id}") needs a "prompt" containing ${TEXT_PLACEHOLDER}`);
      continue;
    }
    if (typeof t.stop !== 'string' || t.stop === '') {
      problems.push(`${where} ("${t.id}") needs a non-empty "stop" marker`);
      continue;
    }
    if (t.mode !== undefined && t.mode !== 'replace' && t.mode !== 'append') {
      problems.push(`${where} ("${t.id}"): "mode" must be "replace" or "append"`);
      continue;
    }
    byId.set(t.id, {
      id: t.id,
      label: typeof t.label === 'string' && t.label ? t.label : t.id,
      description: typeof t.description === 'string' ? t.description : undefined,
      prompt: t.prompt,
      stop: t.stop,
      mode: t.mode ?? 'replace',
    });
  }
  if (byId.size === 0 && user.length > 0) return { templates: [...DEFAULT_TEMPLATES], problems };
  return { templates: [...byId.values()], problems };
}

/** The prompt for `text`. Trailing whitespace of the selection is kept out of it (and put back by applyRewrite). */
export function buildRewritePrompt(template: RewriteTemplate, text: string): string {
  return template.prompt.split(TEXT_PLACEHOLDER).join(text.trim());
}

/** Tokens to allow: a rewrite is about as long as its input (≈ 1 token per 3 characters), with room to spare. */
export function rewriteTokenBudget(text: string, cap: number): number {
  return Math.max(16, Math.min(cap, Math.ceil(text.length / 3) * 2 + 16));
}

export type RewriteOutcome = { ok: true; text: string } | { ok: false; reason: string };

/**
 * The rewritten text from what the model generated: what comes before the stop marker, trimmed,
 * with the original's leading and trailing whitespace restored. `finished` is false when the model
 * hit its token limit before the marker (for replace templates, a cut-off rewrite is refused).
 */
export function extractRewrite(template: RewriteTemplate, original: string, generated: string, finished: boolean): RewriteOutcome {
  const at = generated.indexOf(template.stop);
  const body = (at === -1 ? generated : generated.slice(0, at)).replace(/^\s*\n/, '').trimEnd();
  const mode = template.mode ?? 'replace';
  if (mode === 'replace' && at === -1 && !finished)
    return {
      ok: false,
      reason: `the model did not finish the rewrite within its token limit (no "${template.stop}" marker); try a shorter selection`,
    };
  if (body.trim() === '') return { ok: false, reason: 'the model produced no text' };
  const lead = /^\s*/.exec(original)![0];
  const trail = /\s*$/.exec(original)![0];
  if (mode === 'append') {
    return { ok: true, text: original.trimEnd() + body + trail };
  }
  const text = lead + body.trim() + trail;
  if (text === original) return { ok: false, reason: 'the model suggested no changes' };
  return { ok: true, text };
}
