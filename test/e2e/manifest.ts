// What the end-to-end tests read from package.json: the extension's id and the palette labels of
// its commands, so tests drive commands by id and follow renamed titles.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './harness.js';

interface Manifest {
  name: string;
  publisher: string;
  contributes: { commands: { command: string; title: string; category?: string }[] };
}

const manifest = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as Manifest;

export const EXTENSION_ID = `${manifest.publisher}.${manifest.name}`;

/** The precision the e2e runs use (OPT_E2E_DTYPE: int8, the default, or fp32). */
export const E2E_DTYPE = process.env.OPT_E2E_DTYPE ?? 'int8';

/** The command palette label of a contributed command ("Category: Title"). */
export function label(id: string): string {
  const c = manifest.contributes.commands.find((x) => x.command === id);
  if (!c) throw new Error(`package.json contributes no command ${id}`);
  return c.category ? `${c.category}: ${c.title}` : c.title;
}

/** A contributed command's title alone (what title-bar buttons show as their label). */
export function title(id: string): string {
  const c = manifest.contributes.commands.find((x) => x.command === id);
  if (!c) throw new Error(`package.json contributes no command ${id}`);
  return c.title;
}
